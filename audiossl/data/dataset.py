"""Training data: a dump (features or audio, + labels) -> cropped clips -> normalised batches.

A dump dir holds ``feats.scp`` (``dump/fbank_<kind>/<set>/``: raw log-mel (T, 128) float32) or
``wav.scp`` (``dump/raw/<set>/``: 16-kHz audio, turned into the log-mel of ``fbank_kind`` as it is
read; see :mod:`audiossl.data.dump`), and optionally ``utt2label``, ``labels.txt``, ``utt2dur`` and
the statistics. Per clip, :class:`FeatsDataset` reads the raw log-mel and crops it to
``target_frames`` (a random window for training; from a raw dump only the samples of that window
are decoded into features); :class:`FeatsWindows` gives every window that scoring cuts a clip into
(``audiossl.data.windows``), which validation scores and averages per clip; :class:`Collator`
zero-pads every clip of a batch to the same length IN LOG-MEL, BEFORE normalisation, and only then
applies ``(x - mean) / (2 * std)``. So a padded frame holds ``-mean / (2 * std)`` after
normalisation, as in the official EAT data path, and ``padding_mask`` marks it. The batch is the
dict documented in ``audiossl/models/abs_train_model.py``.

Random crops are reproducible: the sampler hands each clip a seed derived from (seed, epoch,
position in the epoch), so a resumed run and a run on more processes crop exactly the same windows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from audiossl.data.dump import Dump, read_stats_norm
from audiossl.data.fbank import BatchFbank, FeatureNorm, digital_silence_frames
from audiossl.data.windows import active_windows, default_hop, window_starts

logger = logging.getLogger(__name__)


@dataclass
class DataInfo:
    """What the data tells the task when it builds the model."""

    num_classes: int = 0  # from labels.txt; 0 for unlabelled pre-training data
    feat_dim: int = 128
    label_names: list[str] = field(default_factory=list)
    multi_label_clips: int = 0  # clips of the train set with more than one label (utt2label)
    source: str = ""  # where the data came from (the train dump dir), for messages

FRAME_SHIFT_S = 0.01  # 10 ms frames (both front ends)
CROPS = ("random", "active", "start")


# --------------------------------------------------------------------------------------------
# Small readers for the files of a dump dir
# --------------------------------------------------------------------------------------------
def _lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line.split()


def read_labels_txt(path: str | Path) -> list[str]:
    """Label tokens of ``labels.txt`` (``<index> <label> [display name ...]``) in index order."""
    path = Path(path)
    labels: list[str] = []
    for lineno, parts in _lines(path):
        if len(parts) < 2 or not parts[0].isdigit() or int(parts[0]) != len(labels):
            raise ValueError(
                f"{path}:{lineno}: expected '<index> <label> [display name]' with index {len(labels)}, got {' '.join(parts)!r}"
            )
        labels.append(parts[1])
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: duplicate label tokens")
    return labels


def read_utt2label(path: str | Path) -> dict[str, list[str]]:
    """``<utt> <label> [<label> ...]`` -> {utt: [label, ...]}."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for lineno, parts in _lines(path):
        if len(parts) < 2:
            raise ValueError(f"{path}:{lineno}: expected '<utt> <label> [<label> ...]', got {' '.join(parts)!r}")
        out[parts[0]] = parts[1:]
    return out


def read_utt2dur(path: str | Path) -> dict[str, float]:
    """``<utt> <seconds>`` -> {utt: seconds}."""
    path = Path(path)
    out: dict[str, float] = {}
    for lineno, parts in _lines(path):
        try:
            out[parts[0]] = float(parts[1])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{lineno}: expected '<utt> <seconds>', got {' '.join(parts)!r}") from None
    return out


def resolve_norm(
    train_dir: str | Path, norm_mean: float | None, norm_std: float | None, fbank_kind: str | None = None,
) -> FeatureNorm:
    """The configured constants, or the train dump's statistics (stats.json; stats_<kind>.json of a
    raw dump) when they are null."""
    if norm_mean is not None and norm_std is not None:
        return FeatureNorm(mean=norm_mean, std=norm_std)
    return read_stats_norm(train_dir, fbank_kind)


