"""Each model's fbank front end, through ``torchaudio.compliance.kaldi.fbank``.

Both models use 16 kHz mono audio, 128 mel bins, 25 ms windows with a 10 ms shift, but the two
official front ends differ in waveform scale and window options:

* BEATs (``BEATs.preprocess`` of the official code): waveform x 2^15, the library's defaults otherwise
  (povey window, preemphasis 0.97, energy floor, snip_edges), dither 0.
* EAT (``feature_extract`` of the official dataset code): waveform as read in [-1, 1] with the clip
  mean removed, ``htk_compat=True, use_energy=False, window_type='hanning', dither=0.0``.

We store the raw log-mel fbank; the model's normalisation, ``(x - mean) / (2 * std)``, is applied in
the data path (see :func:`normalize`) so that the statistics can be the official constants or the
corpus's own. The corpus's own come from :class:`StatsAccumulator` (``stats.json`` of a feature dump,
written by ``audiossl.bin.compute_stats`` and read with :func:`read_stats`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
MIN_SAMPLES = 400  # one 25 ms window at 16 kHz: shorter clips give no frame at all


@dataclass(frozen=True)
class FeatureNorm:
    """Mean/std of a model's log-mel input; features are normalised as (x - mean) / (2 * std)."""

    mean: float
    std: float


# Official normalisation constants (design notes, section 2).
BEATS_NORM = FeatureNorm(mean=15.41663, std=6.55582)  # BEATs.py, preprocess()
EAT_NORM = {  # EAT config/*.yaml, dataset norm_mean / norm_std
    "audioset": FeatureNorm(mean=-4.268, std=4.569),
    "esc50": FeatureNorm(mean=-6.627, std=5.359),
    "spc2": FeatureNorm(mean=-6.846, std=5.565),
}

FBANK_KINDS = ("beats", "eat")


def compute_fbank(waveform: torch.Tensor, kind: str) -> torch.Tensor:
    """Log-mel fbank of one 16 kHz mono clip, as the official ``kind`` front end computes it.

    Args:
        waveform: (num_samples,) float samples in [-1, 1] at 16 kHz.
        kind: "beats" or "eat".

    Returns:
        (num_frames, 128) float32 log-mel features, not normalised; num_frames = 1 + (S - 400) // 160.

    Raises:
        ValueError: the clip is shorter than one window (MIN_SAMPLES).
    """
    assert kind in FBANK_KINDS, f"fbank kind must be one of {FBANK_KINDS}, got {kind!r}"
    assert waveform.dim() == 1, f"expected a mono waveform (num_samples,), got shape {tuple(waveform.shape)}"
    if waveform.numel() < MIN_SAMPLES:
        raise ValueError(f"{waveform.numel()} samples are fewer than one 25 ms window ({MIN_SAMPLES}): no frame")
    wav = waveform.to(torch.float32).unsqueeze(0)  # (1, S)
    if kind == "beats":
        return torchaudio.compliance.kaldi.fbank(
            wav * 2**15,
            num_mel_bins=NUM_MEL_BINS,
            sample_frequency=SAMPLE_RATE,
            frame_length=25,
            frame_shift=10,
            dither=0.0,
        )
    wav = wav - wav.mean()
    return torchaudio.compliance.kaldi.fbank(
        wav,
        htk_compat=True,
        sample_frequency=SAMPLE_RATE,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=NUM_MEL_BINS,
        dither=0.0,
        frame_shift=10,
    )


def normalize(feats: torch.Tensor, norm: FeatureNorm) -> torch.Tensor:
    """(x - mean) / (2 * std), the normalisation both official models use."""
    return (feats - norm.mean) / (2 * norm.std)


SILENCE_TOLERANCE = 1e-4  # log-mel units: a frame this flat across all bins is digital silence


def digital_silence_frames(feats: np.ndarray | torch.Tensor, tolerance: float = SILENCE_TOLERANCE) -> np.ndarray:
    """(T, F) raw log-mel -> (T,) bool, True on frames of digital silence.

    The rule: a frame is silence when it is flat, every bin within ``tolerance`` of the others.
    Kaldi's fbank removes each frame's DC offset, so a frame of exactly-zero (or constant) samples has
    zero power in every mel bin, floored to ``log(FLT_EPSILON)`` = -15.9424 in every bin, in both
    front ends (ESC-50's clips padded to 5 s with zero samples show up as such frames; a frame that
    overlaps real audio by even a few samples is not flat). Log-mel zero padding (0.0 in every bin)
    is flat too. Real sound never gives a spectrum flat to 1e-4 across 128 bins.
    """
    x = np.asarray(feats)
    assert x.ndim == 2, f"expected (T, F) features, got {x.shape}"
    return (x.max(axis=1) - x.min(axis=1)) <= tolerance


