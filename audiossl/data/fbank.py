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
from torch import nn

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

    This is the reference the feature dumps are made with. :class:`BatchFbank` gives the same frames
    (within 1e-4) on a padded batch, on any device, and on one CPU thread about three times faster,
    also on a single clip.
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


# --------------------------------------------------------------------------------------------
# Batched front end (training time: in loader workers, or on the GPU after collation)
# --------------------------------------------------------------------------------------------
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
FFT_SIZE = 512  # the frame zero-padded to the next power of two
PREEMPHASIS = 0.97
LOG_FLOOR = torch.finfo(torch.float32).eps  # Kaldi's floor on mel energies before the log
MEL_GROUP = 16  # mel bins per band of the blocked mel product (see BatchFbank.__init__)
CPU_BLOCK_FRAMES = 1024  # frames per block on the CPU (BatchFbank.forward)


def num_fbank_frames(lengths: torch.Tensor) -> torch.Tensor:
    """(B,) clip lengths in samples -> (B,) frame counts, 1 + (S - 400) // 160 (snip_edges), 0 below 400."""
    frames = 1 + torch.div(lengths - FRAME_LENGTH, FRAME_SHIFT, rounding_mode="floor")
    return torch.where(lengths >= FRAME_LENGTH, frames, torch.zeros_like(frames))


def _pack_blocks(counts: list[int], block_frames: int) -> list[list[tuple[int, int, int]]]:
    """Cut clips of ``counts`` frames into blocks of at most ``block_frames`` frames.

    Returns blocks of pieces (clip, first frame, end frame): a clip longer than a block is cut into
    pieces, consecutive pieces are packed into one block while they fit.
    """
    blocks: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    size = 0
    for b, count in enumerate(counts):
        for t0 in range(0, count, block_frames):
            t1 = min(t0 + block_frames, count)
            if current and size + t1 - t0 > block_frames:
                blocks.append(current)
                current, size = [], 0
            current.append((b, t0, t1))
            size += t1 - t0
    if current:
        blocks.append(current)
    return blocks


