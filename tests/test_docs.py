"""User-facing text speaks of the project only and cites what the repository holds.

Read: README.md, docs/*.md, every README.md, RESULTS.md and SOURCE.md outside tests/, deploy/**,
benchmarks/*.sh, studies/*.yaml and studies/fixed/*.yaml as whole files; the docstrings (module,
class, function) and comments of hpo_vidpred/ and benchmarks/*.py. The rules:

- **No tracker numbers.** ``issue 11``, ``issues 7 and 12``, ``(issue 15)`` or a bare ``#12`` name
  this project's tracker, which a reader of the repository does not have: name the capability or
  the target instead. Another project's issue may stay, named with its project: ``optuna#3351``,
  ``Optuna issue #3351`` (the word before "issue" names a package in setup.cfg, or PyTorch), or
  a URL.
- **No words about how machines were lent**: "lent"/"lend", "the device tool", "device session",
  "device machine", "device image", "this session", "no session so far" and the like. Say what the
  project has ("no GPU figures yet", "on a GPU machine").
- **Every cited repository path exists.** A cited path is a token with a ``/`` whose first part is
  a top-level entry of the repository (``benchmarks/gpu.sh``), a subpackage of hpo_vidpred
  (``study/plan.py``, read under hpo_vidpred/), an entry beside the citing file
  (``results/...`` in benchmarks/), or a place outside the repository (``shared/``, ``seed/``,
  ``../``: always a finding). ``jobs/samplers.make_sampler`` is read as the module
  ``study/strategy.py``. Not citations: URLs, ``$VAR/...``, absolute and ``./`` paths, templates
  (``<...>``, ``{...}``, ``*``, ``NAME``, a trailing ``...``), and outputs: paths git ignores
  (``studies/hpo.db``, ``reports/kth``, ``models/...``), and in a Markdown file the
  files its worked examples create (a line ``# file: PATH`` heads the block to write there). A
  bare script name (``gpu.sh``, ``step_speed.py``) must be the name of a file in the repository,
  unless it is listed as another project's (PredNet's ``process_kitti.py``) or a worked example
  creates it.
- **Documents are named by their file.** An upper-case ``NAME.md``, or an upper-case word followed
  by ``section N`` or a quoted heading (``DESIGN section 5``, ``STYLE "..."``), must be a file the
  repository tracks; ``docs/design.md section 5`` is how the design is cited.
- **Dotted names resolve.** ``hpo_vidpred.a.b.name`` must be a module and a name defined in it;
  ``pkg.module.name`` (``jobs.samplers.make_sampler``), where ``pkg`` is a subpackage and
  ``module`` one of its modules, must name something ``module`` defines.
- **Relative Markdown links** ``[text](path#anchor)`` point at a tracked file and, with an anchor,
  at one of its headings.

"In the repository" means tracked by git, or new and not ignored (so a new file may be cited before
its first commit). Needs git; without it the test is skipped.
"""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hpo_vidpred"
OUTSIDE = ("shared", "seed", "..")  # places a reader of the repository does not have
OTHER_PROJECTS = {"download_data.sh", "process_kitti.py"}  # PredNet's scripts (datasets/README.md)

TRACKER = re.compile(r"\b(\w[\w.'-]*\s+)?issues?\s+#?\d+|(?<![\w/&#])#\d+\b", re.IGNORECASE)
LENT = re.compile(r"\b(lent|lend|lending)\b|\bdevice (tool|session|machine|image)s?\b|"
                  r"\b(this|these|that|each|every|any|previous|no) sessions?\b|"
                  r"\bsessions? so far\b|\bdrawn by chance\b", re.IGNORECASE)
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
PATH = re.compile(r"(?<![\w$/.~:@<{-])((?:\.\./)*[A-Za-z_.][\w.-]*(?:/[\w.-]+)+/?)")
DOCUMENT = re.compile(r"\b([A-Z][A-Z_]{2,})(?:\.md\b|(?= sections? \d| \"[A-Z]))")
SCRIPT = re.compile(r"(?<![\w./-])([\w-]+\.(?:py|sh|sbatch))(?![\w.(])")
DOTTED = re.compile(r"(?<![\w./-])(hpo_vidpred(?:\.\w+)+|[a-z_]+\.[a-z_]+\.\w+)")
COMMENT = re.compile(r"(?:^\s*|\s\s)#.*$")  # a comment line, or one after code (PEP 8)
LINK = re.compile(r"\]\(([^)\s]+)\)")
CREATED = re.compile(r"^# file: (\S+)$")  # heads a Markdown code block the reader writes to PATH


