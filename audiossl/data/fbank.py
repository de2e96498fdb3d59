"""Each model's fbank front end, through ``torchaudio.compliance.kaldi.fbank``.

Both models use 16 kHz mono audio, 128 mel bins, 25 ms windows with a 10 ms shift, but the two
official front ends differ in waveform scale and window options:

* BEATs (``BEATs.preprocess`` of the official code): waveform x 2^15, the library's defaults otherwise
  (povey window, preemphasis 0.97, energy floor, snip_edges), dither 0.
* EAT (``feature_extract`` of the official dataset code): waveform as read in [-1, 1] with the clip
  mean removed, ``htk_compat=True, use_energy=False, window_type='hanning', dither=0.0``.

We store the raw log-mel fbank; the model's normalisation, ``(x - mean) / (2 * std)``, is applied in
the data path (see :func:`normalize`) so that the statistics can be the official constants or the
corpus's own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128


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
        (num_frames, 128) float32 log-mel features, not normalised.
    """
    assert kind in FBANK_KINDS, f"fbank kind must be one of {FBANK_KINDS}, got {kind!r}"
    assert waveform.dim() == 1, f"expected a mono waveform (num_samples,), got shape {tuple(waveform.shape)}"
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
