"""Label-free choice of k: every criterion finds the true k of separated blobs; errors are one line."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from imgclust.cluster.selection import mismatch, pick_stability
from imgclust.cluster.sweep import K_CRITERIA, check_criterion, sweep_k
from imgclust.errors import ImgclustError


@pytest.mark.parametrize("criterion", sorted(K_CRITERIA))
@pytest.mark.parametrize("true_k", [4, 7])
def test_each_criterion_picks_the_true_k_of_blobs(criterion, true_k):
    X, _ = make_blobs(n_samples=420, centers=true_k, n_features=10, cluster_std=1.0, random_state=true_k)
    sw = sweep_k(X.astype(np.float32), "kmeans", ks=list(range(2, 10)), random_state=0, criterion=criterion)
    assert sw.best_k == true_k
    assert sw.criterion == criterion


def test_mismatch_ignores_label_names_and_counts_disagreement():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert mismatch(a, np.array([2, 2, 0, 0, 1, 1])) == 0.0
    assert mismatch(a, np.array([0, 0, 1, 1, 2, 1])) == pytest.approx(1 / 6)


def test_stability_rule_takes_the_largest_k_within_one_standard_error():
    # every k up to the true one is perfectly stable: the largest such k is the answer, not k = 2
    assert pick_stability([2, 3, 4, 5], [0.0, 0.0, 0.0, 0.4], [0.0, 0.0, 0.0, 0.05]) == 4


def test_an_unknown_criterion_is_one_line():
    with pytest.raises(ImgclustError, match="valid: silhouette"):
        check_criterion("elbowish")


def test_cli_k_criterion_end_to_end(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in enumerate([(255, 0, 0), (0, 0, 255), (0, 200, 0)]):
        for i in range(8):
            arr = np.clip(np.array(colour)[None, None] + rng.normal(0, 12, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / f"c{c}_{i}.png")
    from pathlib import Path

    exe = [str(Path(sys.executable).parent / "imgclust")]
    env_out = tmp_path / "run"
    r = subprocess.run([*exe, "run", str(tmp_path), "--encoder", "pixels", "--k", "auto", "--k-criterion",
                        "davies_bouldin", "--out", str(env_out), "--no-report"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = subprocess.run([*exe, "run", str(tmp_path), "--encoder", "pixels", "--k", "auto", "--k-criterion", "nope",
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "valid:" in bad.stderr + bad.stdout
