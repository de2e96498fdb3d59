"""audiossl.score.linear: the linear probe learns what is linearly there and nothing else; the L2
weight is chosen by the validation metric; the held-out split is stratified and seeded."""
import numpy as np
import pytest
import torch

from audiossl.score.linear import LinearProbe, fit_linear, holdout_split
from audiossl.score.metrics import compute_metrics

torch.set_num_threads(1)


def blobs(n_per_class, num_classes, dim, seed, scale=1.0, offset=5.0):
    """Gaussian classes separated along their own direction (linearly separable), badly scaled
    features (standardisation must cope)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(num_classes, dim) * 6.0
    x = np.concatenate([rng.normal(0, 1, (n_per_class, dim)) + centres[c] for c in range(num_classes)])
    y = np.repeat(np.eye(num_classes), n_per_class, axis=0)
    return x * scale + offset, y


def test_separable_data_are_separated_and_shuffled_labels_are_not():
    x, y = blobs(40, 4, 10, seed=0, scale=np.geomspace(1e-3, 1e3, 10))
    vx, vy = blobs(20, 4, 10, seed=1, scale=np.geomspace(1e-3, 1e3, 10))
    tx, ty = blobs(50, 4, 10, seed=2, scale=np.geomspace(1e-3, 1e3, 10))
    probe = fit_linear(x, y, vx, vy, multi_label=False)
    p = probe.predict_proba(tx)
    assert p.shape == (200, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    assert compute_metrics(p, ty, multi_label=False)["acc"] >= 0.98
    # The same features with labels shuffled: nothing to learn, test accuracy near chance (25%).
    rng = np.random.default_rng(3)
    shuffled = fit_linear(x, y[rng.permutation(len(y))], vx, vy[rng.permutation(len(vy))], multi_label=False)
    acc = compute_metrics(shuffled.predict_proba(tx), ty, multi_label=False)["acc"]
    assert acc < 0.45, acc


def test_multi_label_one_vs_rest():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (300, 6))
    y = (x[:, :3] > 0.3).astype(np.float64)  # label c present when feature c is large
    vx = rng.normal(0, 1, (100, 6))
    vy = (vx[:, :3] > 0.3).astype(np.float64)
    probe = fit_linear(x, y, vx, vy, multi_label=True)
    assert probe.metric == "mAP" and probe.multi_label
    p = probe.predict_proba(vx)
    assert not np.allclose(p.sum(1), 1.0)  # independent sigmoids
    assert compute_metrics(p, vy, multi_label=True)["mAP"] > 0.95
    # the weight of class c sits on feature c
    assert (np.argmax(np.abs(probe.weight), axis=0) == [0, 1, 2]).all()


def test_l2_is_chosen_by_the_validation_metric():
    # Few noisy dimensions, little data: strong L2 generalises; the grid picks what the valid set says.
    x, y = blobs(6, 2, 40, seed=0)
    x[:, 2:] += np.random.default_rng(1).normal(0, 3, (12, 38))
    vx, vy = blobs(100, 2, 40, seed=2)
    vx[:, 2:] += np.random.default_rng(3).normal(0, 3, (200, 38))
    grid = (1e-4, 1e-2, 1.0, 10.0)
    probe = fit_linear(x, y, vx, vy, multi_label=False, l2_grid=grid)
    assert set(probe.grid) == set(grid)
    for l2 in grid:  # each value in the grid is what a probe fit with that single L2 gets on valid
        alone = fit_linear(x, y, vx, vy, multi_label=False, l2_grid=(l2,))
        assert alone.valid_metric == pytest.approx(probe.grid[l2])
        assert compute_metrics(alone.predict_proba(vx), vy, multi_label=False)["acc"] == pytest.approx(probe.grid[l2])
    best = max(probe.grid.values())
    assert probe.valid_metric == best
    assert probe.l2 == max(l2 for l2, v in probe.grid.items() if v == best)  # ties: the larger L2
    # Flip what the validation data say: the choice follows them.
    flipped = fit_linear(x, y, vx, 1 - vy, multi_label=False, l2_grid=grid)
    assert flipped.valid_metric == max(flipped.grid.values())
    assert flipped.grid != probe.grid


def test_fit_is_deterministic_and_refit_uses_the_validation_part():
    x, y = blobs(20, 3, 5, seed=0)
    vx, vy = blobs(10, 3, 5, seed=1)
    a = fit_linear(x, y, vx, vy, multi_label=False, l2_grid=(1e-2, 1.0))
    b = fit_linear(x, y, vx, vy, multi_label=False, l2_grid=(1e-2, 1.0))
    np.testing.assert_array_equal(a.weight, b.weight)
    assert a.num_fit == 60
    c = fit_linear(x, y, vx, vy, multi_label=False, l2_grid=(1e-2, 1.0), refit_with_valid=True)
    assert c.num_fit == 90 and c.l2 == a.l2
    np.testing.assert_allclose(c.mean, np.concatenate([x, vx]).mean(0))
    assert not np.allclose(c.weight, a.weight)


def test_predict_proba_standardises_with_the_fit_statistics():
    probe = LinearProbe(mean=np.array([10.0]), std=np.array([2.0]), weight=np.array([[1.0, -1.0]]),
                        bias=np.zeros(2), multi_label=False, l2=1.0)
    p = probe.predict_proba(np.array([[10.0], [14.0]]))
    np.testing.assert_allclose(p[0], [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(p[1], torch.softmax(torch.tensor([2.0, -2.0]), 0).numpy(), rtol=1e-6)


def test_holdout_split_is_stratified_and_seeded():
    counts = [50, 30, 10, 5, 1]
    y = np.concatenate([np.tile(np.eye(5)[c], (n, 1)) for c, n in enumerate(counts)])
    tr, va = holdout_split(y, 0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    assert (np.diff(va) > 0).all() and (np.diff(tr) > 0).all()
    per_class = y[va].sum(0)
    np.testing.assert_array_equal(per_class, [10, 6, 2, 1, 0])  # 20% of each class; a singleton stays in train
    assert (y[tr].sum(0) >= 1).all()
    tr2, va2 = holdout_split(y, 0.2, seed=0)
    np.testing.assert_array_equal(va, va2)
    _, va3 = holdout_split(y, 0.2, seed=1)
    assert not np.array_equal(va, va3) and (y[va3].sum(0) == per_class).all()
    # multi-label: stratified by the rarest label of each clip
    ml = np.zeros((40, 3))
    ml[:, 0] = 1
    ml[:10, 2] = 1  # the rare label rides on 10 clips
    _, va = holdout_split(ml, 0.2, seed=0)
    assert ml[va, 2].sum() == 2 and len(va) == 8
    with pytest.raises(ValueError, match="separate validation set"):
        holdout_split(np.eye(3), 0.2)


@pytest.mark.parametrize("multi_label", [False, True])
def test_a_warm_start_reaches_the_same_minimum(multi_label):
    # fit_linear starts each L2 of its grid from the previous one's solution
    from audiossl.score.linear import _fit_one

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (300, 12)) + np.repeat(np.eye(3, 12) * 1.5, 100, axis=0)
    y = np.repeat(np.eye(3), 100, axis=0)
    if multi_label:
        y[::4, 0] = 1.0
    cpu = torch.device("cpu")
    prev = _fit_one(x, y, multi_label, 1.0, 500, cpu)
    cold = _fit_one(x, y, multi_label, 1e-3, 500, cpu)
    warm = _fit_one(x, y, multi_label, 1e-3, 500, cpu, init=(prev[2], prev[3]))
    np.testing.assert_allclose(warm[2], cold[2], atol=1e-3)
    np.testing.assert_allclose(LinearProbe(*warm[:4], multi_label=multi_label, l2=1e-3).predict_proba(x),
                               LinearProbe(*cold[:4], multi_label=multi_label, l2=1e-3).predict_proba(x), atol=1e-4)
