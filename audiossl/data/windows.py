"""Sliding windows over a clip: the windows a fixed-length model scores a clip in.

Scoring (``audiossl.score.inference``), the linear probes (``audiossl.score.probe``) and the
trainer's validation (``audiossl.data.dataset.FeatsWindows``) cut a clip the same way, so the
accuracy in ``train.log`` is the one the scoring stage reports:

* a clip of T <= W frames is one window (padded to W in raw log-mel by the collator);
* a longer clip gets windows starting at 0, hop, 2 hop, ... plus one ending at its last frame, so
  every frame is seen; the hop is W // 2 unless given (:func:`default_hop`);
* windows made only of digital silence (an ESC-50 clip's zero padding,
  ``audiossl.data.fbank.digital_silence_frames``) are left out when the clip has any other window.
"""
from __future__ import annotations

import numpy as np

from audiossl.data.fbank import digital_silence_frames


def default_hop(window: int) -> int:
    """The hop between windows when none is given: half a window (at least one frame)."""
    return max(window // 2, 1)


def window_starts(num_frames: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows covering a clip: 0, hop, 2 hop, ... and one ending at the last frame.

    A clip no longer than ``window`` has the single start 0 (it is padded to the window).
    """
    assert window > 0 and hop > 0, f"window and hop must be positive, got {window}, {hop}"
    if num_frames <= window:
        return [0]
    last = num_frames - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return starts


def active_windows(raw: np.ndarray, starts: list[int], window: int) -> np.ndarray:
    """(K,) bool: which windows of a (T, F) raw log-mel clip hold anything but digital silence;
    all of them when none does (a silent clip is still scored)."""
    silent = digital_silence_frames(raw)  # (T,)
    keep = np.array([not silent[s : s + window].all() for s in starts], dtype=bool)
    return keep if keep.any() else np.ones(len(starts), dtype=bool)
