"""``hpo report``: tables and figures from the study store, readable offline (docs/design.md
section 3).

Writes into one folder::

    index.html          the budget and device banner, the overview table (every dataset x
                        architecture x cell, the ones not run with their command), tables per
                        dataset x architecture x cell, test error per future step, prediction
                        strips, best configurations, search studies (links below)
    study-<name>.html   one page per search study: the banner, its hyperparameters
                        (scientific, nuisance, fixed), optimization history, PED-ANOVA
                        importance, parallel coordinates, learning curves (what needs more
                        trials than the study has is held back, with a line saying why)
    tables.md           the banner and every table as Markdown
    tables.tex          every table as LaTeX (booktabs)
    results.csv         one row per data x arch x cell x role and per trivial predictor (role
                        ``trivial``), full precision, loadable with ``pandas.read_csv``
                        (written when the store holds comparisons)
    overview.csv        the overview, one row per data x arch x cell, full precision
    strips/*.png        per comparison, three test sequences that move: input | truth |
                        copy-last | fixed and tuned per cell, each with per-frame MSE and |error|
    plotly.min.js       plotly.js, once, referred to by the pages (no network needed)
    style.css           the pages' style

Reports are generated from the stores, never written by hand; every table says the
command that reproduces it; the numbers follow :mod:`hpo_vidpred.report.tables`. Every model is
set against the trivial predictors its study recorded on every metric (skill, "NOT LEARNED",
"LOST STRUCTURE"); the report opens with the models that did not learn or lost structure.
Every page links only files that hold something. The tables are DataFrames written with
pandas' own writers (``to_markdown``, ``Styler.to_latex``, ``to_html``, ``to_csv``).
"""

from __future__ import annotations

import datetime as _dt
import html
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from .. import __version__
from ..errors import HpoError
from ..store import mask_url, normalize_url, open_storage, sqlite_path
from .collect import Collection, collect
from .figures import fronts_figure, front_groups, steps_figure, study_figures
from .overview import banner, overview_frame, overview_table, study_banner
from .strips import prediction_strips
from .studies import best_config_table, studies_table, study_tables
from .tables import LABEL, Table, compare_tables, result_frame, skill_summary

__all__ = ["write_report", "default_out", "build_tables", "to_markdown", "to_latex", "to_html",
           "to_csv", "PLOTLY_JS", "STYLE_CSS"]

