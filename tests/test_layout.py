"""The package's layout as docs/design.md section 2 states it: imports point down (import-linter's
contracts in setup.cfg), Optuna's private names stay in store/optuna_private.py, no module over 400
lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpo_vidpred"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_layering_contracts_hold() -> None:
    """setup.cfg's import-linter contracts: layers point down (cli -> workflows -> study ->
    train/report -> store/archs/data -> cells), models and data know nothing of Optuna or studies,
    the store never trains, reports never import PyTorch, and no sibling modules import each
    other in a circle."""
    import subprocess
    import sys

    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    done = subprocess.run([sys.executable, "-c", code, "--config", "setup.cfg", "--no-cache"],
                          cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "0 broken" in done.stdout, done.stdout[-3000:]


# Optuna's private modules (optuna.storages._rdb, from optuna.storages import _heartbeat), and
# the private attributes and methods of its objects that the package uses, reached from outside
# them (after a dot, or named in a string: getattr(storage, "_backend"))
PRIVATE = re.compile(
    r"optuna(\.\w+)*(\._| import _)[A-Za-z]"
    r"|(super\(\)\.|\.|['\"])(_(storage|study_id|trial_id|backend|cached_frozen_trial|params"
    r"|distributions|channel|create_scoped_session|to_proto_trial|set_trial_param_without_commit"
    r"|set_trial_attr_without_commit|create_new_trial|set_trial_param|get_trials|get_best_trial_id"
    r"|get_stale_trial_ids))\b")
# The hooks of Optuna's RDB storage that a subclass overrides keep their names there: named in a
# string (the overriding is by name) or called up to through super().
OVERRIDES = {"hpo_vidpred.store.rdb": ("_create_new_trial", "_set_trial_param", "_get_trials")}


def _private_names(path: Path) -> list[str]:
    allowed = OVERRIDES.get(_name(path), ())
    return [f"{_name(path)}:{number}: {match.group(0)}"
            for number, line in enumerate(path.read_text().splitlines(), 1)
            for match in PRIVATE.finditer(line)
            if not (match.group(4) in allowed and match.group(3) != ".")]


def test_optunas_private_names_stay_in_optuna_private() -> None:
    """Only store/optuna_private.py names Optuna's private names, so that an Optuna upgrade that
    moves them breaks that one module."""
    found = [hit for path in MODULES if _name(path) != "hpo_vidpred.store.optuna_private"
             for hit in _private_names(path)]
    assert found == []
    assert _private_names(PACKAGE / "store" / "optuna_private.py")  # the pattern finds them


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_no_module_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


def test_the_command_lines_choices_are_the_registries_names() -> None:
    """The CLI lists architectures, cells and datasets by module name without importing them;
    each module registers itself under its own name."""
    from hpo_vidpred import archs, cells, data
    from hpo_vidpred.cli import ARCHS, CELLS, DATASETS
    from hpo_vidpred.cli.studies import GOAL_NAMES
    from hpo_vidpred.study.goals import GOALS

    assert ARCHS == sorted(archs.ARCHS.names())
    assert CELLS == sorted(cells.CELLS.names())
    assert DATASETS == sorted(data.DATASETS.names())
    assert GOAL_NAMES.split(", ") == GOALS.names()


@pytest.mark.parametrize("command", ["--help", "run --help", "report --help", "store serve --help",
                                     "export --help"])
def test_help_and_store_commands_do_not_load_pytorch(command: str) -> None:
    """Only commands that train import PyTorch (it takes seconds): help, and a proxy serving a
    store, start at once."""
    import subprocess
    import sys

    code = ("import sys\nfrom hpo_vidpred.cli import main\n"
            f"main({command.split()!r})\nprint('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr[-1000:]
