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


# --------------------------------------------------------------------------------------------
# Reading shards front to back
# --------------------------------------------------------------------------------------------
from audiossl.data.sampler import ShardedBatchSampler  # noqa: E402

SHARDS = [list(range(0, 40)), list(range(40, 75)), list(range(75, 120)), list(range(120, 160))]  # uneven
EVEN = [list(range(k, k + 40)) for k in range(0, 160, 40)]


def _batches(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return [[i for i, _ in b] for b in sampler]


@pytest.mark.parametrize("world, workers", [(1, 1), (2, 2), (1, 4)])
def test_each_worker_reads_its_own_shards_in_file_order(world, workers):
    """With a buffer of one clip, a worker's batches are its shards' clips in file order, and the
    shards are dealt out so that no clip goes to two readers."""
    seen = []
    for rank in range(world):
        s = ShardedBatchSampler(EVEN, 5, num_replicas=world, rank=rank, seed=3, num_workers=workers, buffer=1)
        batches = _batches(s, 0)
        assert len(batches) == s.batches_per_epoch == workers * s.batches_per_reader
        for w in range(workers):
            mine = [i for b in batches[w::workers] for i in b]  # batch j goes to worker j mod workers
            shard_of = {i: k for k, sh in enumerate(EVEN) for i in sh}
            runs = [mine[0]] + [b for a, b in zip(mine, mine[1:]) if shard_of[a] != shard_of[b]]
            assert len({shard_of[i] for i in runs}) == len(runs), "a shard is read in one run"
            assert all(b == a + 1 for a, b in zip(mine, mine[1:]) if shard_of[a] == shard_of[b]), "file order"
            seen += mine
    assert len(seen) == len(set(seen)), "no clip twice in an epoch"


def test_a_reader_with_fewer_clips_starts_over_on_its_own_shards():
    """Uneven shards: every reader still gives the same number of batches; the short one repeats its
    own clips (from the start, in file order), the long one leaves its last ones."""
    readers = [ShardedBatchSampler(SHARDS, 5, num_replicas=4, rank=r, seed=3, num_workers=1, buffer=1) for r in range(4)]
    shard_of = {i: k for k, sh in enumerate(SHARDS) for i in sh}
    for s in readers:
        clips = [i for b in _batches(s, 0) for i in b]
        assert len(clips) == 40
        own = {shard_of[i] for i in clips}
        assert len(own) == 1, "one shard per reader here"
        shard = SHARDS[own.pop()]
        assert clips == [shard[n % len(shard)] for n in range(40)]


def test_the_buffer_shuffles_and_the_epochs_differ():
    s = ShardedBatchSampler(SHARDS, 4, seed=0, num_workers=1, buffer=20)
    a, b = _batches(s, 0), _batches(s, 1)
    flat = [i for x in a for i in x]
    assert flat != sorted(flat) and sorted(flat) == sorted(set(flat))
    assert a != b and _batches(s, 0) == a, "deterministic per epoch"
    # the buffer holds 20 clips: none comes out before it was read, 20 places before its turn in the
    # stream (the order of a one-clip buffer: the shards in file order)
    stream = [i for x in _batches(ShardedBatchSampler(SHARDS, 4, seed=0, num_workers=1, buffer=1), 0) for i in x]
    assert sorted(stream) == sorted(flat)
    out_pos = {c: n for n, c in enumerate(flat)}
    assert all(out_pos[c] >= n - 20 for n, c in enumerate(stream))
    assert sum(out_pos[c] != n for n, c in enumerate(stream)) > len(flat) // 2


def test_resume_mid_epoch_gives_the_rest_of_the_same_epoch():
    s = ShardedBatchSampler(SHARDS, 4, num_replicas=2, rank=1, seed=5, num_workers=2, buffer=8, accum_grad=2)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, 6)
    assert list(s) == full[6:] and len(full) % 2 == 0 and s.updates_per_epoch * 2 == len(full)


def test_weighted_draws_skip_unweighted_clips_and_keep_file_order():
    weights = np.zeros(160)
    weights[::3] = 1.0
    s = ShardedBatchSampler(SHARDS, 4, seed=1, num_workers=1, buffer=1, weights=weights, samples_per_epoch=40,
                            replacement=False)
    flat = [i for b in _batches(s, 0) for i in b]
    assert flat and all(i % 3 == 0 for i in flat) and len(set(flat)) == len(flat)


def test_too_small_an_epoch_for_the_readers_is_refused():
    with pytest.raises(ValueError, match="lower data.batch_size or data.num_workers"):
        ShardedBatchSampler([[0, 1, 2]], 4, num_workers=2)
