"""Batch sampling: a deterministic, resumable, per-rank stream of mini-batches.

Each epoch has one *global order* of clip indices, drawn from a generator seeded with
``seed + epoch`` -- a permutation, or, with label-balanced weights, ``samples_per_epoch`` draws with
replacement. The global order is cut into *global batches* of ``batch_size x num_replicas`` clips, and
rank r takes slice ``[r * batch_size, (r + 1) * batch_size)`` of each. So one optimiser update
(``accum_grad`` consecutive global batches) sees the same clips whatever the number of processes,
as long as ``batch_size x num_replicas x accum_grad`` is unchanged: :func:`split_global_batch` is
how the trainer derives both from a config's ``data.batch_size`` (the clips of one update). Each training epoch keeps only
whole updates (the remainder of the order is dropped) so that epochs and updates line up.

The sampler yields lists of ``(index, seed)``: the seed, a hash of (seed, epoch, position in the
global order), picks the clip's random crop, so resuming mid-epoch (``set_epoch(epoch, start)``)
reproduces the run exactly.

Length-aware batching (``lengths`` given): the global order is cut into windows of
``bucket_batches`` global batches; each window is sorted by length, cut into global batches, and those
batches are shuffled, so a batch padded to its longest clip wastes little.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def label_balanced_weights(labels: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Per-clip sampling weights for multi-label data (the AudioSet recipes' balanced sampling):
    w(clip) = sum over its labels of 1 / count(label), count over the whole set.

    Clips without labels get weight 0 (never drawn).
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for labs in labels:
        for c in labs:
            counts[c] += 1
    inv = np.zeros(num_classes, dtype=np.float64)
    inv[counts > 0] = 1.0 / counts[counts > 0]
    weights = np.array([inv[list(labs)].sum() if len(labs) else 0.0 for labs in labels], dtype=np.float64)
    if (weights == 0).any():
        logger.warning("%d clips have no labels and will never be drawn by the weighted sampler", int((weights == 0).sum()))
    return weights


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of each element."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def sample_seeds(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """The crop seed of each position of an epoch's global order (63-bit non-negative ints)."""
    with np.errstate(over="ignore"):
        base = _mix64(np.array([seed], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(epoch))
        x = _mix64(base ^ (positions.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03) + np.uint64(1)))
    return (x >> np.uint64(1)).astype(np.int64)


def draw_epoch(rng: np.random.Generator, num_items: int, weights: np.ndarray | None, samples: int,
               replacement: bool) -> np.ndarray:
    """An epoch's clip indices: a permutation, or ``samples`` weighted draws with or without replacement."""
    if weights is None:
        return rng.permutation(num_items)
    if replacement:
        return rng.choice(num_items, size=samples, replace=True, p=weights / weights.sum())
    # weighted draws without replacement: the k largest of u^(1/w), u ~ U(0, 1), in decreasing order,
    # are k successive draws of the clips left (Efraimidis & Spirakis 2006)
    with np.errstate(divide="ignore"):
        keys = np.log(rng.random(num_items)) / weights  # -inf for weight 0
    top = np.argpartition(-keys, samples - 1)[:samples]
    return top[np.argsort(-keys[top], kind="stable")]


@dataclass(frozen=True)
class BatchSplit:
    """How one global batch is cut: ``world_size`` processes x ``micro`` clips x ``accum`` passes."""

    global_batch: int
    world_size: int
    micro: int  # clips of one forward pass of one process
    accum: int  # forward/backward passes per update

    def describe(self) -> str:
        return (f"global batch {self.global_batch} = {self.world_size} process{'es' if self.world_size > 1 else ''} "
                f"x {self.micro} clips x {self.accum} accumulation")


def updates_per_epoch(num_clips: int, clips_per_update: int) -> int:
    """Whole updates in an epoch of ``num_clips`` clips (the rest is dropped); a ValueError naming
    the numbers when not even one fits."""
    n = num_clips // clips_per_update
    if n == 0:
        raise ValueError(
            f"one update needs {clips_per_update} clips (data.batch_size, the global batch), "
            f"but an epoch has only {num_clips}; lower data.batch_size"
        )
    return n


