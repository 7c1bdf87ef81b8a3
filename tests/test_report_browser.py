"""The smoke matrix's report in headless Chromium, without network: plotly draws every figure,
and at 1400 and 900 px wide the overview table and the prediction strips fit the window (no
horizontal overflow; the strips drawn at their full size). Screenshots of both widths are kept
in the test's temporary folder.

Skipped where no Chromium is installed (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import json
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


def _render(page: Path, profile: Path, *extra: str) -> str:
    """The DOM of ``page`` after its scripts ran, from a Chromium that cannot reach a network
    (``extra``: more switches, e.g. a window size or a screenshot instead of the DOM)."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000",
         *(extra or ("--dump-dom",)), page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# Appended to a copy of a page: once plotly has drawn, every element that reaches past the
# window's right edge, and the strips' drawn and natural widths, as JSON in <pre id="measure">.
MEASURE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll("table, img, .figure, .banner, p, ul, h1, h2, h3")]
    .filter(el => el.getBoundingClientRect().right > width + 1)
    .map(el => `${el.tagName}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`);
  const overview = document.querySelector("table.overview");
  const out = {width, scroll: document.documentElement.scrollWidth, wide,
    overview: overview ? [overview.rows.length, Math.round(overview.getBoundingClientRect().right)]
                       : null,
    strips: [...document.querySelectorAll(".strips img")].map(
      img => [img.naturalWidth, img.width,
              Math.round(img.getBoundingClientRect().right)])};
  const pre = document.createElement("pre");
  pre.id = "measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 1000));
</script>"""


def _measure(page: Path, profile: Path, width: int) -> dict:
    """What :data:`MEASURE` finds on ``page`` in a window ``width`` px wide."""
    probe = page.with_name(f"measure-{width}-{page.name}")
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    try:
        dom = _render(probe, profile, f"--window-size={width},1200", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


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
    # study page: history, parallel coordinates, learning curves (3 trials: no importance)
    dom = _check_page(Path(matrix["report"]) / page, tmp_path / "profile",
                      1 if page == "index.html" else 2)
    if page == "index.html":
        assert len(re.findall(r'src="strips/mmnist-autoencoder-\d+\.png"', dom)) == 3
        assert 'report overview"' in dom


@pytest.mark.parametrize("width", [1400, 900])
def test_the_overview_and_the_strips_fit_the_window(matrix: dict, width: int,
                                                    tmp_path: Path) -> None:
    report = Path(matrix["report"])
    for page in ("index.html", f"study-{SEARCH[0]}.html"):
        found = _measure(report / page, tmp_path / f"profile-{page}", width)
        assert found["width"] <= width and found["scroll"] <= found["width"], found
        assert not found["wide"], found  # nothing reaches past the right edge
    index = _measure(report / "index.html", tmp_path / "profile-index", width)
    # the overview: 6 architecture x cell blocks (two compared with 2 roles, four not run)
    rows, right = index["overview"]
    assert rows == 1 + 2 * 2 + 4 and right <= index["width"]
    # three strips, each drawn at its natural size (frames 96 px: a digit can be seen)
    assert len(index["strips"]) == 3
    for natural, drawn, right in index["strips"]:
        assert drawn == natural and right <= index["width"], index["strips"]
    shot = tmp_path / f"index-{width}.png"
    _render(report / "index.html", tmp_path / "profile-shot", f"--window-size={width},3000",
            f"--screenshot={shot}")
    from PIL import Image

    assert Image.open(shot).size == (width, 3000)


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
        # index: MSE per step; study: history, parallel coordinates (no curves recorded)
        dom = _check_page(tmp_path / "r" / page, tmp_path / f"profile-{page}",
                          1 if page == "index.html" else 2)
        assert "NOT LEARNED" in dom
