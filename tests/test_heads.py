"""Deep clustering heads (SCAN, TEMI) on frozen embeddings: losses, quality, determinism, scale."""

import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from imgclust.cluster import make_clusterer  # noqa: E402
from imgclust.cluster.classic import KMeans  # noqa: E402
from imgclust.cluster.heads import SCAN, TEMI, beta_pmi, entropy, scan_loss, self_label_loss, temi_loss  # noqa: E402
from imgclust.errors import ImgclustError  # noqa: E402
from imgclust.metrics import cluster_accuracy  # noqa: E402

K = 10


def sphere_blobs(n=2000, k=K, d=64, sigma=0.25, seed=0):
    """``k`` Gaussian clusters around random unit vectors in ``d`` dims, projected on the sphere.

    ``sigma`` is the per-dimension noise: 0.25 overlaps the clusters enough that k-means is
    high but not perfect (ACC ~0.98) and a sizeable share of nearest neighbours (~20% of the
    top-20) belong to another cluster.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), n // k)
    X = centers[y] + sigma * rng.normal(size=(len(y), d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y


def onehot_logits(labels, k=K, scale=50.0):
    return torch.nn.functional.one_hot(torch.as_tensor(labels), k).float() * scale


# --------------------------------------------------------------------------- SCAN loss


def test_scan_consistency_minimal_for_consistent_onehot():
    labels = torch.arange(20) % K
    a = onehot_logits(labels)
    total, cons, ent = scan_loss(a, a.clone(), entropy_weight=5.0)
    assert cons.item() == pytest.approx(0.0, abs=1e-6)  # -log <p, p> = -log 1
    assert ent.item() == pytest.approx(math.log(K), abs=1e-6)  # balanced batch
    assert total.item() == pytest.approx(-5.0 * math.log(K), abs=1e-5)  # the global minimum
    # Any disagreement or softness raises the consistency term.
    _, cons_bad, _ = scan_loss(a, onehot_logits((labels + 1) % K))
    _, cons_soft, _ = scan_loss(a * 0.02, a * 0.02)
    assert cons_bad.item() > 10 and cons_soft.item() > 0.5


def test_scan_entropy_penalises_collapse():
    collapsed = onehot_logits(torch.zeros(20, dtype=torch.long))
    balanced = onehot_logits(torch.arange(20) % K)
    tc, cc, ec = scan_loss(collapsed, collapsed.clone())
    tb, cb, eb = scan_loss(balanced, balanced.clone())
    # Both are perfectly consistent; only the entropy term tells them apart.
    assert cc.item() == pytest.approx(cb.item(), abs=1e-6)
    assert ec.item() == pytest.approx(0.0, abs=1e-5)
    assert tc.item() > tb.item() + 5.0 * math.log(K) - 1e-4
    # Without the entropy term collapse would be as good as the right answer.
    assert scan_loss(collapsed, collapsed, entropy_weight=0.0)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_scan_loss_per_head_and_gradients():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 16, 5, generator=g, requires_grad=True)
    n = torch.randn(3, 16, 5, generator=g)
    total, cons, ent = scan_loss(a, n, reduction="none")
    assert total.shape == cons.shape == ent.shape == (3,)
    total.sum().backward()
    assert torch.isfinite(a.grad).all()
    # per-head values equal single-head calls
    assert total[1].item() == pytest.approx(scan_loss(a[1], n[1])[0].item(), abs=1e-5)
    p = torch.full((4,), 0.25)
    assert entropy(p).item() == pytest.approx(math.log(4), abs=1e-6)


def test_self_label_loss_confident_only_and_balanced():
    weak = torch.tensor([[10.0, 0, 0], [10.0, 0, 0], [0, 10.0, 0], [0.1, 0, 0]])
    strong = torch.zeros(4, 3, requires_grad=True)
    loss, n = self_label_loss(weak, strong, threshold=0.99)
    assert n == 3  # the last row is not confident
    assert loss.item() == pytest.approx(math.log(3), abs=1e-5)  # uniform predictions: CE = log 3
    loss.backward()
    assert strong.grad[3].abs().sum() == 0  # unconfident rows get no gradient
    # Balanced: each pseudo-class weighs the same, whatever its count.
    assert strong.grad[0, 0] * 2 == pytest.approx(strong.grad[2, 1].item(), rel=1e-5)
    none, n0 = self_label_loss(torch.zeros(4, 3), strong, threshold=0.99)
    assert n0 == 0 and none.item() == 0.0


# --------------------------------------------------------------------------- TEMI loss


def test_temi_loss_agreement_beats_disagreement():
    B = 20
    labels = torch.arange(B) % K
    uniform = torch.full((K,), 1.0 / K)
    t = torch.softmax(onehot_logits(labels), -1)
    s = onehot_logits(labels)
    agree = temi_loss(s, s, t, t, uniform, beta=0.6)
    # Confident agreement on a uniform marginal reaches -log K (any beta).
    assert agree.item() == pytest.approx(-math.log(K), abs=1e-3)
    t_other = torch.softmax(onehot_logits((labels + 1) % K), -1)
    s_other = onehot_logits((labels + 1) % K)
    disagree = temi_loss(s, s_other, t, t_other, uniform, beta=0.6)
    assert disagree.item() > agree.item() + 1.0
    # The student disagreeing with a confident teacher pair is worse than agreeing.
    wrong_student = temi_loss(s_other, s_other, t, t, uniform, beta=0.6)
    assert wrong_student.item() > agree.item() + 1.0
    # Uniform predictions carry no information: weight 1/K, PMI (2 - 2 beta) log K.
    flat_t = torch.full((B, K), 1.0 / K)
    flat = temi_loss(torch.zeros(B, K), torch.zeros(B, K), flat_t, flat_t, uniform, beta=0.6)
    assert flat.item() == pytest.approx(-(1.0 / K) * 0.8 * math.log(K), abs=1e-4)
    assert flat.item() > agree.item()


def test_temi_marginal_penalises_crowded_clusters():
    # Same confident agreement, but on a cluster the marginal says is crowded: lower PMI.
    labels = torch.zeros(8, dtype=torch.long)
    s = onehot_logits(labels)
    t = torch.softmax(s, -1)
    rare = torch.full((K,), 1.0 / K)
    crowded = torch.tensor([0.91] + [0.01] * (K - 1))
    assert temi_loss(s, s, t, t, crowded).item() > temi_loss(s, s, t, t, rare).item()
    assert temi_loss(s, s, t, t, crowded).item() == pytest.approx(math.log(0.91), abs=1e-3)


def test_temi_beta_behaviour():
    g = torch.Generator().manual_seed(1)
    s_a, s_b = torch.randn(2, 32, K, generator=g)
    t_a = torch.softmax(torch.randn(32, K, generator=g), -1)
    t_b = torch.softmax(torch.randn(32, K, generator=g), -1)
    m = torch.softmax(torch.randn(K, generator=g), -1)
    # beta = 1 is plain PMI: log sum_k p q / m.
    p = torch.softmax(s_a, -1)
    plain = torch.log((p * t_b / m).sum(-1))
    assert torch.allclose(beta_pmi(torch.log_softmax(s_a, -1), t_b, m, beta=1.0), plain, atol=1e-5)
    # Every p_k q_k <= 1, so the beta-PMI falls as beta grows: the loss rises with beta ...
    losses = [temi_loss(s_a, s_b, t_a, t_b, m, beta=b).item() for b in (0.2, 0.6, 1.0)]
    assert losses[0] < losses[1] < losses[2]
    # ... except for confident agreement, where beta has no effect.
    s = onehot_logits(torch.arange(10) % K)
    t = torch.softmax(s, -1)
    u = torch.full((K,), 1.0 / K)
    assert temi_loss(s, s, t, t, u, beta=0.2).item() == pytest.approx(temi_loss(s, s, t, t, u, beta=1.0).item(),
                                                                       abs=1e-4)


def test_temi_loss_per_head_shapes_and_gradients():
    g = torch.Generator().manual_seed(2)
    s_a = torch.randn(4, 16, 300, generator=g, requires_grad=True)
    s_b = torch.randn(4, 16, 300, generator=g, requires_grad=True)
    t_a = torch.softmax(torch.randn(4, 16, 300, generator=g), -1)
    t_b = torch.softmax(torch.randn(4, 16, 300, generator=g), -1)
    m = torch.full((4, 300), 1 / 300)
    per_head = temi_loss(s_a, s_b, t_a, t_b, m, reduction="none")
    assert per_head.shape == (4,)
    per_head.sum().backward()
    assert torch.isfinite(s_a.grad).all() and torch.isfinite(s_b.grad).all()
    with pytest.raises(ValueError):
        temi_loss(s_a, s_b, t_a, t_b, m, reduction="sum")


# --------------------------------------------------------------------------- estimators


@pytest.fixture(scope="module")
def blobs():
    X, y = sphere_blobs()
    km = max(cluster_accuracy(y, KMeans(K, n_init=10, random_state=s).fit(X).labels_)[0] for s in range(3))
    assert 0.9 <= km < 1.0, "blobs should be moderately overlapping"
    return X, y, km


@pytest.fixture(scope="module")
def scan_fit(blobs):
    X, y, _ = blobs
    return SCAN(n_clusters=K, random_state=0).fit(X)


@pytest.fixture(scope="module")
def temi_fit(blobs):
    X, y, _ = blobs
    return TEMI(n_clusters=K, random_state=0).fit(X)


def _check_fitted(model, X, y, km):
    acc, _ = cluster_accuracy(y, model.labels_)
    assert acc >= 0.95, f"{type(model).__name__} ACC {acc:.3f}"
    assert acc >= km - 0.005, f"{type(model).__name__} ACC {acc:.3f} below k-means {km:.3f}"
    P = model.probabilities_
    assert P.shape == (len(X), K) and P.dtype == np.float32
    assert np.allclose(P.sum(1), 1.0, atol=1e-4)
    assert np.array_equal(P.argmax(1), model.labels_)
    assert np.allclose(model.predict_proba(X), P, atol=1e-5)
    assert np.array_equal(model.predict(X[:50] * 3.0), model.labels_[:50])  # rows are normalised
    assert model.loss_history_.ndim == 2 and model.loss_history_.shape[1] == model.n_heads
    assert np.isfinite(model.loss_history_).all()
    assert 0 <= model.best_head_ < model.n_heads


def test_scan_quality_matches_kmeans(scan_fit, blobs):
    X, y, km = blobs
    _check_fitted(scan_fit, X, y, km)


def test_temi_quality_matches_kmeans(temi_fit, blobs):
    X, y, km = blobs
    _check_fitted(temi_fit, X, y, km)
    assert temi_fit.marginal_.shape == (temi_fit.n_heads, K)


@pytest.mark.parametrize("cls", [SCAN, TEMI])
def test_deterministic_for_a_seed(cls):
    X, _ = sphere_blobs(n=400, d=32, sigma=0.2, seed=3)
    kw = dict(n_clusters=K, epochs=4, min_steps=40, n_heads=2, random_state=7)
    a = cls(**kw).fit(X)
    b = cls(**kw).fit(X)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.probabilities_, b.probabilities_)
    assert np.array_equal(a.loss_history_, b.loss_history_)
    c = cls(**{**kw, "random_state": 8}).fit(X)
    assert not np.array_equal(a.probabilities_, c.probabilities_)


def test_global_rng_untouched():
    X, _ = sphere_blobs(n=200, d=16, seed=4)
    torch.manual_seed(123)
    np.random.seed(123)
    expect_t, expect_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    SCAN(K, epochs=2, min_steps=4, n_heads=2, self_label=False).fit(X)
    TEMI(K, epochs=2, min_steps=4, n_heads=2).fit(X)
    assert torch.equal(torch.rand(3), expect_t) and np.array_equal(np.random.rand(3), expect_np)


@pytest.mark.parametrize("cls", [SCAN, TEMI])
def test_views_are_used(cls):
    X, y = sphere_blobs(n=300, d=32, sigma=0.15, seed=5)
    rng = np.random.default_rng(0)
    views = X[:, None, :] + 0.05 * rng.normal(size=(len(X), 2, X.shape[1])).astype(np.float32)
    kw = dict(n_clusters=K, epochs=3, min_steps=30, n_heads=2, random_state=0)
    with_views = cls(**kw).fit(X, views=views)
    without = cls(**kw).fit(X)
    assert with_views.labels_.shape == (len(X),)
    assert not np.array_equal(with_views.probabilities_, without.probabilities_)
    one_view = cls(**kw).fit(X, views=views[:, 0])  # (N, D) is one view
    assert one_view.probabilities_.shape == (len(X), K)
    with pytest.raises(ImgclustError):
        cls(**kw).fit(X, views=views[:10])


def test_sklearn_contract_and_registry():
    from sklearn.base import clone

    m = make_clusterer("scan", n_clusters=7, random_state=3, n_heads=4)
    assert isinstance(m, SCAN) and m.n_clusters == 7 and m.random_state == 3 and m.n_heads == 4
    assert isinstance(make_clusterer("temi", n_clusters=5), TEMI)
    assert SCAN.needs_k and TEMI.needs_k
    params = TEMI(n_clusters=3, beta=0.5).get_params()
    assert params["beta"] == 0.5 and params["n_neighbors"] == 50 and params["lr"] == 1e-4
    assert clone(SCAN(n_clusters=4, entropy_weight=2.0)).entropy_weight == 2.0
    import imgclust.cluster as cl

    assert cl.SCAN is SCAN and cl.TEMI is TEMI


@pytest.mark.parametrize("cls", [SCAN, TEMI])
def test_input_errors(cls):
    X, _ = sphere_blobs(n=50, d=8)
    with pytest.raises(ImgclustError):
        cls(n_clusters=None).fit(X)
    with pytest.raises(ImgclustError):
        cls(n_clusters=100).fit(X)
    with pytest.raises(ImgclustError):
        cls(n_clusters=3).fit(X[0])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ImgclustError):
        cls(n_clusters=3).fit(bad)
    with pytest.raises(ImgclustError):
        cls(n_clusters=3, head="resnet").fit(X)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        cls(n_clusters=3).predict(X)
    m = cls(n_clusters=3, epochs=1, min_steps=1, n_heads=1).fit(X)
    with pytest.raises(ImgclustError):
        m.predict(X[:, :4])


def test_progress_bar_can_be_shown(capsys):
    X, _ = sphere_blobs(n=200, d=16, seed=6)
    m = SCAN(K, epochs=2, min_steps=4, n_heads=2, progress=True, threshold=0.0, self_label_epochs=1).fit(X)
    assert len(m.labels_) == 200
    TEMI(K, epochs=2, min_steps=4, n_heads=2, progress=True).fit(X)


def test_early_stopping_on_plateau():
    from imgclust.cluster.heads._common import EarlyStopping

    stop = EarlyStopping(patience=3)
    assert not any(stop.step(v) for v in [5.0, 4.0, 3.0, 2.9])
    assert [stop.step(2.9) for _ in range(3)] == [False, False, True]
    assert not any(EarlyStopping(patience=0).step(1.0) for _ in range(10))


@pytest.mark.timeout(120)
def test_temi_overclustering_k2000_20000_points():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 64)).astype(np.float32)  # plenty of small groups to find
    t0 = time.perf_counter()
    m = TEMI(n_clusters=2000, n_heads=2, epochs=2, min_steps=0, random_state=0).fit(X)
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, f"over-clustering took {elapsed:.1f}s"
    assert m.labels_.shape == (20_000,)
    assert m.labels_.min() >= 0 and m.labels_.max() < 2000
    assert len(np.unique(m.labels_)) > 500  # many clusters in use, no collapse
    assert m.probabilities_.shape == (20_000, 2000)
    assert np.isfinite(m.probabilities_).all() and np.isfinite(m.loss_history_).all()


@pytest.mark.parametrize("cls,kw", [(SCAN, {"head": "mlp", "hidden": 32}), (TEMI, {"head": "mlp", "hidden": (32, 16)}),
                                    (TEMI, {"ensemble": False}), (SCAN, {"self_label": False})])
def test_head_variants_run(cls, kw):
    X, _ = sphere_blobs(n=300, d=16, seed=8)
    m = cls(n_clusters=K, epochs=3, min_steps=12, n_heads=3, random_state=0, **kw).fit(X)
    P = m.predict_proba(X)
    assert P.shape == (300, K) and np.isfinite(P).all() and np.allclose(P.sum(1), 1, atol=1e-4)
    assert np.array_equal(m.fit_predict(X), m.labels_)