# --------------------------------------------------------------------------------------------
# Dataset and collation
# --------------------------------------------------------------------------------------------
class FeatsDataset(Dataset):
    """The clips of one dump dir, each cropped (not yet padded or normalised).

    Args:
        dump_dir: a dump dir (feats.scp or wav.scp, and optionally utt2label, labels.txt, utt2dur).
        target_frames: clips longer than this are cropped to it; None keeps whole clips.
        crop: "random" (a window chosen by the clip's seed), "active" (likewise, among the windows
            with the most frames that are not digital silence: a zero-padded clip, as a third of
            ESC-50's, is not cropped to its padding) or "start" (keep the first frames).
        label_names: the label tokens defining target indices (the training set's, so that a
            validation set maps labels the same way); None reads ``<dump_dir>/labels.txt``.
        fbank_kind: the front end of a raw audio dump ("beats" or "eat"; ignored for fbank dumps).
        waveform: a raw dump's items hold the crop's samples (``wave``, and ``wave_mean``, the whole
            clip's mean) instead of features, for :class:`FbankOnDevice` to make them on the device.
        sequential: read each ark (shard) front to back, keeping the records passed over for later
            (``Dump``'s sequential reads; with :class:`audiossl.data.sampler.ShardedBatchSampler`).

    Items are indexed by ``i`` or by ``(i, seed)`` (what the batch sampler yields); the seed picks
    the random crop. An item is {"utt_id": str, "feats": (T, F) float32 raw log-mel,
    "targets": (C,) float32 multi-hot or None}.
    """

    def __init__(
        self,
        dump_dir: str | Path,
        target_frames: int | None = None,
        crop: str = "random",
        label_names: Sequence[str] | None = None,
        fbank_kind: str | None = None,
        waveform: bool = False,
        sequential: bool = False,
    ):
        assert crop in CROPS, f"crop must be one of {CROPS}, got {crop!r}"
        self.dump_dir = Path(dump_dir)
        self.target_frames = target_frames
        self.crop = crop
        self.dump = Dump(self.dump_dir, fbank_kind, sequential=sequential)
        if waveform and self.dump.type != "raw":
            raise ValueError(f"{self.dump_dir}: features made on the device (data.frontend device) need a raw "
                             "audio dump (wav.scp, stage 2 with --feats-type raw); this is an fbank dump")
        self.waveform = waveform
        self.utt_ids: list[str] = self.dump.utt_ids
        # a raw dump decodes only the frames it crops: the clip lengths come from utt2num_samples
        self._frames = self.dump.num_frames() if self.dump.type == "raw" else None

        labels_txt = self.dump_dir / "labels.txt"
        if label_names is None and labels_txt.is_file():
            label_names = read_labels_txt(labels_txt)
        self.label_names: list[str] = list(label_names or [])
        self.labels: list[list[int]] | None = None
        utt2label_path = self.dump_dir / "utt2label"
        if utt2label_path.is_file():
            if not self.label_names:
                raise FileNotFoundError(f"{labels_txt}: {utt2label_path} needs a labels.txt listing the classes")
            self.labels = self._label_indices(utt2label_path)

        first = self._read(0)
        self.feat_dim = int(first.shape[1])

    def _label_indices(self, path: Path) -> list[list[int]]:
        index = {name: i for i, name in enumerate(self.label_names)}
        utt2label = read_utt2label(path)
        out = []
        for utt in self.utt_ids:
            if utt not in utt2label:
                raise ValueError(f"{path}: no labels for utterance {utt!r} of feats.scp; fix the dump dir (utils/fix_data_dir.sh)")
            unknown = [lab for lab in utt2label[utt] if lab not in index]
            if unknown:
                raise ValueError(f"{path}: utterance {utt!r} has label {unknown[0]!r} that is not in labels.txt ({len(index)} classes)")
            out.append(sorted({index[lab] for lab in utt2label[utt]}))
        return out

    def _read(self, i: int) -> np.ndarray:
        return self.dump.feats(self.utt_ids[i])

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def data_info(self) -> DataInfo:
        multi = sum(len(labs) > 1 for labs in self.labels) if self.labels is not None else 0
        return DataInfo(num_classes=self.num_classes, feat_dim=self.feat_dim, label_names=list(self.label_names),
                        multi_label_clips=multi, source=str(self.dump_dir))

    def lengths(self) -> list[int]:
        """Clip lengths in frames for length-aware batching: from utt2dur when present (approximate),
        else by reading every matrix."""
        path = self.dump_dir / "utt2dur"
        if path.is_file():
            durs = read_utt2dur(path)
            if all(u in durs for u in self.utt_ids):
                return [int(round(durs[u] / FRAME_SHIFT_S)) for u in self.utt_ids]
        return self._frames if self._frames is not None else self.dump.num_frames()

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        utt, W = self.utt_ids[i], self.target_frames
        T = self._frames[i] if self._frames is not None else None  # known without reading: raw dumps
        feats = None
        if T is None or self.crop == "active":  # read the clip's features (the active crop looks at them)
            feats = torch.from_numpy(np.array(self._read(i), dtype=np.float32, copy=True))  # (T, F)
            T = feats.shape[0]
        start, num = 0, None
        if W is not None and T > W:
            num = W
            if self.crop == "random":
                start = int(np.random.default_rng(seed).integers(0, T - W + 1))
            elif self.crop == "active":
                start = active_crop_start(feats.numpy(), W, np.random.default_rng(seed))
        item = {"utt_id": utt, "targets": self._targets(i)}
        if self.waveform:  # the crop's samples; the features are made on the device (FbankOnDevice)
            item["wave"], item["wave_mean"] = self.dump.samples(utt, start, num)
        elif feats is not None:
            item["feats"] = feats if num is None else feats[start:start + num]
        else:  # a raw dump: only the crop's samples are turned into features
            item["feats"] = torch.from_numpy(self.dump.feats(utt, start, num))
        return item

    def _targets(self, i: int) -> torch.Tensor | None:
        """(C,) multi-hot of clip i, or None without utt2label."""
        if self.labels is None:
            return None
        targets = torch.zeros(self.num_classes, dtype=torch.float32)
        targets[self.labels[i]] = 1.0
        return targets


