"""The smoke matrix's report in headless Chromium, without network: plotly draws every figure.

Skipped where no Chromium is installed (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from smoke_matrix import SEARCH, matrix_fixture

smoke = matrix_fixture()  # the smoke matrix, run once per session

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get "
                                 "install chromium) to render the report")]


def _render(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran, from a Chromium that cannot reach a network."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _check_page(path: Path, profile: Path, min_figures: int) -> str:
    """The page's figures, drawn by plotly offline; returns the rendered DOM."""
    source = path.read_text()
    # Nothing is fetched from elsewhere: every src/href is a file beside the page.
    assert not re.search(r'(src|href)="(https?:)?//', source)
    assert '<script src="plotly.min.js"></script>' in source
    assert '<link rel="stylesheet" href="style.css">' in source
    figures = len(re.findall(r'<div class="figure">', source))
    assert figures >= min_figures
    dom = _render(path, profile)
    # plotly turns each figure's div into a plot container with its SVG layers
    assert dom.count('class="plot-container plotly"') == figures
    assert dom.count('class="main-svg"') >= 2 * figures
    assert "<g class=\"scatterlayer" in dom
    return dom


@pytest.mark.parametrize("page", ["index.html", f"study-{SEARCH[0]}.html"])
def test_report_pages_render_their_figures_offline(matrix: dict, page: str,
                                                   tmp_path: Path) -> None:
    dom = _check_page(Path(matrix["report"]) / page, tmp_path / "profile",
                      1 if page == "index.html" else 4)
    if page == "index.html":
        assert 'src="strips/mmnist-autoencoder.png"' in dom


def test_a_hand_made_report_renders_offline(tmp_path: Path) -> None:
    """The same without the matrix: a store built by hand, with trivial baselines."""
    from report_stores import SEARCH as STUDY
    from report_stores import baselines, compare_study, search_study

    from hpo_vidpred.report import write_report

    url = f"sqlite:///{tmp_path / 's.db'}"
    search_study(url, baselines("val", 0.06, 0.021, 0.05))
    compare_study(url, {("convlstm", "fixed"): [0.029, 0.0292],
                        ("convlstm", "optimized"): [0.020, 0.021]},
                  baselines("test", 0.05, 0.03, 0.04))
    write_report(url, tmp_path / "r")
    for page in ("index.html", f"study-{STUDY}.html"):
        # index: MSE per step; study: history, importance, parallel coordinates
        dom = _check_page(tmp_path / "r" / page, tmp_path / f"profile-{page}",
                          1 if page == "index.html" else 3)
        assert "NOT LEARNED" in dom
