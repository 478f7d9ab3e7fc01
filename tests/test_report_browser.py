"""report.html in real headless Chromium, opened from file://, driven with trusted input events.

Chromium is Debian's ``chromium`` package. When it is missing and the test runs as root in CI
(``CI`` set), it is installed with apt-get; otherwise the test is skipped with the reason.
Screenshots go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from imgclust.report.cdp import Chromium, find_chromium
from run_fixtures import HOSTILE_NAME, make_run
from test_report import HOSTILE_CLUSTER_NAME, HOSTILE_ENCODER, HOSTILE_ERROR, decorate_run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]  # apt-get may take minutes; the test itself < 60 s

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _ensure_chromium() -> str:
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or not os.environ.get("CI") or not shutil.which("apt-get"):
        pytest.skip("Chromium is not installed (apt-get install chromium); it is installed automatically only "
                    "in CI (CI set) when running as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=600)
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, text=True,
                          timeout=900)
    found = find_chromium()
    if not found:
        pytest.skip(f"apt-get install chromium failed: {proc.stderr.strip()[-300:]}")
    return found


@pytest.fixture(scope="module")
def browser():
    binary = _ensure_chromium()
    with Chromium(binary, width=1280, height=900) as b:
        yield b


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir, images, result = make_run(tmp_path_factory.mktemp("browser"), k=3, report=True, plots=True)
    # Cluster names with scores, a comparison (hostile encoder name, a failed row), a SCAN loss curve
    # and the linear-probe reference, as `imgclust name` / `compare` / `probe` would add them.
    decorate_run(run_dir)
    return run_dir / "report.html", result


def _center(b: Chromium, selector: str) -> tuple[float, float]:
    """Scroll an element into view and return its centre in viewport coordinates."""
    rect = b.evaluate(f"""(() => {{ const e = document.querySelector({selector!r});
        if (!e) return null; e.scrollIntoView({{block: 'center'}});
        const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
    assert rect, f"no element {selector}"
    b.pump(0.1)  # let layout settle after the scroll
    rect = b.evaluate(f"""(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();
        return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
    return rect[0], rect[1]


def test_report_in_chromium(browser, report):
    b = browser
    path, result = report
    ARTIFACTS.mkdir(exist_ok=True)
    b.navigate(path.resolve().as_uri())
    b.wait_for("window.__imgclust && window.__imgclust.ready", timeout=20)
    tti = b.evaluate("window.__imgclust.tti")
    assert 0 < tti < 5000

    # Map and galleries are present; thumbnails decode.
    n_clusters = len(set(result.labels.tolist()))
    assert b.evaluate("document.getElementById('map').width") > 100
    assert b.evaluate("document.querySelectorAll('#galleries section.cluster').length") == n_clusters
    assert b.evaluate("document.querySelectorAll('#legend li').length") == n_clusters
    b.wait_for("[...document.querySelectorAll('.cluster[data-rendered] .th img')].some(i => i.naturalWidth > 0)")
    assert b.evaluate("document.querySelectorAll('#scores tbody tr').length") >= 5
    assert b.evaluate("document.querySelectorAll('#confusion tr').length") == 4
    b.screenshot(ARTIFACTS / "report-top.png")

    # Hover: a real mouse move over a well-separated point shows that point's thumbnail.
    pts = b.evaluate("[...Array(window.__imgclust.n).keys()].map(i => window.__imgclust.pointClient(i))")
    def isolation(i):
        return min(((p["x"] - pts[i]["x"]) ** 2 + (p["y"] - pts[i]["y"]) ** 2) for j, p in enumerate(pts) if j != i)
    i = max(range(len(pts)), key=isolation)
    b.evaluate("window.scrollTo(0, 0)")
    pts = b.evaluate("[...Array(window.__imgclust.n).keys()].map(i => window.__imgclust.pointClient(i))")
    b.mouse_move(pts[i]["x"], pts[i]["y"])
    b.wait_for("!document.getElementById('tooltip').hidden")
    assert b.evaluate("document.getElementById('tooltip').getAttribute('data-i')") == str(i)
    assert b.evaluate(f"document.getElementById('tooltip-img').src === window.__imgclust.thumbURL({i})")
    b.wait_for("document.getElementById('tooltip-img').naturalWidth > 0")
    assert b.evaluate("document.getElementById('tooltip-text').textContent").startswith(Path(result.paths[i]).name)
    b.screenshot(ARTIFACTS / "report-hover.png")

    # Wheel zoom around the cursor moves the other points.
    before = b.evaluate("window.__imgclust.pointClient(0)")
    b.call("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": pts[i]["x"], "y": pts[i]["y"],
                                        "deltaX": 0, "deltaY": -300})
    b.pump(0.1)
    after = b.evaluate("window.__imgclust.pointClient(0)")
    assert (before["x"], before["y"]) != (after["x"], after["y"]) or i == 0
    b.click(*_center(b, "#zoom-reset"))

    # Click a gallery thumbnail: its neighbours open, in the precomputed order.
    first = int(b.evaluate("document.querySelector('.cluster[data-rendered] .th').getAttribute('data-i')"))
    b.click(*_center(b, f".cluster[data-rendered] .th[data-i='{first}']"))
    b.wait_for("!document.getElementById('nbr').hidden")
    assert b.evaluate("document.getElementById('nbr-query').getAttribute('data-i')") == str(first)
    shown = b.evaluate("[...document.querySelectorAll('#nbr-list li')].map(li => +li.getAttribute('data-i'))")
    assert shown == b.evaluate(f"window.__imgclust.neighbours({first})") and len(shown) == 10
    b.screenshot(ARTIFACTS / "report-neighbours.png")

    # Jump to the first neighbour's neighbours, then back.
    b.click(*_center(b, "#nbr-list li"))
    b.wait_for(f"document.getElementById('nbr-query').getAttribute('data-i') === '{shown[0]}'")
    b.click(*_center(b, "#nbr-back"))
    b.wait_for(f"document.getElementById('nbr-query').getAttribute('data-i') === '{first}'")
    b.click(*_center(b, "#nbr-close"))
    b.wait_for("document.getElementById('nbr').hidden")

    # The hostile file name renders as text, everywhere, and runs nothing.
    h = next(j for j, p in enumerate(result.paths) if Path(p).name == HOSTILE_NAME)
    section = f"#cluster-{int(result.labels[h])}"
    _center(b, section)  # scrolling there renders the gallery (lazy)
    b.wait_for(f"!!document.querySelector(\"{section} .th[data-i='{h}']\")")
    cap = b.evaluate(f"document.querySelector(\".th[data-i='{h}'] .cap\").textContent")
    assert cap == HOSTILE_NAME
    b.click(*_center(b, f".th[data-i='{h}']"))
    b.wait_for(f"document.getElementById('nbr-query').getAttribute('data-i') === '{h}'")
    assert b.evaluate("document.querySelector('#nbr-query .path').textContent") == result.paths[h]
    assert HOSTILE_NAME in b.evaluate("document.body.innerText")
    assert b.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert b.evaluate("document.querySelectorAll('[onerror]').length") == 0
    b.screenshot(ARTIFACTS / "report-hostile-name.png")

    # Every gallery renders; a full-page picture for the artefacts.
    b.evaluate("document.querySelectorAll('#galleries section.cluster').forEach(s => s.scrollIntoView())")
    b.wait_for("document.querySelectorAll('#galleries section.cluster:not([data-rendered])').length === 0")
    b.evaluate("window.scrollTo(0, 0)")
    b.screenshot(ARTIFACTS / "report-full.png", full_page=True)

    b.pump(0.2)
    assert b.dialogs() == [], "a dialog opened: injected script ran"
    assert b.console_errors() == []


def test_report_names_comparison_training_in_chromium(browser, report):
    b = browser
    path, result = report
    ARTIFACTS.mkdir(exist_ok=True)
    b.navigate(path.resolve().as_uri())
    b.wait_for("window.__imgclust && window.__imgclust.ready", timeout=20)
    first = min(c for c in set(result.labels.tolist()) if c != -1)

    # Names with scores next to the gallery headings, as text; the hostile name injects nothing.
    names = b.evaluate("[...document.querySelectorAll('#galleries h3 .names')].map(e => e.textContent)")
    assert len(names) == len(set(result.labels.tolist()))
    assert b.evaluate(f"document.querySelector('#cluster-{first} h3 .names').textContent") == (
        f"{HOSTILE_CLUSTER_NAME} 0.62 · tabby cat 0.21 · tiger cat 0.08")
    assert b.evaluate(f"document.querySelector('#cluster-{first} h3').textContent") == (
        f"cluster {first}: {HOSTILE_CLUSTER_NAME} 0.62 · tabby cat 0.21 · tiger cat 0.08")
    assert b.evaluate(f"document.querySelector('#cluster-{first} h3 .best .nm-name').textContent") == (
        HOSTILE_CLUSTER_NAME)
    legend = b.evaluate("[...document.querySelectorAll('#legend li')].map(e => e.textContent)")
    assert any(t.startswith(f"cluster {first}: {HOSTILE_CLUSTER_NAME} (") for t in legend)
    caption = b.evaluate("document.getElementById('naming-caption').textContent")
    assert "vocabulary general (1234 names)" in caption and "contrast λ = 0.50" in caption
    assert "clip-vit-b-32" in caption and b.evaluate("!document.getElementById('naming-caption').hidden")

    # The tooltip names the hovered point's cluster with its scores.
    pts = b.evaluate("[...Array(window.__imgclust.n).keys()].map(i => window.__imgclust.pointClient(i))")
    b.mouse_move(pts[0]["x"], pts[0]["y"])
    b.wait_for("!document.getElementById('tooltip').hidden")
    i = int(b.evaluate("document.getElementById('tooltip').getAttribute('data-i')"))
    tip = b.evaluate("document.querySelector('#tooltip-text .tip-names').textContent")
    assert "tabby cat 0.21" in tip
    assert b.evaluate("document.querySelector('#tooltip-text .chip').textContent").startswith(
        f"cluster {int(result.labels[i])}: ")
    b.mouse_move(1, 1)

    # Probe row and the training curve.
    probe = b.evaluate("document.querySelector('#scores tr[data-key=probe]').textContent")
    assert probe.startswith("linear probe accuracy (supervised reference)0.9700 ± 0.0200")
    assert b.evaluate("document.querySelector('#training h3').textContent") == "Training: scan loss per epoch"
    assert b.evaluate("document.querySelectorAll('#training-chart circle').length") == 6
    assert len(b.evaluate("document.querySelector('#training-chart polyline').getAttribute('points')").split()) == 6
    b.evaluate("document.getElementById('scores-section').scrollIntoView()")
    b.pump(0.1)
    b.screenshot(ARTIFACTS / "report-scores-names.png")

    # The comparison table: only the columns with values, best in bold, ± std, this run marked.
    assert b.evaluate("!document.getElementById('compare-section').hidden")
    assert b.evaluate("!document.getElementById('toc-compare').hidden")
    heads = b.evaluate("[...document.querySelectorAll('#compare-table thead th')].map(e => e.textContent)")
    assert heads == ["encoder", "dim", "silhouette ↑", "Davies-Bouldin ↓", "accuracy ↑", "report"]
    rows = b.evaluate("""[...document.querySelectorAll('#compare-table tbody tr')].map(tr => ({
        cls: tr.className, enc: tr.querySelector('.enc-name').textContent,
        badge: (tr.querySelector('.badge') || {}).textContent || null,
        cells: [...tr.querySelectorAll('td')].map(td => td.textContent),
        bold: [...tr.querySelectorAll('td.best')].map(td => td.getAttribute('data-key')),
        href: (tr.querySelector('a') || {getAttribute: () => null}).getAttribute('href')}))""")
    assert [r["enc"] for r in rows] == ["pixels", HOSTILE_ENCODER]
    assert rows[0]["cls"] == "this" and rows[0]["badge"] == "this run" and rows[1]["badge"] is None
    assert rows[0]["cells"][1:] == ["6912", "0.4100 ± 0.0100", "0.9000", "0.9500", "this page"]
    assert rows[1]["cells"][:5] == [HOSTILE_ENCODER, "512", "0.5500 ± 0.0200", "1.2000", "0.9900"]
    assert rows[0]["bold"] == ["davies_bouldin"] and rows[1]["bold"] == ["silhouette", "acc"]
    href = rows[1]["href"]
    assert href.startswith("../") and href.endswith("/report.html") and ":" not in href
    failed = b.evaluate("[...document.querySelectorAll('#compare-failed li')].map(e => e.textContent)")
    assert failed == [f"clip-vit-b-32: {HOSTILE_ERROR}"]
    # Nothing was injected: no <img src=x>, no <b>, no extra <script>, no handler attributes.
    assert b.evaluate("document.querySelectorAll('img[src=\"x\"], b, [onerror]').length") == 0
    assert b.evaluate("document.scripts.length") == 3
    assert HOSTILE_ENCODER in b.evaluate("document.getElementById('compare-section').innerText")
    b.evaluate("document.getElementById('compare-section').scrollIntoView()")
    b.pump(0.1)
    b.screenshot(ARTIFACTS / "report-compare.png")
    b.evaluate(f"document.getElementById('cluster-{first}').scrollIntoView()")
    b.pump(0.1)
    b.screenshot(ARTIFACTS / "report-cluster-names.png")
    b.pump(0.2)
    assert b.dialogs() == [], "a dialog opened: injected script ran"
    assert b.console_errors() == []

    # The link opens the other encoder's report (a relative file link: allowed by the page's CSP).
    b.click(*_center(b, "#compare-table tbody tr:nth-child(2) a"))
    b.wait_for("!!document.getElementById('other')", timeout=10)
    assert b.evaluate("location.protocol") == "file:"
    assert b.dialogs() == [] and b.console_errors() == []