@cache
def _git(*args: str) -> list[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.splitlines()


@cache
def _tracked() -> frozenset[str]:
    """Tracked files (and new ones git does not ignore) and their folders."""
    files = _git("ls-files") + _git("ls-files", "--others", "--exclude-standard")
    return frozenset(files) | {str(p) for f in files for p in PurePosixPath(f).parents}


def _files() -> list[str]:
    tracked = sorted(f for f in _tracked() if (REPO / f).is_file())
    whole = [f for f in tracked if f == "README.md" or re.fullmatch(r"docs/[^/]+\.md", f)
             or (re.search(r"(^|/)(README|RESULTS|SOURCE)\.md$", f) and not f.startswith("tests/"))
             or f.startswith("deploy/") or re.fullmatch(r"benchmarks/[^/]+\.sh", f)
             or re.fullmatch(r"studies/(fixed/)?[^/]+\.yaml", f)]
    code = [f for f in tracked if f.endswith(".py")
            and (f.startswith("hpo_vidpred/") or re.fullmatch(r"benchmarks/[^/]+\.py", f))]
    return whole + code


def _lines(path: str) -> list[tuple[int, str]]:
    """(line number, text) of what a reader sees: the whole file, or a module's prose."""
    text = (REPO / path).read_text()
    if not path.endswith(".py"):
        return list(enumerate(text.splitlines(), 1))
    out = [(number, m.group(0)) for number, line in enumerate(text.splitlines(), 1)
           if (m := COMMENT.search(line))]
    statements = [ast.parse(text)]  # statements only: expressions hold no docstrings
    while statements:
        node = statements.pop()
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        doc = body[0] if body else None
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)):
            out += [(doc.lineno + i, line) for i, line in enumerate(doc.value.value.splitlines())]
        for field in ("body", "orelse", "finalbody", "handlers"):
            statements += [n for n in getattr(node, field, []) if isinstance(n, ast.AST)]
    return sorted(out)


@cache
def _basenames() -> frozenset[str]:
    return frozenset(PurePosixPath(f).name for f in _tracked())


@cache
def _dependencies() -> frozenset[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].split() + ["pytorch"]
    return frozenset(re.split(r"[<>=\[]", line)[0].lower() for line in lines if line[0].isalpha())


def _tracker_numbers(line: str) -> list[str]:
    found = []
    for m in TRACKER.finditer(URL.sub(" ", line)):
        word = (m.group(1) or "").strip().lower().removesuffix("'s")
        if m.group(0).startswith("#") or word not in _dependencies():
            found.append(m.group(0).strip())
    return found


@cache
def _ignored(paths: tuple[str, ...]) -> frozenset[str]:
    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO,
                          input="\n".join(paths), capture_output=True, text=True)
    return frozenset(done.stdout.splitlines())


def _exists(path: str) -> bool:
    return path.rstrip("/") in _tracked()


def _created(path: str, lines: list[tuple[int, str]]) -> frozenset[str]:
    """The files a Markdown file's worked examples create (``# file: PATH``)."""
    if not path.endswith(".md"):
        return frozenset()
    return frozenset(m.group(1) for _, line in lines if (m := CREATED.match(line)))