class BatchFbank(nn.Module):
    """:func:`compute_fbank` on a zero-padded batch of clips, on any device.

    Clip b's frames are those ``compute_fbank(waveforms[b, :lengths[b]], kind)`` gives, to float32
    rounding (within 1e-4 in log-mel units on the CPU, where the FFT input is the reference's bit for
    bit; on a GPU, cuFFT rounds differently and a bin far below its frame's energy may move by about
    1e-3, as much as the float32 reference differs from float64 arithmetic): the same Kaldi pipeline,
    written with batched torch ops.
    Per frame, in Kaldi's order: the 400 samples (snip_edges framing), their mean removed, pre-emphasis
    (x[j] - 0.97 * x[j-1], the first sample against itself), the window (BEATs: povey = hann^0.85,
    EAT: hanning), zero-padding to 512, the power spectrum (257 bins), the (257, 128) Kaldi mel
    matrix (20 Hz to Nyquist), the log floored at FLT_EPSILON. BEATs' x 2^15 is folded into its
    window (an exact power of two, so the result is the same as scaling the waveform); EAT's clip
    mean is taken over the clip's own samples, before framing.

    Each clip's features depend on its own samples only: no frame of clip b reads past lengths[b],
    and the frames of the padded tail (t >= num_frames[b]) are set to zero in the output (not to the
    log floor), so that they can be told from digital silence and masked by ``num_frames``.

    The window and mel matrix are non-persistent buffers: ``.to(device)`` moves them and checkpoints
    do not hold them. Computation is float32 whatever the input dtype.
    """

    def __init__(self, kind: str, blocked: bool | None = None) -> None:
        """``kind``: "beats" or "eat". ``blocked``: compute clip by clip in blocks of frames (the fast
        way on the CPU) rather than in one pass over the padded batch (the fast way on a GPU); None
        chooses by the device of the waveforms. Both give the same features."""
        super().__init__()
        assert kind in FBANK_KINDS, f"fbank kind must be one of {FBANK_KINDS}, got {kind!r}"
        self.kind = kind
        self.blocked = blocked
        # Built in float32 as Kaldi's front end builds it: the FFT input then matches compute_fbank's
        # bit for bit, which matters (float32 FFT rounding alone moves a quiet bin's log by 1e-3).
        hann = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32)
        window = hann.pow(0.85) * 2**15 if kind == "beats" else hann
        self.register_buffer("window", window, persistent=False)  # (400,)
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
            NUM_MEL_BINS, FFT_SIZE, float(SAMPLE_RATE), 20.0, 0.0, 100.0, -500.0, 1.0
        )  # (128, 256): Kaldi's defaults, low 20 Hz, high Nyquist, no VTLN warp
        mel = torch.cat([banks, banks.new_zeros(NUM_MEL_BINS, 1)], dim=1)  # (128, 257): no weight on Nyquist
        self.register_buffer("mel", mel.t().contiguous().to(torch.float32), persistent=False)  # (257, 128)
        # Each mel filter covers a few neighbouring FFT bins, so in blocked mode the (257, 128) product
        # is done in bands of MEL_GROUP filters, each against the FFT bins its filters cover (a quarter of
        # the multiply-adds of the dense product; the other terms are exact zeros).
        self.bands: list[tuple[int, int, int, int]] = []  # (first mel, end mel, first FFT bin, end FFT bin)
        nonzero = mel.t() != 0  # (257, 128)
        rows = torch.arange(nonzero.shape[0]).unsqueeze(1)
        for m0 in range(0, NUM_MEL_BINS, MEL_GROUP):
            cols = nonzero[:, m0:m0 + MEL_GROUP]
            used = rows.expand_as(cols)[cols]
            k0, k1 = (int(used.min()), int(used.max()) + 1) if used.numel() else (0, 1)
            self.bands.append((m0, min(m0 + MEL_GROUP, NUM_MEL_BINS), k0, k1))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, blocked={self.blocked}"

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, means: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel fbank of a padded batch.

        Args:
            waveforms: (B, S) samples in [-1, 1] at 16 kHz, clip b in waveforms[b, :lengths[b]]; what
                lies past a clip's length is never read (any value, NaN included, is fine).
            lengths: (B,) long, each in [MIN_SAMPLES, S].
            means: EAT only: (B,) the mean to remove from each clip, instead of its own. A crop of a
                longer clip passes the whole clip's mean (``waveform.mean()``, as compute_fbank takes
                it), so that its frames are the whole clip's frames: the per-frame DC removal makes
                any constant vanish, but not its float32 rounding, which moves quiet bins by ~1e-3.

        Returns:
            feats: (B, T_max, 128) float32, frames t >= num_frames[b] zero; T_max = num_frames.max().
            num_frames: (B,) long on the waveforms' device, 1 + (lengths - 400) // 160.
        """
        assert waveforms.dim() == 2, f"expected (B, S) waveforms, got shape {tuple(waveforms.shape)}"
        assert waveforms.is_floating_point(), f"expected float samples, got {waveforms.dtype}"
        batch, num_samples = waveforms.shape
        lengths = torch.as_tensor(lengths, device=waveforms.device)
        assert lengths.shape == (batch,), f"expected ({batch},) lengths, got shape {tuple(lengths.shape)}"
        assert not lengths.is_floating_point(), f"lengths must be integers, got {lengths.dtype}"
        assert batch > 0, "empty batch"
        sizes = lengths.tolist()  # the one device sync: the blocks and T_max depend on the lengths
        assert min(sizes) >= MIN_SAMPLES, f"a clip of {min(sizes)} samples is shorter than one window ({MIN_SAMPLES})"
        assert max(sizes) <= num_samples, f"a length of {max(sizes)} exceeds the {num_samples} samples of the batch"
        num_frames = num_fbank_frames(lengths.long())
        counts = [1 + (n - FRAME_LENGTH) // FRAME_SHIFT for n in sizes]
        max_frames = max(counts)

        x = waveforms.to(torch.float32)
        if self.kind == "eat":  # the clip mean, over the clip's own samples (one reduction per clip, as
            # compute_fbank takes it: a masked row sum would round differently)
            if means is None:
                means = torch.stack([x[b, :n].mean() for b, n in enumerate(sizes)])
            assert means.shape == (batch,), f"expected ({batch},) means, got shape {tuple(means.shape)}"
            x = x - means.to(device=x.device, dtype=torch.float32).unsqueeze(1)
        # (B, T, 400) view on the samples; frame t of clip b ends at 160 t + 400 <= lengths[b] for t < T_b.
        frames = x.unfold(1, FRAME_LENGTH, FRAME_SHIFT)[:, :max_frames]
        blocked = x.device.type == "cpu" if self.blocked is None else self.blocked
        if not blocked:  # one pass over the whole batch, then the padded tail zeroed
            feats = self._log_mel(frames.reshape(batch * max_frames, FRAME_LENGTH), banded=False)
            feats = feats.view(batch, max_frames, NUM_MEL_BINS)
            if min(counts) != max_frames:
                tail = torch.arange(max_frames, device=feats.device) >= num_frames.unsqueeze(1)  # (B, T)
                feats.masked_fill_(tail.unsqueeze(2), 0.0)
            return feats, num_frames
        # Blocked: the clips' own frames (never the padded tail) in blocks of at most CPU_BLOCK_FRAMES:
        # a block is large enough that the per-op overhead is small next to the arithmetic (short clips
        # are packed together) and small enough to stay in cache (long clips are cut).
        feats = x.new_zeros(batch, max_frames, NUM_MEL_BINS)
        for block in _pack_blocks(counts, CPU_BLOCK_FRAMES):
            if len(block) == 1:
                b, t0, t1 = block[0]
                self._log_mel(frames[b, t0:t1], banded=True, out=feats[b, t0:t1])
                continue
            packed = self._log_mel(torch.cat([frames[b, t0:t1] for b, t0, t1 in block]), banded=True)
            row = 0
            for b, t0, t1 in block:
                feats[b, t0:t1] = packed[row:row + t1 - t0]
                row += t1 - t0
        return feats, num_frames

    def _log_mel(self, frames: torch.Tensor, banded: bool, out: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 400) frames -> (N, 128) log-mel; the mel product dense or in bands (then into ``out``,
        a (N, 128) view, when given)."""
        num = frames.shape[0]
        padded = frames.new_empty(num, FFT_SIZE)
        padded[:, FRAME_LENGTH:] = 0
        body = padded[:, :FRAME_LENGTH]
        torch.sub(frames, frames.mean(dim=1, keepdim=True), out=body)  # DC offset of each frame
        # Pre-emphasis as Kaldi rounds it, x[j] - (0.97 * x[j - 1]), the first sample against itself
        # (both windows weigh the first sample by 0, so that one is silent anyway).
        body[:, 1:].sub_(body[:, :-1] * PREEMPHASIS)
        body[:, :1].sub_(body[:, :1] * PREEMPHASIS)
        body.mul_(self.window.to(torch.float32))
        spectrum = torch.view_as_real(torch.fft.rfft(padded, dim=1)).square_()  # (N, 257, 2)
        power = spectrum[:, :, 0] + spectrum[:, :, 1]  # (N, 257)
        mel = self.mel.to(torch.float32)
        if not banded:
            out = power @ mel
        else:
            if out is None:
                out = power.new_empty(num, NUM_MEL_BINS)
            for m0, m1, k0, k1 in self.bands:
                torch.mm(power[:, k0:k1], mel[k0:k1, m0:m1], out=out[:, m0:m1])
        return out.clamp_min_(LOG_FLOOR).log_()


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
        self._combine(n, mean, ((x - mean) ** 2).sum(axis=0))

    def merge(self, other: StatsAccumulator) -> None:
        """Add the frames another accumulator has seen (e.g. one job's share of a corpus)."""
        self.num_silent += other.num_silent
        if other.count > 0:
            self._combine(other.count, other.mean, other.m2)

    def _combine(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Chan et al.'s pairwise update with n frames of per-bin mean ``mean`` and M2 ``m2``."""
        if self.mean is None:
            self.count, self.mean, self.m2 = n, np.array(mean, dtype=np.float64), np.array(m2, dtype=np.float64)
            return
        assert mean.shape == self.mean.shape, f"expected {self.mean.shape[0]} bins, got {mean.shape[0]}"
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def state_dict(self) -> dict:
        """The raw accumulator (JSON-serialisable; floats round-trip exactly), for :meth:`from_state_dict`."""
        return {
            "skip_silence": self.skip_silence,
            "count": int(self.count),
            "num_silent": int(self.num_silent),
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "m2": None if self.m2 is None else [float(v) for v in self.m2],
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> StatsAccumulator:
        acc = cls(skip_silence=bool(state["skip_silence"]))
        acc.count, acc.num_silent = int(state["count"]), int(state["num_silent"])
        if state["mean"] is not None:
            acc.mean = np.asarray(state["mean"], dtype=np.float64)
            acc.m2 = np.asarray(state["m2"], dtype=np.float64)
        return acc

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