class FeatsWindows(FeatsDataset):
    """Every window that scoring cuts the clips of one dump dir into (``audiossl.data.windows``):
    what validation feeds a model with fixed-length input, so that its per-clip metrics are the
    scored ones.

    Args:
        dump_dir, label_names, fbank_kind: as :class:`FeatsDataset`.
        target_frames: W, the window length.
        hop: frames between window starts; None: ``default_hop(W)``, scoring's.

    An item is that of :class:`FeatsDataset` (``feats`` the window, at most W frames) plus
    ``"clip"``: the clip's index in feats.scp order, and ``"keep"``: False for a window of digital
    silence in a clip that has other windows (scoring leaves it out; its forward pass is still made,
    to keep batches simple). Clip lengths come from ``utt2num_frames`` / ``utt2num_samples``
    (written by stage 2), else from reading every clip.
    """

    def __init__(
        self,
        dump_dir: str | Path,
        target_frames: int,
        hop: int | None = None,
        label_names: Sequence[str] | None = None,
        fbank_kind: str | None = None,
    ):
        assert target_frames and target_frames > 0, f"windows need target_frames > 0, got {target_frames!r}"
        super().__init__(dump_dir, target_frames=target_frames, crop="start", label_names=label_names,
                         fbank_kind=fbank_kind)
        self.hop = hop or default_hop(target_frames)
        assert self.hop > 0, f"hop must be positive, got {hop}"
        frames = self._frames if self._frames is not None else self.dump.num_frames()
        self.windows: list[tuple[int, int]] = [
            (i, start) for i, n in enumerate(frames) for start in window_starts(n, target_frames, self.hop)
        ]

    @property
    def num_clips(self) -> int:
        return len(self.utt_ids)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        j = key[0] if isinstance(key, tuple) else key
        i, start = self.windows[j]
        raw = self._read(i)  # (T, F)
        W = self.target_frames
        if raw.shape[0] > W:
            starts = window_starts(raw.shape[0], W, self.hop)
            if start not in starts:
                raise ValueError(f"{self.dump_dir}: utterance {self.utt_ids[i]!r} has {raw.shape[0]} frames, "
                                 "not the number utt2num_frames gives; re-run the feature stage for this set")
            keep = bool(active_windows(raw, starts, W)[starts.index(start)])
        else:
            keep = True
        feats = torch.from_numpy(np.array(raw[start : start + W], dtype=np.float32, copy=True))
        return {"utt_id": self.utt_ids[i], "feats": feats, "targets": self._targets(i), "clip": i, "keep": keep}


