"""Frozen specifications passed between the parts (docs/design.md section 3).

Each part receives only its own spec: the data loaders a :class:`DataSpec`, the model factory a
:class:`ModelSpec`, the training loop a :class:`TrainSpec`. Results store ``asdict(spec)`` so that every
run can be rebuilt from what was recorded. Defaults live here, once; a dataset's own defaults (frame
size, task) are applied by :func:`hpo_vidpred.data.default_spec`, a budget's by
:mod:`hpo_vidpred.budgets`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from .errors import HpoError

__all__ = [
    "DataSpec",
    "ModelSpec",
    "TrainSpec",
    "StudySpec",
    "RunSpec",
    "from_dict",
    "to_dict",
    "to_record",
    "dict_changes",
    "load_yaml",
    "METRICS",
]

# Per-frame metrics every evaluation reports (hpo_vidpred.metrics computes them; stores and
# reports carry them as test_<name>, val_<name>).
METRICS = ("mse", "mse_frame", "mae", "psnr", "ssim")


@dataclass(frozen=True)
class DataSpec:
    """What data a run uses. Recorded with every study and checkpoint."""

    name: str = "mmnist"
    root: str = "datasets"  # data root; each dataset looks in its own folder below it
    height: int = 64
    width: int = 64
    channels: int = 1
    n_in: int = 10  # frames given to the model
    n_out: int = 10  # frames it must predict
    protocol: str = "default"  # split protocol (kth: "kth" | "openstl")
    stride: int = 1  # step between training windows of a video, in frames
    eval_stride: int = 0  # step between validation/test windows; 0: n_in + n_out (no overlap)
    train_size: int = 0  # 0: everything available (Moving MNIST trains on an endless stream)
    val_size: int = 0  # 0: the dataset's default
    test_size: int = 0
    seed: int = 0  # fixes the validation and test sets
    options: Mapping[str, Any] = field(default_factory=dict)  # dataset-specific, e.g. {"speed": 0.1}

    @property
    def seq_len(self) -> int:
        return self.n_in + self.n_out


@dataclass(frozen=True)
class ModelSpec:
    """Which network: architecture, recurrent cell and the architecture's own settings."""

    arch: str = "autoencoder"
    cell: str = "convlstm"
    channels: int = 1  # frame channels, taken from the data
    peephole: str = "none"  # ConvLSTM peephole: none | conv | hadamard (ignored by stlstm)
    forget_bias: float = 0.0  # initial bias of every forget gate (0: the seed's; 1: Jozefowicz)
    config: Mapping[str, Any] = field(default_factory=dict)  # validated by the architecture


