"""Batched inference of a fine-tuned model.pt over a feature dump, with sliding windows.

A clip is scored the way the model was trained to see it:

* ``window_frames`` W set (default: the training ``data.target_frames``): a clip of T <= W frames is
  zero-padded to W in raw log-mel, before normalisation, exactly as in training; a longer clip is cut
  into the windows of ``audiossl.data.windows`` (0, hop, 2 hop, ... and one ending at the last frame;
  windows of digital silence left out: the model never learnt a class from silence, and training
  crops avoid it, ``data.crop: active``), and the window scores are averaged (``reduce: mean``) or
  max-pooled (``reduce: max``). Window scores are probabilities (sigmoid or softmax), so the result
  stays one. The trainer validates on the same windows (``data.valid_crop: windows``).
* ``window_frames`` 0 (or a model trained with ``target_frames: null``): whole clips, batched only
  with clips of the same length, so that no padding is added and a clip's scores are the ones it
  gets alone (padding changes a BEATs clip's probabilities by up to 3e-2: its convolutional
  positions and layer statistics see the padded frames).

Either way a clip's scores do not depend on what it is batched with.

Features are normalised with ``(x - mean) / (2 std)``: the constants given, else the training
config's ``data.norm_mean`` / ``data.norm_std``, else the ``stats.json`` of its ``data.train`` dir.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from audiossl.data.datadir import read_kv, read_labels
from audiossl.data.dump import Dump, read_stats_norm, stats_path
from audiossl.data.fbank import FeatureNorm
from audiossl.data.windows import active_windows, default_hop, window_starts

logger = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    """Scores of a dump dir.

    Attributes:
        utt_ids: N utterance ids in feats.scp order.
        scores: (N, C) float32 probabilities.
        targets: (N, C) float32 multi-hot in the model's label order, or None without utt2label.
        label_names: the model's C label tokens.
        display_names: their display names (labels.txt of the dump, else the tokens).
        num_windows: (N,) how many windows each clip was scored in.
    """

    utt_ids: list[str]
    scores: np.ndarray
    targets: np.ndarray | None
    label_names: list[str]
    display_names: list[str]
    num_windows: np.ndarray


def resolve_norm(
    config: dict[str, Any], norm_mean: float | None = None, norm_std: float | None = None, where: str = "model.pt"
) -> FeatureNorm:
    """The feature normalisation to score with (see the module docstring for the order of sources)."""
    if norm_mean is not None and norm_std is not None:
        return FeatureNorm(norm_mean, norm_std)
    data = config.get("data") or {}
    if data.get("norm_mean") is not None and data.get("norm_std") is not None:
        return FeatureNorm(float(data["norm_mean"]), float(data["norm_std"]))
    train = data.get("train")  # a path relative to the recipe directory, every stage's working directory
    stats = stats_path(train, data.get("fbank_kind")) if train else None
    if stats is not None and stats.is_file():
        return read_stats_norm(train, data.get("fbank_kind"))
    raise ValueError(
        f"{where}: cannot tell how to normalise the features: its config has no data.norm_mean/norm_std"
        + (f" and {stats} does not exist" if stats is not None else "")
        + "; pass --norm-mean and --norm-std (e.g. EAT AudioSet -4.268 4.569, BEATs 15.41663 6.55582)"
    )


def read_targets(dump_dir: Path, utt_ids: list[str], label_names: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """(N, C) multi-hot targets in the model's label order, and display names; (None, tokens) without
    utt2label. A label unknown to the model is an error naming the file and label."""
    display = list(label_names)
    labels_txt = dump_dir / "labels.txt"
    if labels_txt.is_file():
        tokens, names = read_labels(labels_txt)
        by_token = dict(zip(tokens, names))
        display = [by_token.get(t, t) for t in label_names]
    utt2label_path = dump_dir / "utt2label"
    if not utt2label_path.is_file():
        return None, display
    utt2label = read_kv(utt2label_path, check_sorted=False)
    index = {t: i for i, t in enumerate(label_names)}
    targets = np.zeros((len(utt_ids), len(label_names)), dtype=np.float32)
    missing = 0
    for n, utt in enumerate(utt_ids):
        if utt not in utt2label:
            missing += 1
            continue
        for label in utt2label[utt].split():
            if label not in index:
                raise ValueError(
                    f"{utt2label_path}: utterance {utt!r} has label {label!r}, which the model does not know "
                    f"(its {len(label_names)} labels come from its training labels.txt)"
                )
            targets[n, index[label]] = 1.0
    if missing:
        logger.warning("%s: %d of %d utterances have no labels (they count as negatives)", utt2label_path, missing, len(utt_ids))
    return targets, display


def _normalised(raw: np.ndarray, norm: FeatureNorm) -> torch.Tensor:
    return (torch.from_numpy(np.array(raw, dtype=np.float32)) - norm.mean) / (2 * norm.std)  # a writable copy


@torch.no_grad()
def score_dump_dir(
    model: torch.nn.Module,
    dump_dir: str | Path,
    label_names: list[str],
    norm: FeatureNorm,
    window_frames: int | None,
    hop_frames: int | None = None,
    reduce: Literal["mean", "max"] = "mean",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    fbank_kind: str | None = None,
) -> ScoreResult:
    """Score every utterance of a dump (fbank, or raw through the ``fbank_kind`` front end) with
    ``model.predict`` (see :func:`score_features`) and read its targets."""
    dump_dir = Path(dump_dir)
    feats = Dump(dump_dir, fbank_kind)
    utt_ids = feats.utt_ids
    clips = _LazyClips(feats, utt_ids)
    num_frames = None if window_frames else feats.num_frames()
    scores, counts = score_features(model, clips, norm, window_frames, hop_frames, reduce, batch_size, device, num_frames)
    assert scores.shape[1] == len(label_names), f"model gave {scores.shape[1]} scores per clip, expected {len(label_names)}"
    targets, display = read_targets(dump_dir, utt_ids, label_names)
    logger.info("scored %d utterances of %s in %d windows", len(utt_ids), dump_dir, int(counts.sum()))
    return ScoreResult(utt_ids, scores, targets, list(label_names), display, counts)


class _LazyClips(Sequence):
    """The raw (T, F) features of a dump, read when asked for."""

    def __init__(self, reader, utt_ids: list[str]):
        self.reader, self.utt_ids = reader, utt_ids

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, n):
        return self.reader[self.utt_ids[n]]


@torch.no_grad()
def score_features(
    model: torch.nn.Module,
    clips: Sequence[np.ndarray],
    norm: FeatureNorm,
    window_frames: int | None,
    hop_frames: int | None = None,
    reduce: Literal["mean", "max"] = "mean",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    num_frames: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) float32 scores of N clips of raw (T, F) log-mel with ``model.predict``, and (N,) how
    many windows each was scored in.

    Args:
        model: a fine-tuned model (``predict(batch) -> (B, C)`` probabilities), in eval mode.
        window_frames: W (see the module docstring); None or 0: whole clips.
        hop_frames: hop between windows; default W // 2.
        reduce: how window scores combine per clip: "mean" or "max".
        num_frames: the clips' lengths, if known without reading them (whole clips only).
    """
    assert reduce in ("mean", "max"), f"reduce must be mean or max, got {reduce!r}"
    N = len(clips)
    if N == 0:
        raise ValueError("no clip to score")
    sums: torch.Tensor | None = None
    maxes: torch.Tensor | None = None
    counts = np.zeros(N, dtype=np.int64)
    model.eval()

    def run(items: list[tuple[int, torch.Tensor, int]], L: int) -> None:
        """One forward pass over items (clip index, (l, F) normalised window, real frames), each
        padded to L frames."""
        nonlocal sums, maxes
        F_ = items[0][1].shape[1]
        pad_value = -norm.mean / (2 * norm.std)  # a zero of raw log-mel, normalised
        batch_feats = torch.full((len(items), L, F_), pad_value, dtype=torch.float32)
        mask = torch.ones(len(items), L, dtype=torch.bool)
        for b, (_, x, real) in enumerate(items):
            batch_feats[b, : x.shape[0]] = x
            mask[b, :real] = False
        scores = model.predict({"feats": batch_feats.to(device), "padding_mask": mask.to(device)})
        scores = scores.double().cpu()  # (B, C)
        assert scores.dim() == 2 and scores.shape[0] == len(items), f"model gave scores {tuple(scores.shape)} for {len(items)} inputs"
        if sums is None:
            sums = torch.zeros(N, scores.shape[1], dtype=torch.float64)
            maxes = torch.full((N, scores.shape[1]), -math.inf, dtype=torch.float64)
        for b, (n, _, _) in enumerate(items):
            sums[n] += scores[b]
            maxes[n] = torch.maximum(maxes[n], scores[b])
            counts[n] += 1

    pending: list[tuple[int, torch.Tensor, int]] = []
    windowed = bool(window_frames)
    hop = hop_frames or default_hop(window_frames or 0)
    if windowed:
        for n in range(N):
            raw = clips[n]
            x = _normalised(raw, norm)  # (T, F)
            T = x.shape[0]
            starts = window_starts(T, window_frames, hop)
            for s, keep in zip(starts, active_windows(raw, starts, window_frames)):
                if not keep:
                    continue
                win = x[s : s + window_frames]
                pending.append((n, win, win.shape[0]))
                if len(pending) == batch_size:
                    run(pending, window_frames)  # short clips padded to the full window, as in training
                    pending = []
        if pending:
            run(pending, window_frames)
    else:
        # Whole clips, each batch of one length: nothing padded (see the module docstring).
        lengths = num_frames if num_frames is not None else [clips[n].shape[0] for n in range(N)]
        by_length: dict[int, list[int]] = {}
        for n, t in enumerate(lengths):
            by_length.setdefault(int(t), []).append(n)
        for t in sorted(by_length):
            idx = by_length[t]
            for i in range(0, len(idx), batch_size):
                run([(n, _normalised(clips[n], norm), t) for n in idx[i : i + batch_size]], t)
    combined = sums / torch.from_numpy(np.maximum(counts, 1))[:, None] if reduce == "mean" else maxes
    return combined.float().numpy(), counts