# --------------------------------------------------------------------------------------------
# Corpus statistics (stats.json of a feature dump)
# --------------------------------------------------------------------------------------------
@dataclass
class FbankStats:
    """Mean/std of a feature dump over all frames: global (all frames and bins) and per bin.

    Written as ``stats.json``: {"mean", "std", "num_frames", "mean_per_bin", "std_per_bin",
    "num_silent_frames"} (``num_frames`` counts the frames used, digital silence excluded); the
    standard deviations are population ones (ddof=0).
    """

    mean: float
    std: float
    num_frames: int
    mean_per_bin: list[float]
    std_per_bin: list[float]
    num_silent_frames: int = 0  # digital-silence frames left out of the statistics

    @property
    def norm(self) -> FeatureNorm:
        """The global mean/std as a :class:`FeatureNorm` for :func:`normalize`."""
        return FeatureNorm(mean=self.mean, std=self.std)

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "std": self.std,
            "num_frames": self.num_frames,
            "mean_per_bin": list(self.mean_per_bin),
            "std_per_bin": list(self.std_per_bin),
            "num_silent_frames": self.num_silent_frames,
        }


class StatsAccumulator:
    """Streams (T, F) feature matrices into per-bin count/mean/M2 in float64.

    Each matrix's own mean and squared deviations are merged with Chan et al.'s pairwise update, so
    the result does not suffer the cancellation of sum(x^2) - n * mean^2 over billions of frames.
    With ``skip_silence`` (the default) frames of digital silence (:func:`digital_silence_frames`)
    are counted in ``num_silent_frames`` but left out of the statistics: a corpus whose clips are
    zero-padded (ESC-50: about a third of the clips end in silence) would otherwise get a mean pulled
    towards the log floor and a std inflated by it, so that real sound is squeezed after normalising.
    """

    def __init__(self, skip_silence: bool = True) -> None:
        self.skip_silence = skip_silence
        self.count = 0
        self.num_silent = 0
        self.mean: np.ndarray | None = None  # (F,)
        self.m2: np.ndarray | None = None  # (F,) sum of squared deviations from the mean

    def add(self, feats: np.ndarray | torch.Tensor) -> None:
        x = np.asarray(feats, dtype=np.float64)
        assert x.ndim == 2, f"expected (num_frames, num_bins) features, got shape {x.shape}"
        if self.skip_silence and x.shape[0] > 0:
            silent = digital_silence_frames(x)
            self.num_silent += int(silent.sum())
            x = x[~silent]
        n = x.shape[0]
        if n == 0:
            return
        mean = x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        assert x.shape[1] == self.mean.shape[0], f"expected {self.mean.shape[0]} bins, got {x.shape[1]}"
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> FbankStats:
        assert self.mean is not None and self.m2 is not None and self.count > 0, "no frames were accumulated"
        num_bins = self.mean.shape[0]
        mean = float(self.mean.mean())
        # Global M2 = sum over bins of (per-bin M2 + count * (bin mean - global mean)^2).
        m2 = float(self.m2.sum() + self.count * ((self.mean - mean) ** 2).sum())
        return FbankStats(
            mean=mean,
            std=float(np.sqrt(m2 / (self.count * num_bins))),
            num_frames=int(self.count),
            mean_per_bin=[float(v) for v in self.mean],
            std_per_bin=[float(v) for v in np.sqrt(self.m2 / self.count)],
            num_silent_frames=int(self.num_silent),
        )


def write_stats(stats: FbankStats, path: str | os.PathLike) -> None:
    """Write ``stats.json`` atomically (temp file + rename)."""
    from audiossl.data.datadir import atomic_write_text

    atomic_write_text(path, json.dumps(stats.to_dict(), indent=1) + "\n")


def read_stats(path: str | os.PathLike) -> FbankStats:
    """Read a ``stats.json`` written by ``audiossl.bin.compute_stats``."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such stats file; run the feature extraction stage first") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    fields = ("mean", "std", "num_frames", "mean_per_bin", "std_per_bin")
    missing = [k for k in fields if k not in d]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; recompute it with audiossl.bin.compute_stats")
    return FbankStats(**{k: d[k] for k in fields}, num_silent_frames=int(d.get("num_silent_frames", 0)))
