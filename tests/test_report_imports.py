"""The report package needs no model code: its import graph, read with ``ast``, stays off torch,
the training loop and the jobs, and at module level imports only the standard library,
third-party packages and the package's record-keeping modules."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

from report_stores import baselines, compare_study

import hpo_vidpred

REPORT = Path(hpo_vidpred.__file__).resolve().parent / "report"
FORBIDDEN = ("torch", "hpo_vidpred.train", "hpo_vidpred.jobs")
ALLOWED = {"hpo_vidpred.store", "hpo_vidpred.store.records", "hpo_vidpred.specs",
           "hpo_vidpred.errors", "hpo_vidpred.paths", "hpo_vidpred.registry",
           "hpo_vidpred.budgets", "hpo_vidpred.strip", "hpo_vidpred.search_space"}


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) for every import in ``path``; ``from X import
    y`` yields ``X`` and ``X.y`` (y may be a submodule)."""
    module = "hpo_vidpred.report" + ("" if path.stem == "__init__" else f".{path.stem}")
    package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                            ast.Lambda))
            for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        top = id(node) not in lazy
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module
            out.append((node.lineno, base, top))
            out += [(node.lineno, f"{base}.{alias.name}", top) for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr",
                                                    getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            out.append((node.lineno, "<dynamic import>", top))
    return out


def test_the_report_package_never_imports_torch_train_or_jobs() -> None:
    files = sorted(REPORT.glob("*.py"))
    assert {p.stem for p in files} >= {"__init__", "collect", "tables", "studies", "figures",
                                       "render"}
    own = {"hpo_vidpred.report"} | {f"hpo_vidpred.report.{p.stem}" for p in files}
    problems = []
    for path in files:
        for line, name, top in _imports(path):
            where = f"{path.name}:{line}: {name}"
            if name == "<dynamic import>" or any(name == f or name.startswith(f + ".")
                                                 for f in FORBIDDEN):
                problems.append(where)
            elif top and name.split(".")[0] == "hpo_vidpred" and name not in ALLOWED | own | {
                    "hpo_vidpred", "hpo_vidpred.__version__"}:
                # ``from ..store import mask_url``: a name of an allowed module is fine
                if name.rsplit(".", 1)[0] not in ALLOWED | own:
                    problems.append(where + " (module level)")
    assert not problems, problems
    # the old flat modules are gone
    for old in ("report.py", "report_tables.py", "report_studies.py", "report_figures.py"):
        assert not (REPORT.parent / old).exists(), old


def test_writing_a_comparison_report_loads_no_torch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    compare_study(url, {("convlstm", "fixed"): [0.03], ("convlstm", "optimized"): [0.02]},
                  baselines("test", 0.05, 0.03, 0.04))
    script = (
        "import sys\n"
        "import hpo_vidpred.report as r\n"
        "bad = lambda: sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or "
        "m.startswith(('hpo_vidpred.train', 'hpo_vidpred.jobs')))\n"
        "assert not bad(), ('import', bad())\n"
        f"r.write_report({url!r}, {str(tmp_path / 'r')!r})\n"
        "assert not bad(), ('write_report', bad())\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "r" / "index.html").is_file()


def test_writing_a_report_of_search_studies_loads_no_torch(tmp_path: Path) -> None:
    """The committed store of version 0.1 holds search, fixed and comparison studies: reading
    their budgets must not reach the datasets (which import torch)."""
    import shutil

    shutil.copy(Path(__file__).parent / "fixtures" / "store-0.1.0" / "store.db", tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    script = (
        "import sys\n"
        "import hpo_vidpred.report as r\n"
        f"r.write_report({url!r}, {str(tmp_path / 'r')!r})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
        "assert not bad, bad[:5]\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "searched widths at most" in (tmp_path / "r" / "tables.md").read_text()