@dataclass(frozen=True)
class TrainSpec:
    """How one network is trained: the same fields for fixed runs, trials and retrains."""

    lr: float = 1e-3
    batch_size: int = 8
    epochs: int = 20
    steps_per_epoch: int = 500
    schedule: str = "step_half"  # step_half (x0.1 at half the epochs, the seed's) | cosine | constant
    grad_clip: float = 0.0  # max gradient norm; 0: off
    patience: int = 0  # early stopping after this many epochs without improvement; 0: off
    min_delta: float = 0.0  # an improvement must beat the last improving val_mse by more than this
    val_batch_size: int = 32
    teacher_forcing: str = "none"  # none | scheduled (multi-frame prediction)
    tf_decay: float = 0.5  # scheduled: teacher forcing falls from 1 to 0 over this share of steps
    frame_loss_weight: float = 1.0  # weight of the MSE on predicted frames (plus the arch's aux_loss)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: str = "auto"  # auto (on for CUDA) | on | off
    channels_last: str = "auto"  # auto (on for CUDA, off on CPU where it measured slower) | on | off
    compile: bool | str = False  # torch.compile: False/off | True/on | auto (on for CUDA)

    def __post_init__(self) -> None:
        """Numbers a run cannot use are one line here, before anything is created."""
        bad = [f"{name}={getattr(self, name)!r} (must be {rule})" for name, ok, rule in (
            ("lr", _finite(self.lr) and self.lr > 0, "a positive number"),
            ("batch_size", _count(self.batch_size), "an integer >= 1"),
            ("epochs", _count(self.epochs), "an integer >= 1"),
            ("steps_per_epoch", _count(self.steps_per_epoch), "an integer >= 1"),
            ("val_batch_size", _count(self.val_batch_size), "an integer >= 1"),
            ("grad_clip", _finite(self.grad_clip) and self.grad_clip >= 0, "a number >= 0"),
            ("patience", _count(self.patience, 0), "an integer >= 0"),
            ("min_delta", _finite(self.min_delta) and self.min_delta >= 0, "a number >= 0"),
            ("tf_decay", _finite(self.tf_decay) and 0 <= self.tf_decay <= 1, "in [0, 1]"),
            ("frame_loss_weight", _finite(self.frame_loss_weight) and self.frame_loss_weight >= 0,
             "a number >= 0")) if not ok]
        if bad:
            raise HpoError(f"training setting {'; '.join(bad)}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _count(value: Any, least: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True)
class StudySpec:
    """What ``hpo run`` optimizes (docs/design.md section 8). Recorded with the study, with the
    search space and the budgeted specs it resolves to; a run that finds the study with another
    spec refuses."""

    arch: str = "autoencoder"
    data: str = "mmnist"
    cell: str = ""  # pinned recurrent cell; "": sampled when the search space has a cell parameter
    budget: str = "seed"  # smoke | small | seed | full (hpo_vidpred.budgets)
    sampler: str = "tpe"  # tpe (multivariate) | random | qmc | gp | cmaes
    pruner: str = "hyperband"  # hyperband | asha | median | none (the fifo scheduler's)
    scheduler: str = "auto"  # fifo (every trial trains to its end unless pruned) | promote |
    # auto: the default for one objective (DEFAULT_SCHEDULER), fifo for several
    search_space: str = ""  # search-space YAML file; "": studies/<arch>.yaml
    name: str = ""  # study name; "": {arch}-{data}, plus -{cell} when the cell is pinned
    data_dir: str = ""  # data root; "": the default (HPO_DATA_DIR or ./datasets)
    seed: int = 0  # sampler and training seeds derive from it
    objectives: tuple[str, ...] = ("val_mse",)  # several: a multi-objective study (study/goals.py)
    epochs: int = 0  # epochs per trial; 0: the budget's (its steps per epoch either way)
    record_test: bool = False  # also test each trial's model (learning-curve tables only)

    @property
    def study_name(self) -> str:
        return self.name or "-".join(filter(None, (self.arch, self.data, self.cell)))


@dataclass(frozen=True)
class RunSpec:
    """How ``hpo run`` runs a study (never recorded with it: another run may continue it
    differently): the store, the number of configurations, workers and devices, heartbeats,
    where artifacts go, output, warm starts. One value from the command line to every worker."""

    storage_url: str = ""
    trials: int = 20  # configurations of the study in total (all workers and machines)
    timeout: float | None = None  # start no trial after this many seconds
    workers: int = 1  # 0: the devices' default
    devices: str = "auto"
    heartbeat: int = 30  # seconds; a dead worker's trial is failed after twice this
    grace: int | None = None
    artifacts: str | None = None  # None: beside a SQLite store
    progress: bool = True
    threads: int = 0  # torch threads per CPU worker; 0: the cores shared out
    warm: tuple[str, ...] = ()  # studies whose best configurations run first
    warm_top: int = 3


# Fields that say where or with which seed a run happened, not what it trained: another machine
# keeps its data elsewhere, a retrain uses another seed. A recorded spec leaves them out.
VOLATILE: Mapping[type, tuple[str, ...]] = {
    DataSpec: ("root",),
    TrainSpec: ("seed", "device"),
    StudySpec: ("name", "search_space", "data_dir", "seed"),
}

S = TypeVar("S")


def from_dict(cls: type[S], values: Mapping[str, Any], where: str = "") -> S:
    """Build a spec from a mapping, rejecting unknown keys with one clear line.

    Lists become tuples so that specs stay immutable and comparable.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        place = f" in {where}" if where else ""
        raise HpoError(
            f"unknown {cls.__name__} key(s) {', '.join(unknown)}{place}; valid keys: "
            f"{', '.join(sorted(names))}"
        )
    return cls(**{k: _freeze(v) for k, v in values.items()})


def to_dict(spec: Any) -> dict[str, Any]:
    """``asdict`` with tuples turned back into lists (JSON/YAML friendly)."""
    return _thaw(dataclasses.asdict(spec))


def to_record(spec: Any) -> dict[str, Any]:
    """``to_dict(spec)`` without the fields of :data:`VOLATILE` (what a study records and
    compares when it is continued, and what a configuration id hashes)."""
    out = to_dict(spec)
    for name in VOLATILE.get(type(spec), ()):
        out.pop(name, None)
    return out


def dict_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"a.b: 1 -> 2"`` for every leaf of two nested mappings that differs (``<unset>`` where a
    key is missing on one side), in the order of ``new`` then what only ``old`` has."""
    old_flat, new_flat = _flat(old), _flat(new)
    keys = list(new_flat) + [k for k in old_flat if k not in new_flat]
    return [f"{key}: {_short(old_flat.get(key, '<unset>'))} -> "
            f"{_short(new_flat.get(key, '<unset>'))}"
            for key in keys if old_flat.get(key, "<unset>") != new_flat.get(key, "<unset>")]


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing, unreadable, non-UTF-8 or malformed file (or a folder) is an
    :class:`HpoError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise HpoError(f"{path} is a folder; pass a YAML file")
    if not path.is_file():
        raise HpoError(f"file not found: {path}")
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise HpoError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # a Latin-1 or UTF-16 file, say
        line = exc.object[:exc.start].count(b"\n") + 1
        raise HpoError(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line "
                       f"{line}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise HpoError(f"{path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value
