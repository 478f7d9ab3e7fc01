"""Benchmark report.html: file size, build time and time-to-interactive in headless Chromium.

For each size (default 1,000 and 10,000 images of the CIFAR-10 test folder in ``../shared``,
the first N/10 of every class), clusters the images (k=10), builds the report, then opens it
from ``file://`` in a fresh headless Chromium several times and records:

* ``tti_ms``: from navigation start to the page's "interactive" mark (map drawn, visible
  galleries rendered, handlers attached; ``window.__imgclust.tti``), median of the repeats;
* ``wall_ms``: the same seen from outside (navigate command sent -> ready flag observed);
* ``hover_ms`` / ``click_ms``: a real mouse move over a point until its tooltip shows, a real
  click on a thumbnail until its neighbour list shows;
* the report's size, its thumbnails' share, and the JS heap once interactive.

The encoder only changes the embeddings, not what the page has to carry, so the default is the
fast raw-pixel encoder (``--encoder efficientnet-lite0`` for the real one, ~15 img/s here).

Usage::

    .venv/bin/python benchmarks/report.py                    # 1,000 and 10,000 images
    .venv/bin/python benchmarks/report.py --sizes 1000 --repeats 5

Writes ``benchmarks/results/report.json``. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-test"
RESULTS = ROOT / "benchmarks" / "results"
EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _subset(folder: Path, n: int) -> Path:
    """A manifest (path,label) with the first n/10 images of each class folder."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    per = max(1, n // len(classes))
    rows = []
    for c in classes:
        files = sorted(p for p in (folder / c).iterdir() if p.suffix.lower() in EXTS)[:per]
        rows += [(str(p), c) for p in files]
    import csv

    manifest = Path(tempfile.mkdtemp(prefix="imgclust-bench-")) / f"cifar_{n}.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return manifest


def _measure(report: Path, repeats: int) -> dict:
    from imgclust.report.cdp import Chromium

    runs = []
    for _ in range(repeats):
        with Chromium(width=1280, height=900, timeout=60) as b:  # fresh browser: cold cache each time
            t0 = time.perf_counter()
            b.navigate(report.resolve().as_uri())
            b.wait_for("window.__imgclust && window.__imgclust.ready", timeout=120, interval=0.005)
            wall = (time.perf_counter() - t0) * 1000
            tti = b.evaluate("window.__imgclust.tti")
            script = b.evaluate("window.__imgclust.script_ms")
            heap = b.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
            # Hover: the point nearest the map centre.
            p = b.evaluate("""(() => { const a = window.__imgclust, r = document.getElementById('map')
                .getBoundingClientRect(); let best = 0, bd = 1e18;
                for (let i = 0; i < a.n; i++) { const q = a.pointClient(i), dx = q.x - r.left - r.width / 2,
                dy = q.y - r.top - r.height / 2; if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = i; } }
                return a.pointClient(best); })()""")
            t = time.perf_counter()
            b.mouse_move(p["x"], p["y"])
            b.wait_for("!document.getElementById('tooltip').hidden", interval=0.002)
            hover = (time.perf_counter() - t) * 1000
            xy = b.evaluate("""(() => { const e = document.querySelector('.cluster[data-rendered] .th');
                e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();
                return [r.left + r.width / 2, r.top + r.height / 2]; })()""")
            b.pump(0.1)
            t = time.perf_counter()
            b.click(*xy)
            b.wait_for("!document.getElementById('nbr').hidden && "
                       "document.querySelectorAll('#nbr-list li').length > 0", interval=0.002)
            click = (time.perf_counter() - t) * 1000
            b.pump(0.1)
            errors = b.console_errors()
            runs.append({"tti_ms": tti, "script_ms": script, "wall_ms": wall, "hover_ms": hover, "click_ms": click,
                         "js_heap_mb": heap / 2**20 if heap else None, "console_errors": errors})
    med = {k: statistics.median([r[k] for r in runs]) for k in ("tti_ms", "script_ms", "wall_ms", "hover_ms",
                                                                  "click_ms")}
    med["js_heap_mb"] = runs[0]["js_heap_mb"]
    med["console_errors"] = sorted({e for r in runs for e in r["console_errors"]})
    med["runs"] = runs
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Folder with one subfolder per class.")
    ap.add_argument("--sizes", default="1000,10000", help="Comma-separated image counts.")
    ap.add_argument("--encoder", default="pixels", help="Encoder for the embeddings (default: pixels, fast).")
    ap.add_argument("--map", default="pca", help="2-D map reducer (pca is instant; umap for the real layout).")
    ap.add_argument("--repeats", type=int, default=3, help="Fresh-browser page loads per size.")
    ap.add_argument("--work", type=Path, default=None, help="Keep run directories here (default: a temp dir).")
    ap.add_argument("--out", type=Path, default=RESULTS / "report.json")
    args = ap.parse_args()

    from imgclust.api import cluster_images
    from imgclust.report import build_report
    from imgclust.report.cdp import find_chromium

    if not args.data.is_dir():
        print(f"data folder not found: {args.data}", file=sys.stderr)
        return 2
    if not find_chromium():
        print("Chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="imgclust-report-bench-"))
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        manifest = _subset(args.data, n)
        run_dir = work / f"run_{n}"
        t = time.perf_counter()
        res = cluster_images([str(manifest)], encoder=args.encoder, k=10, labels="manifest", map=args.map,
                             cache_dir=work / "cache", out=run_dir, plots=True, report=False)
        t_cluster = time.perf_counter() - t
        t = time.perf_counter()
        report = build_report(run_dir)
        t_build = time.perf_counter() - t
        html = report.read_text()
        thumbs = html.split('id="imgclust-thumbs">', 1)[1].split("</script>", 1)[0]
        row = {"n_images": len(res.paths), "encoder": args.encoder, "report_mb": report.stat().st_size / 1e6,
               "thumbnails_mb": len(thumbs) / 1e6, "per_image_kb": report.stat().st_size / 1e3 / len(res.paths),
               "cluster_s": t_cluster, "build_s": t_build}
        row.update(_measure(report, args.repeats))
        results.append(row)
        print(f"{row['n_images']:>6} images: report {row['report_mb']:.1f} MB "
              f"(thumbnails {row['thumbnails_mb']:.1f} MB,"
              f" {row['per_image_kb']:.2f} kB/image), built in {t_build:.1f} s; time-to-interactive "
              f"{row['tti_ms']:.0f} ms (wall {row['wall_ms']:.0f} ms, script {row['script_ms']:.0f} ms), hover "
              f"{row['hover_ms']:.0f} ms, click->neighbours {row['click_ms']:.0f} ms, JS heap "
              f"{row['js_heap_mb'] or 0:.0f} MB, console errors: {len(row['console_errors'])}", flush=True)
    import subprocess

    from imgclust.report.cdp import find_chromium as _fc

    version = subprocess.run([_fc(), "--version"], capture_output=True, text=True).stdout.strip()
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "chromium": version,
                       "load_avg_at_end": os.getloadavg()},
           "data": str(args.data), "repeats": args.repeats, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