def active_crop_start(feats: np.ndarray, target_frames: int, rng: np.random.Generator) -> int:
    """A random start among the crops of ``target_frames`` frames of a (T, F) raw log-mel clip that
    hold the most frames of sound (not digital silence); any start when the clip is all silence."""
    sound = ~digital_silence_frames(feats)  # (T,)
    counts = np.convolve(sound.astype(np.int64), np.ones(target_frames, dtype=np.int64), mode="valid")  # (T - W + 1,)
    best = np.flatnonzero(counts == counts.max())
    return int(best[rng.integers(0, len(best))])


class Collator:
    """Items -> the batch dict: zero-pad in log-mel to ``target_frames`` (or the longest clip), then
    normalise ``(x - mean) / (2 * std)``; ``padding_mask`` is True on the padded frames."""

    def __init__(self, norm: FeatureNorm, target_frames: int | None = None):
        self.norm = norm
        self.target_frames = target_frames

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        assert items, "cannot collate an empty batch"
        if "wave" in items[0]:
            return self._waves(items)
        lengths = [it["feats"].shape[0] for it in items]
        T = self.target_frames if self.target_frames is not None else max(lengths)
        B, F = len(items), items[0]["feats"].shape[1]
        feats = torch.zeros(B, T, F, dtype=torch.float32)  # zero padding in log-mel
        padding_mask = torch.ones(B, T, dtype=torch.bool)
        for b, it in enumerate(items):
            n = min(lengths[b], T)
            feats[b, :n] = it["feats"][:n]
            padding_mask[b, :n] = False
        feats = (feats - self.norm.mean) / (2 * self.norm.std)
        batch: dict[str, Any] = {
            "feats": feats,
            "padding_mask": padding_mask,
            "utt_ids": [it["utt_id"] for it in items],
        }
        self._labels(items, batch)
        return batch

    def _waves(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Waveform items (``FeatsDataset(waveform=True)``): zero-padded samples, lengths and means,
        for :class:`FbankOnDevice`."""
        lengths = torch.tensor([it["wave"].numel() for it in items], dtype=torch.long)
        waves = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32)
        for b, it in enumerate(items):
            waves[b, : lengths[b]] = it["wave"]
        batch: dict[str, Any] = {
            "wave": waves, "wave_lengths": lengths,
            "wave_means": torch.stack([torch.as_tensor(it["wave_mean"], dtype=torch.float32) for it in items]),
            "utt_ids": [it["utt_id"] for it in items],
        }
        self._labels(items, batch)
        return batch

    @staticmethod
    def _labels(items: list[dict[str, Any]], batch: dict[str, Any]) -> None:
        if items[0]["targets"] is not None:
            batch["targets"] = torch.stack([it["targets"] for it in items])
        if "clip" in items[0]:  # windows of FeatsWindows: which clip, and whether scoring keeps it
            batch["clip"] = torch.tensor([it["clip"] for it in items], dtype=torch.long)
            batch["keep"] = torch.tensor([it["keep"] for it in items], dtype=torch.bool)


class FbankOnDevice(nn.Module):
    """A collated batch of waveforms (``Collator`` of ``FeatsDataset(waveform=True)``) -> the batch
    ``Collator`` makes of features: the ``kind`` front end batched on the batch's device
    (:class:`audiossl.data.fbank.BatchFbank`), zero-padded IN LOG-MEL to ``target_frames`` (or the
    longest clip), normalised, ``padding_mask`` True on the padded frames. Move it to the training
    device with the model."""

    def __init__(self, kind: str, norm: FeatureNorm, target_frames: int | None = None):
        super().__init__()
        self.fbank = BatchFbank(kind)
        self.kind, self.norm, self.target_frames = kind, norm, target_frames

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        waves, lengths, means = batch.pop("wave"), batch.pop("wave_lengths"), batch.pop("wave_means")
        feats, num_frames = self.fbank(waves, lengths, means if self.kind == "eat" else None)  # (B, T', F), zero tail
        T = self.target_frames if self.target_frames is not None else feats.shape[1]
        if feats.shape[1] < T:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, T - feats.shape[1]))
        feats = feats[:, :T]
        batch["padding_mask"] = torch.arange(T, device=feats.device) >= num_frames.unsqueeze(1)  # (B, T)
        batch["feats"] = (feats - self.norm.mean) / (2 * self.norm.std)
        return batch