PLOTLY_JS = "plotly.min.js"
STYLE_CSS = "style.css"
_BASIC_BUNDLE = Path(__file__).resolve().parent.parent / "assets" / "plotly-basic.min.js"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1300px;padding:0 1em;color:#222;line-height:1.45;overflow-wrap:break-word}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2} code{background:#f6f6f6;padding:1px 4px;font-size:12px;
overflow-wrap:anywhere}
.cmd{font-size:13px} .notes{font-size:13px;color:#444} .label{background:#fff7d6;
border:1px solid #e8d27a;padding:.6em 1em} .warn{color:#a00} .skill{border:1px solid #ccc;
padding:.6em 1em;margin:1em 0} .skill li.warn{font-weight:600} img{max-width:100%;
image-rendering:pixelated;border:1px solid #ddd} .figure{margin:1em 0}
.banner{background:#eef4fb;border:1px solid #9cbbe0;padding:.5em 1em;font-size:14px;
margin:1em 0}
.banner ul{margin:.2em 0;padding-left:1.2em} table.overview{font-size:12px}
table.overview th,table.overview td{padding:2px 4px}
.strips{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.strips figure{margin:0} .strips figcaption{font-size:13px;color:#444}
.held{font-size:13px;color:#555;font-style:italic}
"""


# --------------------------------------------------------------------------- tables
def build_tables(store: Collection, results: pd.DataFrame) -> list[Table]:
    """Every table of the report, in order: the overview first."""
    overview = overview_table(store, results)
    tables: list[Table] = [overview] if overview is not None else []
    for c in store.compare:
        mine = results[results.compare_study == c.name]
        if (mine.role != "trivial").any():
            tables += compare_tables(store, c, mine)
    tables += [t for t in (best_config_table(store), studies_table(store)) if t is not None]
    for s in store.search:
        tables += study_tables(store, s)
    return tables


# --------------------------------------------------------------------------- writers
_FLAGS = ("WARNING", "NOT LEARNED", "LOST STRUCTURE")


def _warns(line: str) -> bool:
    return line.startswith(_FLAGS)


def to_markdown(tables: Sequence[Table], heading: str, summary: Sequence[str] = (),
                budget: Sequence[str] = ()) -> str:
    """All tables as one Markdown document, opened by the ``budget`` banner and the
    ``summary`` lines."""
    out = [f"# {heading}\n"]
    if budget:
        out += ["**Budget and device**\n"] + [f"- {line}" for line in budget] + [""]
    out += [f"- {line}" for line in summary] + ([""] if summary else [])
    for t in tables:
        frame = t.frame.astype(str).apply(lambda col: col.str.replace("|", "\\|"))
        out += [f"## {t.title}\n", frame.to_markdown(index=False, disable_numparse=True),
                f"\nReproduce: `{t.command}`\n"]
        out += [f"- {n}" for n in t.notes] + [""]
    return "\n".join(out)


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
        "±": r"$\pm$", "★": r"$\star$"}


def _tex(text: Any) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def to_latex(tables: Sequence[Table], heading: str, summary: Sequence[str] = (),
             budget: Sequence[str] = ()) -> str:
    """All tables as LaTeX (``\\input`` into a document that loads booktabs), the banner and
    summary as comments."""
    out = [f"% {heading}", "% needs \\usepackage{booktabs}", ""]
    out += [f"% {line}" for line in [*budget, *summary]] + ([""] if summary or budget else [])
    for t in tables:
        frame = t.frame.astype(str).map(_tex).rename(columns=_tex)
        styler = frame.style.hide(axis="index").set_table_styles(
            [{"selector": "scriptsize", "props": ":;"}], overwrite=False)
        latex = styler.to_latex(hrules=True, environment="table", position="ht",
                                position_float="centering", caption=_tex(t.title),
                                label=f"tab:{t.key}", column_format="l" * frame.shape[1])
        tail = [f"\\par\\smallskip Reproduce: \\texttt{{{_tex(t.command)}}}"]
        tail += [f"\\par {_tex(n)}" for n in t.notes]
        out.append(latex.replace("\\end{table}", "\n".join(tail) + "\n\\end{table}"))
    return "\n".join(out)


def to_html(t: Table) -> str:
    """One table as an HTML fragment: title, table, command, notes (warnings in red). The first
    ``t.sparse`` columns show a value only where it changes."""
    e = html.escape
    frame = t.frame.astype(str)
    lead = frame.iloc[:, :t.sparse]
    repeated = lead == lead.shift()  # a value and every value left of it as in the row above
    for i, column in enumerate(lead.columns):
        frame[column] = frame[column].where(~repeated.iloc[:, :i + 1].all(axis=1), "")
    table = frame.to_html(index=False, border=0, escape=True, classes=f"report {t.key}")
    for flag in _FLAGS[1:]:
        table = table.replace(f"<td>{flag}", f'<td class="warn">{flag}')
    notes = "".join(f"<li class=\"warn\">{e(n)}</li>" if _warns(n) else f"<li>{e(n)}</li>"
                    for n in t.notes)
    return (f'<h3 id="{e(t.key)}">{e(t.title)}</h3>\n{table}\n<p class="cmd">Reproduce: '
            f"<code>{e(t.command)}</code></p>\n"
            + (f"<ul class=\"notes\">{notes}</ul>\n" if notes else ""))


def to_csv(results: pd.DataFrame) -> str:
    """``results`` as CSV: full precision, empty for none (``pandas.read_csv`` reads it back)."""
    return results.to_csv(index=False, lineterminator="\n")


def _page(title: str, heading: str, body: str, budget: Sequence[str] = ()) -> str:
    """A page: its heading, the budget and device banner, the body."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><link rel=\"stylesheet\" href=\"{STYLE_CSS}\">"
            f"<script src=\"{PLOTLY_JS}\"></script></head>\n<body>\n{heading}\n"
            f"{_banner_html(budget)}{body}\n</body></html>\n")


def _banner_html(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<div class="banner"><b>Budget and device</b><ul>{items}</ul></div>\n'



def _figure(fig: Any, div_id: str) -> str:
    return ('<div class="figure">' + fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id,
        config={"displaylogo": False, "responsive": True}) + "</div>")


def _summary_html(summary: Sequence[str]) -> str:
    e = html.escape
    items = "".join(f"<li class=\"warn\">{e(n)}</li>" if _warns(n) else f"<li>{e(n)}</li>"
                    for n in summary)
    return ("<div class=\"skill\"><b>Did the models learn?</b> Each model against the trivial "
            "predictors (black frames, the last input frame copied, the mean input frame) on "
            "the same frames, in MSE, MAE and SSIM:"
            f"<ul>{items}</ul></div>") if summary else ""


# --------------------------------------------------------------------------- the report
def default_out(storage_url: str) -> Path:
    """``reports/<store file stem>`` for a SQLite store, else ``reports/report``."""
    db = sqlite_path(storage_url)
    return Path("reports") / (db.stem if db is not None else "report")


def write_report(storage: Optional[str] = None, out: Optional[str | Path] = None,
                 pattern: str = "*", command: Optional[str] = None) -> dict[str, Any]:
    """Write the report of the studies matching ``pattern`` into ``out``; returns a summary
    (``rows``: the data x arch x cell x role rows of results.csv, trivial predictors not counted).

    ``command`` is shown in the index as what produced the report (default: the equivalent
    ``hpo report`` command).
    """
    url = normalize_url(storage)
    label = mask_url(url)
    store = collect(open_storage(url, read_only=True), label, pattern)
    if not store.search and not store.compare:
        raise HpoError(f"no search or comparison study matching {pattern!r} in {label}; run "
                       "hpo run / hpo compare first or change --studies")
    folder = Path(out) if out else default_out(url)
    folder.mkdir(parents=True, exist_ok=True)
    command = command or f"hpo report --storage {label} --out {folder} --studies '{pattern}'"
    results = result_frame(store)
    tables = build_tables(store, results)
    summary = skill_summary(store, results)
    budget = banner(store)
    heading = f"hpo-vidpred report ({label}, studies '{pattern}')"
    for stale in ("results.csv", "overview.csv"):  # never left from an earlier report
        (folder / stale).unlink(missing_ok=True)
    if (results.role != "trivial").any():
        (folder / "results.csv").write_text(to_csv(results))
    overview = overview_frame(store, results)
    if not overview.empty:
        (folder / "overview.csv").write_text(to_csv(overview))
    (folder / "tables.md").write_text(to_markdown(tables, heading, summary, budget) +
                                      f"\nProduced by: `{command}`\n")
    (folder / "tables.tex").write_text(to_latex(tables, heading, summary, budget) +
                                       f"% produced by: {command}\n")
    _write_plotly(folder)
    (folder / STYLE_CSS).write_text(_CSS.lstrip())
    pages = _study_pages(store, tables, folder)
    (folder / "index.html").write_text(_index(store, tables, summary, budget, folder, command,
                                              pages))
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return {"out": str(folder), "files": written, "search_studies": len(store.search),
            "comparisons": len(store.compare), "rows": int((results.role != "trivial").sum())}


def _write_plotly(folder: Path) -> None:
    target = folder / PLOTLY_JS
    if _BASIC_BUNDLE.is_file():
        shutil.copyfile(_BASIC_BUNDLE, target)
    else:  # the installed plotly's full bundle
        from plotly.offline import get_plotlyjs

        target.write_text(get_plotlyjs())


def _study_pages(store: Collection, tables: Sequence[Table], folder: Path) -> dict[str, str]:
    """One page per search study; returns study name -> file name."""
    pages = {}
    for s in store.search:
        name = f"study-{s.name}.html"
        heading = (f"<p><a href=\"index.html\">&larr; report</a></p><h1>Study "
                   f"{html.escape(s.name)}</h1>")
        parts = [to_html(t) for t in tables if t.section == s.name]
        figures, held = study_figures(s)
        parts += [f'<p class="held">{html.escape(line)}</p>' for line in held]
        parts += [_figure(fig, f"fig-{i}") for i, (_, fig) in enumerate(figures)]
        (folder / name).write_text(_page(f"study {s.name}", heading, "\n".join(parts),
                                         study_banner(store, s)))
        pages[s.name] = name
    return pages


def _strips_html(folder: Path, c: Any, data: str, arch: str) -> str:
    """The comparison's strips as PNG files, side by side where the page is wide enough."""
    images = prediction_strips(c)
    if not images:
        return ""
    e = html.escape
    (folder / "strips").mkdir(exist_ok=True)
    figures = []
    for number, image in images:
        name = f"strips/{data}-{arch}-{number}.png"
        image.save(folder / name)
        figures.append(f'<figure><img src="{e(name)}" width="{image.width}" '
                       f'alt="prediction strip {e(data)} {e(arch)} test sequence {number}">'
                       f"<figcaption>test sequence {number}</figcaption></figure>")
    return (f"<p>Test sequences that move ({e(data)}, {e(arch)}): input and truth with frame "
            "numbers, copy-last (the trivial predictor), then fixed and tuned per cell (first "
            "seed), each with its MSE per frame and |error| (black 0, bright 1).</p>"
            f'<div class="strips">{"".join(figures)}</div>')


def _index(store: Collection, tables: Sequence[Table], summary: Sequence[str],
           budget: Sequence[str], folder: Path, command: str, pages: Mapping[str, str]) -> str:
    e = html.escape
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commits = sorted({str(s.attrs.get("git_commit", "unknown")) for s in store.search})
    heading = (f"<h1>hpo-vidpred report</h1><p>Produced by <code>{e(command)}</code><br>"
               f"store <code>{e(store.url)}</code>, studies <code>{e(store.pattern)}</code>; "
               f"hpo-vidpred {__version__}, search commits {e(', '.join(commits) or '-')}; {now}"
               "</p>")
    parts = [to_html(t) for t in tables if t.section == "overview"] + [_summary_html(summary)]
    if store.compare:  # the warning belongs to the comparisons (a store may hold searches only)
        parts.append(
            f"<p class=\"label\"><b>Fixed vs optimized = {LABEL}.</b> Each table below sets "
            "the seed's published configuration against the best configuration a search "
            "found, both retrained with the same seeds and budget and tested once on the test "
            "split. Only one side was tuned, so this is not a fair 'A beats B' comparison; the "
            "cell tables (both cells tuned with the same budget) are. A difference smaller "
            "than the seed-to-seed spread is not a result; with one seed (n=1) the spread is "
            "unknown.</p>")
    for i, c in enumerate(store.compare):
        data, arch = c.field("data"), c.field("arch")
        parts.append(f"<h2>{e(data)} / {e(arch)}</h2>")
        parts += [to_html(t) for t in tables if t.key.endswith(f"-{data}-{arch}")]
        fig = steps_figure(c)
        if fig is not None:
            parts.append(_figure(fig, f"steps-{i}"))
        parts.append(_strips_html(folder, c, data, arch))
    groups = front_groups(store.search)
    if groups:
        parts.append("<h2>Quality against cost per cell</h2><p>Multi-objective searches: each "
                     "point a complete trial, each line a cell's Pareto front (no trial of that "
                     "cell is better in both); the vertical lines are the trivial predictors on "
                     "the validation split (one style each; one far off is named in the legend "
                     "only), the model must lie left of them to have learned. The "
                     "non-dominated configurations and their skill are listed on the study "
                     "pages.</p>")
    for i, (_, studies) in enumerate(sorted(groups.items())):
        fig = fronts_figure(studies)
        if fig is not None:
            parts.append(_figure(fig, f"front-{i}"))
    parts.append("<h2>Search studies</h2>")
    parts += [to_html(t) for t in tables if t.section == "studies"]
    if pages:
        parts.append("<p>Per study (hyperparameters, history, importance, parallel coordinates, "
                     "learning curves): " + ", ".join(
                         f"<a href=\"{e(p)}\">{e(n)}</a>" for n, p in pages.items()) + "</p>")
    if store.other:
        parts.append("<p>Other studies in the store: " + ", ".join(
            f"{e(n)} ({e(k)}, {t} trials)" for n, k, t in store.other) + "</p>")
    files = [(name, text) for name, text in (
        ("tables.md", "Markdown"), ("tables.tex", "LaTeX"), ("overview.csv", "overview as CSV"),
        ("results.csv", "results as CSV")) if (folder / name).is_file()
        and (folder / name).stat().st_size > 0]
    parts.append("<p>Tables as " + ", ".join(f'<a href="{n}">{t}</a>' for n, t in files)
                 + ".</p>")
    return _page("hpo-vidpred report", heading, "\n".join(parts), budget)