def _missing_paths(path: str, lines: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """(line, token, resolved) of every cited repository path that is not there."""
    created = _created(path, lines)
    tops = {f.split("/")[0] for f in _tracked()}
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    here = PurePosixPath(path).parent
    out = []
    for number, line in lines:
        for m in PATH.finditer(URL.sub(" ", line)):
            token = m.group(1)
            if (token.endswith("...") or token.startswith("./") or "NAME" in token
                    or line[m.end():m.end() + 1] in ("<", "{", "*")):
                continue
            token = token.rstrip(".")  # the end of a sentence
            if token in created:
                continue
            first = token.split("/")[0]
            if first in OUTSIDE:
                if first != "seed" or "." in token.split("/")[-1]:  # "seed/device" is prose
                    out.append((number, token, token))
                continue
            if first in tops:
                resolved = token
            elif first in subpackages:
                resolved = f"hpo_vidpred/{token}"
            elif str(here) != "." and _exists(f"{here}/{first}"):
                resolved = f"{here}/{token}"
            else:
                continue  # prose such as ms/step or train/val, or a name outside the repository
            module = re.sub(r"\.\w+$", ".py", resolved)  # jobs/samplers.make_sampler
            if _exists(resolved) or (module != resolved and _exists(module)):
                continue
            out.append((number, token, resolved))
    inside = {r for _, t, r in out if t.split("/")[0] not in OUTSIDE}
    ignored = _ignored(tuple(sorted(inside | {r.rstrip("/") + "/" for r in inside})))
    return [(n, t, r) for n, t, r in out
            if t.split("/")[0] in OUTSIDE
            or not (r in ignored or r.rstrip("/") + "/" in ignored)]


@cache
def _defined(module: Path) -> frozenset[str]:
    """Top-level names a module defines or imports; a package's also its submodules."""
    names = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and node.names[0].name == "*":
                star = module.parent / f"{(node.module or '').split('.')[-1]}.py"
                names |= _defined(star) if star.exists() else set()
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    if module.name == "__init__.py":
        names |= {p.stem for p in module.parent.iterdir()}
    return frozenset(names)


def _module(parts: list[str]) -> Path | None:
    path = PACKAGE.joinpath(*parts)
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if parts and candidate.exists():
            return candidate
    return None


def _unresolved(name: str) -> str | None:
    """Why the dotted ``name`` does not resolve, or None."""
    parts = name.split(".")
    if parts[0] == "hpo_vidpred":
        parts = parts[1:]
        for k in range(len(parts), -1, -1):
            module = _module(parts[:k]) if k else PACKAGE / "__init__.py"
            if module:
                break
        rest = parts[k:]
        if rest and rest[0] not in _defined(module):
            return f"{module.relative_to(REPO)} defines no {rest[0]}"
        return None
    if _module(parts[:1]) and _module(parts[:1]).name == "__init__.py" and _module(parts[:2]):
        module = _module(parts[:2])
        if module.name != "__init__.py" and parts[2] not in _defined(module):
            return f"{module.relative_to(REPO)} defines no {parts[2]}"
    return None


@cache
def _anchors(path: str) -> frozenset[str]:
    heads = [line.lstrip("#").strip().lower() for line in (REPO / path).read_text().splitlines()
             if line.startswith("#")]
    return frozenset(re.sub(r"[^\w\- ]", "", h).replace(" ", "-") for h in heads)


def _findings() -> list[str]:
    out = []
    for path in _files():
        lines = _lines(path)
        created = {PurePosixPath(f).name for f in _created(path, lines)}
        for number, line in lines:
            where = f"{path}:{number}"
            out += [f"{where}: tracker number {t!r}" for t in _tracker_numbers(line)]
            out += [f"{where}: how machines were lent: {m.group(0)!r}"
                    for m in LENT.finditer(line)]
            for m in DOCUMENT.finditer(line):
                if m.group(1) != "NAME" and not any(f.endswith(f"{m.group(1)}.md")
                                                    for f in _tracked()):
                    out.append(f"{where}: {m.group(0)!r} is no file of the repository")
            for m in SCRIPT.finditer(URL.sub(" ", line)):
                if m.group(1) not in OTHER_PROJECTS | created and m.group(1) not in _basenames():
                    out.append(f"{where}: {m.group(1)!r} is no file of the repository")
            for m in DOTTED.finditer(line):
                if why := _unresolved(m.group(1).rstrip(".")):
                    out.append(f"{where}: {m.group(1)}: {why}")
            for m in LINK.finditer(line) if path.endswith(".md") else ():
                target, _, anchor = m.group(1).partition("#")
                if URL.match(m.group(1)) or m.group(1).startswith("mailto:"):
                    continue
                file = str(PurePosixPath(path).parent / target) if target else path
                file = file.removeprefix("./")
                if target and not _exists(file):
                    out.append(f"{where}: link to {target!r}, which is not in the repository")
                elif anchor and file.endswith(".md") and anchor not in _anchors(file):
                    out.append(f"{where}: link to {m.group(1)!r}: no such heading")
        out += [f"{path}:{n}: {token!r} is not in the repository"
                + (f" (read as {resolved})" if resolved != token else "")
                for n, token, resolved in _missing_paths(path, lines)]
    return out


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs git and the repository's checkout")
def test_user_facing_text_speaks_of_the_project_and_cites_what_exists() -> None:
    findings = _findings()
    assert not findings, "\n".join(findings)


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs git and the repository's checkout")
def test_the_rules_catch_what_they_are_for() -> None:
    assert _tracker_numbers("done in issue 11 (issues 7 and 12), see #12") == [
        "in issue 11", "issues 7", "#12"]
    assert _tracker_numbers("Optuna issue #3351, optuna#3351, Optuna's issue 7, #1f77b4, "
                            "https://x.org/issues/4") == []
    assert [m.group(0) for m in LENT.finditer("no GPU was lent; the device tool; each session")] \
        == ["lent", "device tool", "each session"]
    assert LENT.search("the server closes the session") is None
    lines = [(1, "see shared/measurements/x.md, ../shared/gpu/a.sh, hpo_vidpred/no_such.py,"),
             (2, "cells/convlstm.ConvLSTM, benchmarks/gpu.sh, ms/step, studies/hpo.db,"),
             (3, "$OUT/summary.json, https://a.b/c/d.py, models/<study>/x.pt, deploy/k8s/...")]
    assert [t for _, t, _ in _missing_paths("docs/x.md", lines)] == [
        "shared/measurements/x.md", "../shared/gpu/a.sh", "hpo_vidpred/no_such.py"]
    written = [(4, "# file: hpo_vidpred/archs/mine.py"), (5, "then hpo_vidpred/archs/mine.py,"),
               (6, "but hpo_vidpred/archs/other.py")]
    assert [t for _, t, _ in _missing_paths("docs/x.md", written)] == [
        "hpo_vidpred/archs/other.py"]
    assert [t for _, t, _ in _missing_paths("hpo_vidpred/x.py", written)] == [
        "hpo_vidpred/archs/mine.py", "hpo_vidpred/archs/mine.py", "hpo_vidpred/archs/other.py"]
    documents = DOCUMENT.finditer('DESIGN section 5, STYLE "Running", README.md, FAIL "oom"')
    assert [m.group(0) for m in documents] == ["DESIGN", "STYLE", "README.md"]
    assert _unresolved("hpo_vidpred.workers") and _unresolved("cells.convlstm.no_such_name")
    assert _unresolved("hpo_vidpred.cells.convlstm.ConvLSTM") is None
    assert _unresolved("hpo_vidpred.metrics.ssim") is None
    assert [m.group(1) for m in SCRIPT.finditer("gpu.sh and foo.py, platform.python_version()")] \
        == ["gpu.sh", "foo.py"]
    assert _unresolved("data.height") is None  # an attribute, not a module path
