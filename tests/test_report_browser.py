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


@pytest.mark.parametrize("page", ["index.html", f"study-{SEARCH[0]}.html"])
def test_report_pages_render_their_figures_offline(matrix: dict, page: str,
                                                   tmp_path: Path) -> None:
    path = Path(matrix["report"]) / page
    source = path.read_text()
    # Nothing is fetched from elsewhere: every src/href is a file beside the page.
    assert not re.search(r'(src|href)="(https?:)?//', source)
    assert '<script src="plotly.min.js"></script>' in source
    assert '<link rel="stylesheet" href="style.css">' in source
    figures = len(re.findall(r'<div class="figure">', source))
    assert figures >= (1 if page == "index.html" else 4)
    dom = _render(path, tmp_path / "profile")
    # plotly turns each figure's div into a plot container with its SVG layers
    assert dom.count('class="plot-container plotly"') == figures
    assert dom.count('class="main-svg"') >= 2 * figures
    assert "<g class=\"scatterlayer" in dom
    if page == "index.html":
        assert 'src="strips/mmnist-autoencoder.png"' in dom
