"""The package's layout as docs/design.md section 2 states it: imports point down, Optuna's private
names stay in store/, no module over 400 lines. Read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpo_vidpred"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved), at any level."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _importers(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{_name(p)} imports {m}" for p in MODULES if _name(p).startswith(prefix)
            for m in sorted(_imports(p)) if m.startswith(forbidden)]


def test_models_and_data_know_nothing_of_optuna_or_what_runs_them() -> None:
    for prefix in ("hpo_vidpred.archs", "hpo_vidpred.cells", "hpo_vidpred.data"):
        assert _importers(prefix, ("optuna", "hpo_vidpred.jobs", "hpo_vidpred.store",
                                   "hpo_vidpred.report", "hpo_vidpred.train")) == []


def test_training_and_the_store_do_not_reach_up() -> None:
    assert _importers("hpo_vidpred.train", ("optuna", "hpo_vidpred.jobs", "hpo_vidpred.store",
                                            "hpo_vidpred.report")) == []
    assert _importers("hpo_vidpred.store", ("hpo_vidpred.jobs", "hpo_vidpred.report",
                                            "hpo_vidpred.train", "hpo_vidpred.bench")) == []


def test_reports_read_the_store_and_never_train() -> None:
    assert _importers("hpo_vidpred.report", ("torch", "hpo_vidpred.train", "hpo_vidpred.jobs",
                                             "hpo_vidpred.bench", "hpo_vidpred.archs",
                                             "hpo_vidpred.data", "hpo_vidpred.cells")) == []


def test_nothing_imports_the_command_line() -> None:
    assert [i for i in _importers("hpo_vidpred", ("hpo_vidpred.cli",))
            if not i.startswith(("hpo_vidpred.cli ", "hpo_vidpred.cli."))] == []


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
    from hpo_vidpred.jobs.goals import GOALS

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
