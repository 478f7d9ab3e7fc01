"""The report's Curation section in headless Chromium: duplicate groups and the outlier gallery render.

Skipped when Chromium is not installed (see ``test_report_browser.py`` for how CI installs it).
"""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from imgclust.report.cdp import Chromium, find_chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_curation_section_renders(tmp_path):
    binary = find_chromium()
    if not binary:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from imgclust.api import cluster_images
    from imgclust.explore.curate import find_duplicates, find_outliers
    from run_fixtures import make_image_folder

    images = make_image_folder(tmp_path / "images", per_class=6)
    src = sorted((images / "green").glob("*.png"))[0]
    shutil.copy(src, images / "green" / "copy.png")
    Image.open(src).resize((96, 96), Image.BICUBIC).save(images / "green" / "big.png")
    run = tmp_path / "run"
    cluster_images([str(images)], encoder="pixels", k=3, labels="folder", map="pca", cache_dir=tmp_path / "c",
                   out=run, plots=False, report=False, progress=False)
    dup = find_duplicates(run, threshold=0.98, report=False)
    out = find_outliers(run, k=5, contamination=0.1)  # rebuilds report.html with both
    with Chromium(binary, width=1200, height=900) as b:
        b.navigate((run / "report.html").resolve().as_uri())
        b.wait_for("window.__imgclust && window.__imgclust.ready", timeout=20)
        assert b.evaluate("!document.getElementById('curation-section').hidden")
        assert b.evaluate("document.querySelectorAll('#duplicates .dup-group').length") == dup.n_groups
        assert b.evaluate("document.querySelectorAll('#duplicates .th.rep').length") == dup.n_groups
        assert b.evaluate("document.querySelectorAll('#outliers .th').length") == len(out.indices)
        assert b.evaluate("document.querySelectorAll('#outliers .th.flag').length") == out.n_flagged
        assert b.evaluate("document.querySelectorAll('#figures').length") == 1  # later sections still drawn
        assert b.console_errors() == []
