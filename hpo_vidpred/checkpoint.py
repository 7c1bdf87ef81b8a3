"""Checkpoints: best weights plus the specs that rebuild the model (nanoGPT keeps its config too).

A file holds only tensors, strings, numbers, lists and dicts, so ``torch.load(path,
weights_only=True)`` reads it::

    {"format": 1, "state_dict": {...}, "model_spec": {...}, "data_spec": {...} | None,
     "train_spec": {...} | None, "result": {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .errors import HpoError
from .paths import models_root
from .specs import DataSpec, ModelSpec, TrainSpec, from_dict, to_dict

__all__ = ["FORMAT", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "save_train_state", "load_train_state", "pause_run", "resume_run"]

FORMAT = 1
_SPECS = {"model_spec": ModelSpec, "data_spec": DataSpec, "train_spec": TrainSpec}


def checkpoint_path(study: str, name: str) -> Path:
    """``models/<study>/<name>.pt`` under :func:`hpo_vidpred.paths.models_root`, absolute (a
    store records it, and may be read from another working directory)."""
    return (models_root() / study / f"{name}.pt").resolve()


def save_checkpoint(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    model_spec: ModelSpec,
    data_spec: Optional[DataSpec] = None,
    train_spec: Optional[TrainSpec] = None,
    result: Optional[dict[str, Any]] = None,
) -> Path:
    """Write weights and specs to ``path`` (folders created, atomic rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "model_spec": to_dict(model_spec),
        "data_spec": to_dict(data_spec) if data_spec is not None else None,
        "train_spec": to_dict(train_spec) if train_spec is not None else None,
        "result": result or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint with its weights.

    Returns ``(model, specs)`` where ``specs`` has ``model_spec``, ``data_spec`` and ``train_spec``
    (spec objects, or None where the file has none) and ``result`` (the run's summary dict).
    """
    from .archs import create_model

    path = Path(path)
    if not path.is_file():
        raise HpoError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors of every kind: one line naming the file
        raise HpoError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                       "retrain or pick another file") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HpoError(f"{path} is not an hpo-vidpred checkpoint of format {FORMAT}")
    specs: dict[str, Any] = {
        key: from_dict(cls, payload[key], where=str(path)) if payload.get(key) else None
        for key, cls in _SPECS.items()
    }
    specs["result"] = payload.get("result", {})
    model = create_model(specs["model_spec"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device), specs


# --------------------------------------------------------------------------- paused runs
TRAIN_STATE_FORMAT = "hpo-vidpred-train-state/1"


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a paused run's state (:func:`hpo_vidpred.train.train_and_evaluate` with
    ``pause_to``): weights, optimizer, the data generator's and torch's random states, the
    epochs done and the run's bookkeeping. Atomic: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": TRAIN_STATE_FORMAT, **state}, tmp)
    tmp.replace(path)
    return path


def load_train_state(path: str | Path) -> dict[str, Any]:
    """A state written by :func:`save_train_state` (on the CPU), or an :class:`HpoError` of one
    line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise HpoError(f"paused run not found: {path}; its configuration starts again")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 (a truncated or foreign file)
        raise HpoError(f"{path} is not a readable paused run ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != TRAIN_STATE_FORMAT:
        raise HpoError(f"{path} is not a paused run of format {TRAIN_STATE_FORMAT}")
    return payload


def pause_run(path: str | Path, weights: Mapping[str, torch.Tensor], optimizer: Any,
              generator: torch.Generator, epoch: int, run: Mapping[str, Any]) -> Path:
    """Save a run paused after ``epoch``: its weights, optimizer, data generator, torch's random
    state (and every GPU's) and ``run`` (the training loop's bookkeeping)."""
    return save_train_state(path, {
        "epoch": epoch, "model": dict(weights), "optimizer": optimizer.state_dict(),
        "generator": generator.get_state().cpu(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "run": dict(run)})


def resume_run(path: str | Path, model: nn.Module, generator: torch.Generator
               ) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Load a paused run's weights into ``model``, its data position into ``generator`` and its
    random state into torch; returns (epochs done, the loop's bookkeeping, the optimizer's
    state to load once the optimizer exists)."""
    saved = load_train_state(path)
    model.load_state_dict(saved["model"])
    generator.set_state(saved["generator"].to(generator.device)
                        if generator.device.type != "cpu" else saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    if saved.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    return int(saved["epoch"]), saved["run"], saved["optimizer"]
