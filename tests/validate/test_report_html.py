"""report.html in a real browser: headless Chromium renders the page of a real INT8 build (with a sibling build of
another target beside it), the screenshot is not blank, and every section heading of report.md is a heading of the
rendered page. Chromium comes from Debian's `chromium` package (.ci/run installs it); without it the test fails under
CI and is skipped, saying so, elsewhere."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from edgedeploy.validate.html import render_html
from edgedeploy.validate.record import Report
from edgedeploy.validate.report import render_markdown

pytestmark = pytest.mark.slow  # the shared INT8 demo builds (precision_helpers)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")


def run_chromium(page: Path, work: Path, *mode: str) -> subprocess.CompletedProcess:
    """Headless Chromium with no network, sync, updates or first-run work, and a fresh profile."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={work / 'profile'}", "--window-size=1280,4000", *mode, page.as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=work)


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self._open: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self._open, self._text = tag, ""

    def handle_endtag(self, tag):
        if tag == self._open:
            self.headings.append((tag, " ".join(self._text.split())))
            self._open = None

    def handle_data(self, data):
        if self._open:
            self._text += data


@pytest.fixture(scope="module")
def int8_reports():
    from precision_helpers import built

    return (Report.model_validate(built("openvino", "int8")[1]),
            Report.model_validate(built("onnxruntime", "int8")[1]))


def test_report_html_renders_every_section_of_report_md(int8_reports, tmp_path):
    report, sibling = int8_reports
    md = render_markdown(report, [sibling])
    page = tmp_path / "report.html"
    page.write_text(render_html(report, [sibling]))

    dom = run_chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Headings()
    parser.feed(dom.stdout)
    rendered = parser.headings
    wanted = [(f"h{len(m.group(1))}", " ".join(m.group(2).split()))
              for m in re.finditer(r"^(#{2,3}) (.+)$", md, flags=re.MULTILINE)]
    assert [h for h in rendered if h[0] != "h1"] == wanted
    for title in ("Checks", "Outputs vs reference", "Detection", "Per-layer INT8 error", "Precision", "Calibration",
                  "Latency", "Side by side", "Graph passes", "Stages"):  # every section a build report can have
        assert any(text.startswith(title) for _, text in wanted), title
    assert rendered[0][0] == "h1" and md.splitlines()[0].lstrip("# ").split(" — ")[0] in rendered[0][1]
    # errors; AP per class, PR curves, confusion matrix (render_html draws no image without the pictures); layers,
    # latency, tradeoff
    assert dom.stdout.count("data:image/png;base64,") == 7

    shot = run_chromium(page, tmp_path, f"--screenshot={tmp_path / 'shot.png'}")
    assert shot.returncode == 0 and (tmp_path / "shot.png").is_file(), shot.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(tmp_path / "shot.png").convert("L"), dtype=np.float32)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    inked = (pixels < 200).mean()
    assert 0.02 < inked < 0.6, f"{inked:.1%} of the screenshot is ink"  # text, tables and plots, not a blank page
