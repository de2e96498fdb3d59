"""audiossl.data.sampler: rank partition, determinism, resume, weighted and length-aware batching."""
from __future__ import annotations

import numpy as np
import pytest

from audiossl.data.sampler import DistributedBatchSampler, label_balanced_weights, split_global_batch


def indices(batches):
    return [i for b in batches for i, _ in b]


def test_ranks_are_disjoint_and_cover_each_update():
    n, bs, world, accum = 50, 3, 2, 2
    samplers = [DistributedBatchSampler(n, bs, num_replicas=world, rank=r, seed=7, accum_grad=accum) for r in range(world)]
    per_rank = [list(s) for s in samplers]
    assert samplers[0].updates_per_epoch == 50 // (bs * world * accum) == 4
    assert all(len(b) == 2 * 4 for b in per_rank) and all(len(x) == bs for b in per_rank for x in b)
    seen = [set(indices(b)) for b in per_rank]
    assert not seen[0] & seen[1]
    order = samplers[0].global_order(0)
    assert set(seen[0] | seen[1]) == set(order[: 4 * bs * world * accum].tolist())
    # one update = accum global batches = the same clips as 1 process with batch bs * world * accum
    single = list(DistributedBatchSampler(n, bs * world * accum, seed=7))
    for u in range(4):
        ranks = set(indices(per_rank[0][u * accum : (u + 1) * accum])) | set(indices(per_rank[1][u * accum : (u + 1) * accum]))
        assert ranks == set(i for i, _ in single[u])


def test_seeds_follow_global_position_not_rank():
    one = list(DistributedBatchSampler(24, 4, seed=3))
    two = [list(DistributedBatchSampler(24, 2, num_replicas=2, rank=r, seed=3)) for r in range(2)]
    assert sorted(p for b in one for p in b) == sorted(p for r in two for b in r for p in b)


def test_epochs_are_deterministic_and_differ():
    s = DistributedBatchSampler(30, 5, seed=1)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0
    assert indices(e0) != indices(e1)
    assert sorted(indices(e0)) == list(range(30))
    assert DistributedBatchSampler(30, 5, seed=2).global_order(0).tolist() != s.global_order(0).tolist()


def test_resume_mid_epoch():
    s = DistributedBatchSampler(40, 4, num_replicas=2, rank=1, seed=5)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start=2)
    assert list(s) == full[2:]
    assert len(s) == len(full) - 2
    with pytest.raises(AssertionError):
        s.set_epoch(3, start=len(full) + 1)


def test_validation_mode_sees_every_clip_once():
    n, bs, world = 11, 2, 3
    got = [indices(DistributedBatchSampler(n, bs, num_replicas=world, rank=r, shuffle=False, drop_last=False)) for r in range(world)]
    flat = [i for g in got for i in g]
    assert sorted(flat) == list(range(n)) and len(flat) == n


def test_too_small_for_one_update():
    with pytest.raises(ValueError, match=r"one update needs 16 clips \(data.batch_size, the global batch\), but an epoch has only 10"):
        DistributedBatchSampler(10, 4, num_replicas=2, accum_grad=2)


@pytest.mark.parametrize("global_batch, world, cap, micro, accum", [
    (48, 1, 12, 12, 4), (48, 4, 12, 12, 1), (48, 8, 12, 6, 1),  # EAT pre-training (12 per GPU, 4 GPUs)
    (560, 1, 70, 70, 8), (560, 8, 70, 70, 1), (560, 4, 70, 70, 2),  # BEATs SSL (70 per GPU, 8 GPUs)
    (32, 1, None, 32, 1), (32, 2, None, 16, 1),
    (12, 1, 5, 4, 3),  # the fewest passes within the cap that split the share exactly
    (7, 1, 2, 1, 7),
])
def test_split_global_batch(global_batch, world, cap, micro, accum):
    split = split_global_batch(global_batch, world, cap)
    assert (split.micro, split.accum) == (micro, accum)
    assert split.micro * split.accum * world == global_batch and split.micro <= (cap or global_batch)


def test_a_global_batch_that_does_not_split_is_named():
    with pytest.raises(ValueError, match="data.batch_size 10 .* cannot be split over 3 processes"):
        split_global_batch(10, 3, None)


def test_label_balanced_weights():
    labels = [[0], [0], [0], [1], [0, 1], []]
    w = label_balanced_weights(labels, 3)
    # counts: class 0 -> 4, class 1 -> 2
    assert w.tolist() == pytest.approx([0.25, 0.25, 0.25, 0.5, 0.75, 0.0])


def test_weighted_sampler_balances_label_frequencies():
    # class 0 is 9x as frequent as class 1; balanced sampling draws both about equally often
    labels = [[0]] * 90 + [[1]] * 10
    w = label_balanced_weights(labels, 2)
    s = DistributedBatchSampler(100, 10, seed=0, weights=w, samples_per_epoch=4000)
    assert s.updates_per_epoch == 400
    drawn = np.array(indices(list(s)))
    frac_rare = np.mean(drawn >= 90)
    assert 0.45 < frac_rare < 0.55
    assert len(set(drawn[drawn < 90].tolist())) == 90  # with replacement, but every frequent clip appears


def test_weighted_draws_without_replacement_follow_torch_multinomial():
    # 10 clips weighted 1..10, 3 drawn per epoch without replacement: no clip twice in an epoch, and
    # which clips are drawn, and which first, as often as torch.multinomial(w, 3, replacement=False)
    import torch

    w = np.arange(1.0, 11.0)
    s = DistributedBatchSampler(10, 3, seed=0, weights=w, samples_per_epoch=3, replacement=False)
    runs = 3000
    orders = np.stack([s.global_order(e) for e in range(runs)])  # (runs, 3)
    assert all(len(set(o)) == 3 for o in orders)
    assert (s.global_order(7) == orders[7]).all(), "an epoch's draw is reproducible (resume)"
    g = torch.Generator().manual_seed(0)
    ref = torch.stack([torch.multinomial(torch.from_numpy(w), 3, replacement=False, generator=g) for _ in range(runs)]).numpy()
    inclusion = np.bincount(orders.ravel(), minlength=10) / runs
    np.testing.assert_allclose(inclusion, np.bincount(ref.ravel(), minlength=10) / runs, atol=0.05)
    np.testing.assert_allclose(np.bincount(orders[:, 0], minlength=10) / runs, w / w.sum(), atol=0.03)
    assert np.bincount(orders[:, 0], minlength=10)[0] < np.bincount(orders[:, 0], minlength=10)[9]

    with pytest.raises(ValueError, match="cannot draw 4 different clips per epoch without replacement: only 3"):
        DistributedBatchSampler(5, 2, weights=np.array([1.0, 0, 2.0, 0, 1.0]), samples_per_epoch=4, replacement=False)


def test_length_aware_batches_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 1000, size=400)
    bucketed = DistributedBatchSampler(400, 8, seed=0, lengths=lengths)
    plain = DistributedBatchSampler(400, 8, seed=0)

    def padding(s):
        return sum(max(lengths[i] for i, _ in b) * len(b) - sum(lengths[i] for i, _ in b) for b in s)

    assert padding(bucketed) < 0.2 * padding(plain)
    assert sorted(indices(bucketed)) == list(range(400))
    firsts = [b[0][0] for b in bucketed]
    assert firsts != sorted(firsts, key=lambda i: lengths[i]), "batches are shuffled, not in length order"
