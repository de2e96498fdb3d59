"""Training data: a feature dump (``feats.scp`` + labels) -> cropped clips -> normalised batches.

A dump dir (``dump/fbank_<kind>/<set>/``) holds ``feats.scp`` (kaldiio, raw log-mel (T, 128) float32),
and optionally ``utt2label``, ``labels.txt``, ``utt2dur`` and ``stats.json``. Per clip,
:class:`FeatsDataset` reads the raw log-mel and crops it to ``target_frames`` (a random window for
training); :class:`FeatsWindows` gives every window that scoring cuts a clip into
(``audiossl.data.windows``), which validation scores and averages per clip; :class:`Collator`
zero-pads every clip of a batch to the same length IN LOG-MEL, BEFORE normalisation, and only then
applies ``(x - mean) / (2 * std)``. So a padded frame holds ``-mean / (2 * std)`` after
normalisation, as in the official EAT data path, and ``padding_mask`` marks it. The batch is the
dict documented in ``audiossl/tasks/abs_task.py``.

Random crops are reproducible: the sampler hands each clip a seed derived from (seed, epoch,
position in the epoch), so a resumed run and a run on more processes crop exactly the same windows.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import kaldiio
import numpy as np
import torch
from torch.utils.data import Dataset

from audiossl.data.datadir import read_kv
from audiossl.data.fbank import FeatureNorm, digital_silence_frames
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


def read_num_frames(dump_dir: str | Path, utt_ids: Sequence[str], read: Callable[[int], np.ndarray]) -> list[int]:
    """Frames of each of ``utt_ids``: from ``<dump_dir>/utt2num_frames`` (written by the feature
    stage) when it lists them all, else ``read(i).shape[0]`` for the i-th of them."""
    path = Path(dump_dir) / "utt2num_frames"
    if path.is_file():
        kv = read_kv(path, check_sorted=False)
        if all(u in kv for u in utt_ids):
            return [int(kv[u]) for u in utt_ids]
    logger.warning("%s: no complete utt2num_frames; reading every clip to get its length", dump_dir)
    return [int(read(i).shape[0]) for i in range(len(utt_ids))]


def read_stats_norm(dump_dir: str | Path) -> FeatureNorm:
    """The global mean/std of ``<dump_dir>/stats.json`` as a FeatureNorm."""
    path = Path(dump_dir) / "stats.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no stats.json; compute it (python -m audiossl.bin.compute_stats) or set data.norm_mean and data.norm_std"
        )
    stats = json.loads(path.read_text())
    try:
        return FeatureNorm(mean=float(stats["mean"]), std=float(stats["std"]))
    except KeyError as e:
        raise ValueError(f"{path}: missing key {e.args[0]!r}") from None


def resolve_norm(train_dir: str | Path, norm_mean: float | None, norm_std: float | None) -> FeatureNorm:
    """The configured constants, or the train dir's stats.json when they are null."""
    if norm_mean is not None and norm_std is not None:
        return FeatureNorm(mean=norm_mean, std=norm_std)
    return read_stats_norm(train_dir)


# --------------------------------------------------------------------------------------------
# Dataset and collation
# --------------------------------------------------------------------------------------------
class FeatsDataset(Dataset):
    """The clips of one dump dir, each cropped (not yet padded or normalised).

    Args:
        dump_dir: directory with feats.scp (and optionally utt2label, labels.txt, utt2dur).
        target_frames: clips longer than this are cropped to it; None keeps whole clips.
        crop: "random" (a window chosen by the clip's seed), "active" (likewise, among the windows
            with the most frames that are not digital silence: a zero-padded clip, as a third of
            ESC-50's, is not cropped to its padding) or "start" (keep the first frames).
        label_names: the label tokens defining target indices (the training set's, so that a
            validation set maps labels the same way); None reads ``<dump_dir>/labels.txt``.

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
    ):
        assert crop in CROPS, f"crop must be one of {CROPS}, got {crop!r}"
        self.dump_dir = Path(dump_dir)
        self.target_frames = target_frames
        self.crop = crop
        scp = self.dump_dir / "feats.scp"
        if not scp.is_file():
            raise FileNotFoundError(f"{scp}: no feats.scp; run the feature stage (stage 2) for this set first")
        self.feats = read_kv(scp, check_sorted=False)  # utt -> "<ark>:<offset>"
        self.utt_ids: list[str] = list(self.feats)
        if not self.utt_ids:
            raise ValueError(f"{scp}: no utterances")

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
        utt = self.utt_ids[i]
        where = f"{self.dump_dir}/feats.scp: utterance {utt!r} ({self.feats[utt]})"
        try:
            mat = kaldiio.load_mat(self.feats[utt])
        except Exception as e:
            raise OSError(f"{where}: cannot read it: {e}") from e
        if mat.ndim != 2:
            raise ValueError(f"{where}: not a (frames, bins) matrix: shape {mat.shape}")
        bad = mat.size - int(np.isfinite(mat).sum())
        if bad:
            raise ValueError(f"{where}: {bad} of its {mat.size} feature values are NaN or infinite; "
                             "recompute this set's features (stage 2), which lists such utterances as bad")
        return mat

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
        logger.warning("%s: no complete utt2dur; reading every clip to get its length", self.dump_dir)
        return [int(self._read(i).shape[0]) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        feats = torch.from_numpy(np.array(self._read(i), dtype=np.float32, copy=True))  # (T, F)
        T = feats.shape[0]
        if self.target_frames is not None and T > self.target_frames:
            start = 0
            if self.crop == "random":
                rng = np.random.default_rng(seed)
                start = int(rng.integers(0, T - self.target_frames + 1))
            elif self.crop == "active":
                start = active_crop_start(feats.numpy(), self.target_frames, np.random.default_rng(seed))
            feats = feats[start : start + self.target_frames]
        return {"utt_id": self.utt_ids[i], "feats": feats, "targets": self._targets(i)}

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
        dump_dir, label_names: as :class:`FeatsDataset`.
        target_frames: W, the window length.
        hop: frames between window starts; None: ``default_hop(W)``, scoring's.

    An item is that of :class:`FeatsDataset` (``feats`` the window, at most W frames) plus
    ``"clip"``: the clip's index in feats.scp order, and ``"keep"``: False for a window of digital
    silence in a clip that has other windows (scoring leaves it out; its forward pass is still made,
    to keep batches simple). Clip lengths come from ``utt2num_frames`` (written by stage 2), else
    from reading every clip.
    """

    def __init__(
        self,
        dump_dir: str | Path,
        target_frames: int,
        hop: int | None = None,
        label_names: Sequence[str] | None = None,
    ):
        assert target_frames and target_frames > 0, f"windows need target_frames > 0, got {target_frames!r}"
        super().__init__(dump_dir, target_frames=target_frames, crop="start", label_names=label_names)
        self.hop = hop or default_hop(target_frames)
        assert self.hop > 0, f"hop must be positive, got {hop}"
        frames = read_num_frames(self.dump_dir, self.utt_ids, self._read)
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
        if items[0]["targets"] is not None:
            batch["targets"] = torch.stack([it["targets"] for it in items])
        if "clip" in items[0]:  # windows of FeatsWindows: which clip, and whether scoring keeps it
            batch["clip"] = torch.tensor([it["clip"] for it in items], dtype=torch.long)
            batch["keep"] = torch.tensor([it["keep"] for it in items], dtype=torch.bool)
        return batch
