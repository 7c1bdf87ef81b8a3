"""The package's layout as docs/design.md section 2 states it: imports point down (import-linter's
contracts in setup.cfg), Optuna's private names stay in store/, no module over 400 lines."""

from __future__ import annotations

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


def test_optunas_private_names_stay_in_the_store() -> None:
    private = ("._study_id", "._trial_id", "._storage", "._backend", "storages._")
    found = [f"{_name(p)}: {name}" for p in MODULES if not _name(p).startswith("hpo_vidpred.store")
             for name in private if name in p.read_text()]
    assert found == []


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