def split_global_batch(global_batch: int, world_size: int, max_per_device: int | None) -> BatchSplit:
    """Cut ``global_batch`` clips per update over ``world_size`` processes, in forward passes of at
    most ``max_per_device`` clips (None: no cap) and as few of them as that allows.

    Raises ValueError naming the numbers when it cannot be cut exactly: the global batch must be a
    multiple of the world size, and a process's share must be a multiple of the pass count.
    """
    assert global_batch >= 1 and world_size >= 1, f"bad global batch {global_batch} or world size {world_size}"
    if global_batch % world_size:
        raise ValueError(
            f"data.batch_size {global_batch} (the global batch) cannot be split over {world_size} processes: "
            f"give a multiple of {world_size}, or another number of processes"
        )
    share = global_batch // world_size
    cap = share if max_per_device is None else max_per_device
    accum = -(-share // cap)  # the fewest passes that respect the cap ...
    while share % accum:  # ... that also split the share exactly
        accum += 1
    return BatchSplit(global_batch, world_size, share // accum, accum)


class DistributedBatchSampler(Sampler):
    """Mini-batches of ``(index, seed)`` for one rank (see the module docstring).

    Args:
        num_items: clips in the dataset.
        batch_size: clips per batch on this rank.
        num_replicas, rank: the data-parallel world size and this process's rank.
        seed: the epoch's generator is seeded with ``seed + epoch``.
        shuffle: False keeps dataset order (validation).
        weights: per-clip weights; given, each epoch draws ``samples_per_epoch`` clips in proportion
            to them, with replacement, or without (``replacement`` False: a clip at most once per
            epoch, drawn one after the other as ``torch.multinomial(weights, k, replacement=False)``
            does, by the exponential-key method of Efraimidis and Spirakis).
        samples_per_epoch: clips drawn per epoch (default: num_items).
        lengths: clip lengths; given (with shuffle), batches group clips of similar length.
        accum_grad: batches per update; a training epoch keeps whole updates only.
        drop_last: False (validation) keeps the last, partial global batch: every clip is seen once
            over all ranks; a rank may get fewer batches, or smaller ones.
        bucket_batches: global batches per length-sorting window.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
        samples_per_epoch: int | None = None,
        lengths: Sequence[int] | None = None,
        accum_grad: int = 1,
        replacement: bool = True,
        drop_last: bool = True,
        bucket_batches: int = 50,
    ):
        assert num_items > 0, "cannot sample from an empty dataset"
        assert batch_size >= 1 and accum_grad >= 1, f"bad batch_size {batch_size} or accum_grad {accum_grad}"
        assert 0 <= rank < num_replicas, f"rank {rank} outside world size {num_replicas}"
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            assert weights.shape == (num_items,), f"need one weight per clip: {weights.shape} vs {num_items}"
            assert weights.sum() > 0, "all sampling weights are zero"
        if lengths is not None:
            assert len(lengths) == num_items, f"need one length per clip: {len(lengths)} vs {num_items}"
        self.num_items = num_items
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.weights = weights
        self.samples_per_epoch = samples_per_epoch or num_items
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.accum_grad = accum_grad
        self.replacement = replacement
        if weights is not None and not replacement and int((weights > 0).sum()) < self.samples_per_epoch:
            raise ValueError(
                f"cannot draw {self.samples_per_epoch} different clips per epoch without replacement: only "
                f"{int((weights > 0).sum())} have a non-zero weight; lower data.samples_per_epoch"
            )
        self.drop_last = drop_last
        self.bucket_batches = bucket_batches
        self.epoch = 0
        self.start = 0  # batches of this epoch already consumed (mid-epoch resume)
        self.global_batch = batch_size * num_replicas
        n = self.samples_per_epoch if weights is not None else num_items
        if drop_last:
            self.updates_per_epoch = updates_per_epoch(n, self.global_batch * accum_grad)
            self.batches_per_epoch = self.updates_per_epoch * accum_grad
        else:
            self.updates_per_epoch = 0
            self.batches_per_epoch = -(-n // self.global_batch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its ``start``-th batch (on every rank alike)."""
        assert 0 <= start <= self.batches_per_epoch, f"start {start} outside the epoch's {self.batches_per_epoch} batches"
        self.epoch = epoch
        self.start = start

    def global_order(self, epoch: int) -> np.ndarray:
        """Clip indices of the whole epoch, for all ranks, in batch order."""
        if not self.shuffle:
            return np.arange(self.num_items)
        rng = np.random.default_rng(self.seed + epoch)
        order = draw_epoch(rng, self.num_items, self.weights, self.samples_per_epoch, self.replacement)
        if self.lengths is not None:
            order = self._length_buckets(order, rng)
        return order

    def _length_buckets(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gb = self.global_batch
        window = gb * self.bucket_batches
        out = []
        for w0 in range(0, len(order), window):
            chunk = order[w0 : w0 + window]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            n_full = len(chunk) // gb
            batches = [chunk[i * gb : (i + 1) * gb] for i in range(n_full)]
            rest = chunk[n_full * gb :]
            batches = [batches[i] for i in rng.permutation(n_full)]
            out.extend(batches)
            if len(rest):
                out.append(rest)
        return np.concatenate(out) if out else order

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.global_order(self.epoch)
        seeds = sample_seeds(self.seed, self.epoch, np.arange(len(order)))
        bs, gb = self.batch_size, self.global_batch
        for b in range(self.start, self.batches_per_epoch):
            lo = b * gb + self.rank * bs
            hi = min(lo + bs, (b + 1) * gb, len(order))
            if lo >= hi:
                continue
            yield [(int(order[p]), int(seeds[p])) for p in range(lo, hi)]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start


class ShardedBatchSampler(Sampler):
    """Mini-batches of ``(index, seed)`` for one rank that read the dump's shards front to back.

    For dumps on a network file system, where a read per clip at a random offset costs a request and
    a seek. Each epoch (a generator seeded with ``seed + epoch``): the shards are shuffled and dealt
    to the G = num_replicas x num_workers *readers* (rank r's loader worker w is reader r x
    num_workers + w and takes shards g, g + G, ... of the shuffled list); a reader goes through its
    shards' clips in file order (a clip drawn k times by the weighted draw, k times; a clip not drawn,
    never) and passes them through a shuffle buffer of ``buffer`` clips (each clip that comes in sends
    a random buffered one out); its stream is cut into batches. Rank r's batches alternate between its
    workers in the order the DataLoader hands batches to them (batch j to worker j mod num_workers),
    so every worker reads its own shards front to back (:class:`audiossl.data.dump.Dump` with
    ``sequential`` reads). Every reader gives the same number of batches, the epoch's clips over G
    whole batches (rounded down to whole updates): a reader with fewer clips starts over on its own,
    one with more leaves the rest.

    Unlike :class:`DistributedBatchSampler`, the order depends on the world size and the number of
    workers; a resume (``set_epoch(epoch, start)``) is exact with the same ones.

    Args:
        shards: clip indices of each shard, in file order (``Dump.shards()``).
        batch_size, num_replicas, rank, seed, weights, samples_per_epoch, replacement, accum_grad: as
            :class:`DistributedBatchSampler`.
        num_workers: loader worker processes per rank (0 counts as 1: the main process reads).
        buffer: clips in each reader's shuffle buffer.
    """

    def __init__(
        self,
        shards: Sequence[Sequence[int]],
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        num_workers: int = 1,
        buffer: int = 1000,
        weights: np.ndarray | None = None,
        samples_per_epoch: int | None = None,
        replacement: bool = True,
        accum_grad: int = 1,
    ):
        self.shards = [np.asarray(s, dtype=np.int64) for s in shards if len(s)]
        self.num_items = sum(len(s) for s in self.shards)
        assert self.num_items > 0, "cannot sample from an empty dataset"
        assert 0 <= rank < num_replicas, f"rank {rank} outside world size {num_replicas}"
        assert batch_size >= 1 and accum_grad >= 1 and buffer >= 1, "bad batch_size, accum_grad or buffer"
        self.batch_size, self.num_replicas, self.rank, self.seed = batch_size, num_replicas, rank, seed
        self.global_batch = batch_size * num_replicas  # clips of one batch over all ranks
        self.num_workers = max(1, num_workers)
        self.buffer = buffer
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.samples_per_epoch = samples_per_epoch or self.num_items
        self.replacement = replacement
        self.accum_grad = accum_grad
        readers = num_replicas * self.num_workers
        if len(self.shards) < readers:
            logger.warning("%d shards for %d readers (%d processes x %d workers): some read the same shards; "
                           "write more, smaller shards (make_raw.sh --shard-mb)", len(self.shards), readers,
                           num_replicas, self.num_workers)
        clips = self.samples_per_epoch if self.weights is not None else self.num_items
        per_reader = clips // (readers * batch_size)  # batches of each reader
        step = accum_grad // math.gcd(self.num_workers, accum_grad)  # whole updates per rank
        per_reader = per_reader // step * step
        if per_reader == 0:
            raise ValueError(
                f"an epoch of {clips} clips over {readers} readers ({num_replicas} processes x {self.num_workers} "
                f"workers) does not give each one update's batches of {batch_size} clips; lower data.batch_size "
                "or data.num_workers"
            )
        self.batches_per_reader = per_reader
        self.batches_per_epoch = per_reader * self.num_workers
        self.updates_per_epoch = self.batches_per_epoch // accum_grad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its ``start``-th batch (on every rank alike)."""
        assert 0 <= start <= self.batches_per_epoch, f"start {start} outside the epoch's {self.batches_per_epoch} batches"
        self.epoch, self.start = epoch, start

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(how often each clip is read, the order the shards are dealt in) of epoch ``epoch``."""
        rng = np.random.default_rng(self.seed + epoch)
        counts = np.ones(self.num_items, dtype=np.int64)
        if self.weights is not None:
            counts = np.bincount(draw_epoch(rng, len(self.weights), self.weights, self.samples_per_epoch,
                                            self.replacement), minlength=len(self.weights))
        return counts, rng.permutation(len(self.shards))

    def reader_stream(self, epoch: int, reader: int,
                      plan: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The clip indices reader ``reader`` hands out in epoch ``epoch``, in batch order (``plan``:
        the epoch's :meth:`epoch_plan`, when the caller has it)."""
        counts, order = plan if plan is not None else self.epoch_plan(epoch)
        readers = self.num_replicas * self.num_workers
        mine = [self.shards[k] for k in order[reader % len(self.shards)::readers]]  # more readers than shards: shared
        stream = np.concatenate([np.repeat(s, counts[s]) for s in mine])
        need = self.batches_per_reader * self.batch_size
        if len(stream) == 0:
            raise ValueError(f"reader {reader} got shards without a drawn clip in epoch {epoch}; write more shards")
        if len(stream) < need:  # too few: start over on the same shards
            stream = np.resize(stream, need)
        return self._shuffle(stream, np.random.default_rng([self.seed, epoch, reader]))[:need]

    def _shuffle(self, stream: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The order a shuffle buffer of ``self.buffer`` clips gives: fill it, then each clip that
        comes in sends a random buffered one out; at the end the rest goes out in random order."""
        out = np.empty_like(stream)
        buf = list(stream[: self.buffer])
        picks = rng.integers(0, self.buffer, size=max(len(stream) - self.buffer, 0))
        for n, clip in enumerate(stream[self.buffer:]):
            j = int(picks[n]) % len(buf)
            out[n], buf[j] = buf[j], clip
        tail = len(stream) - len(buf)
        out[tail:] = np.asarray(buf, dtype=stream.dtype)[rng.permutation(len(buf))]
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        W, bs = self.num_workers, self.batch_size
        readers = [self.rank * W + w for w in range(W)]
        plan = self.epoch_plan(self.epoch)  # one draw for all of this rank's readers
        streams = [self.reader_stream(self.epoch, g, plan) for g in readers]
        for b in range(self.start, self.batches_per_epoch):
            w, k = b % W, b // W  # batch k of worker w
            clips = streams[w][k * bs:(k + 1) * bs]
            positions = readers[w] * self.batches_per_reader * bs + k * bs + np.arange(bs)
            seeds = sample_seeds(self.seed, self.epoch, positions)
            yield [(int(c), int(s)) for c, s in zip(clips, seeds)]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start
