"""Fine-tuning augmentations as pure functions on a batch of normalised fbank.

Every function takes tensors on any device and an optional ``torch.Generator`` (on that device) and
returns new tensors; nothing is modified in place. With ``generator=None`` they draw from torch's
global RNG, which the trainer seeds and restores on resume, so training stays exactly resumable.

Shapes: feats (B, T, F) normalised log-mel, padding_mask (B, T) bool (True on padded frames),
targets (B, C) float.

What each one reproduces (EAT's fine-tuning recipe, design notes section 4; facts, not code, taken
from the official repositories):

* :func:`mixup` -- one lambda ~ Beta(alpha, alpha) per batch, applied with probability ``prob``;
  every clip is mixed with the clip at the mirrored batch position (``flip(0)``, the "batch" mode of
  the timm Mixup the official code uses), targets mixed with the same lambda.
* :func:`smooth_targets` -- timm-style label smoothing: off = s / C, on = 1 - s + s / C.
* :func:`spec_augment` -- one frequency mask and one time mask per clip (torchaudio's iid masking
  rule): width ~ U[0, max_width), start ~ U[0, size - width), masked values set to 0.
* :func:`roll_and_gain` -- the waveform roll + gain of Audio-MAE/EAT (roll by a random offset, gain
  m ~ Beta(10, 10) + 0.5), carried over to log-mel: a circular roll of each clip's real frames, and
  an offset of 2 ln(m) on the raw log-mel, i.e. ln(m) / std on features normalised as
  (x - mean) / (2 std).
* :func:`noise_and_shift` -- SPC-2: uniform noise U[0, 1) * u / 10 (u ~ U[0, 1) per clip) added to
  the normalised fbank, then a circular time shift by an integer in [-max_shift, max_shift).
* :func:`mix_background_noise` -- mixing a noise recording (SPC-2 ``_background_noise_``) at a random
  SNR, done in the mel power domain: log(e^x + g e^n), g chosen so that the clip-to-noise mel power
  ratio is the SNR.
"""
from __future__ import annotations

import math

import torch


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) float32 on ``like``'s device."""
    return torch.rand(shape, generator=generator, device=like.device, dtype=torch.float32)


def sample_beta(
    alpha: float, beta: float, shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Beta(alpha, beta) samples as G_a / (G_a + G_b) from two standard gammas (generator-aware)."""
    assert alpha > 0 and beta > 0, f"Beta parameters must be positive, got ({alpha}, {beta})"
    conc = torch.tensor([alpha, beta], dtype=torch.float32, device=like.device).expand(*shape, 2).contiguous()
    g = torch._standard_gamma(conc, generator=generator)  # (*shape, 2)
    return g[..., 0] / (g[..., 0] + g[..., 1]).clamp(min=1e-12)


def mixup(
    feats: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    prob: float = 1.0,
    generator: torch.Generator | None = None,
    padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Batch mixup: x = lam * x + (1 - lam) * x.flip(0), the same for targets.

    With probability ``1 - prob`` lam is 1 (the batch comes back unchanged); ``alpha <= 0`` turns
    mixup off. A mixed frame is padding only if it is padding in both clips. No host sync: lam stays
    a tensor on the batch's device.

    Returns:
        (feats, targets, padding_mask, lam) with lam a 0-dim float32 tensor.
    """
    B = feats.shape[0]
    assert targets.shape[0] == B, f"feats have {B} clips but targets {targets.shape[0]}"
    if alpha <= 0 or prob <= 0:
        return feats, targets, padding_mask, torch.ones((), device=feats.device)
    fire = _rand((), feats, generator) < prob
    lam = torch.where(fire, sample_beta(alpha, alpha, (), feats, generator), torch.ones((), device=feats.device))
    feats = lam.to(feats.dtype) * feats + (1.0 - lam).to(feats.dtype) * feats.flip(0)
    targets = lam.to(targets.dtype) * targets + (1.0 - lam).to(targets.dtype) * targets.flip(0)
    if padding_mask is not None:
        padding_mask = torch.where(lam < 1.0, padding_mask & padding_mask.flip(0), padding_mask)
    return feats, targets, padding_mask, lam


def smooth_targets(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label smoothing of (B, C) targets: y * (1 - s) + s / C (timm: on = 1 - s + s/C, off = s/C)."""
    if smoothing <= 0:
        return targets
    C = targets.shape[-1]
    return targets * (1.0 - smoothing) + smoothing / C


def _mask_band(size: int, max_width: float, B: int, like: torch.Tensor, generator: torch.Generator | None):
    """(B, size) bool band per clip: width ~ U[0, max_width), start ~ U[0, size - width)."""
    width = _rand((B,), like, generator) * max_width  # (B,)
    start = _rand((B,), like, generator) * (size - width)  # (B,)
    lo, hi = start.long(), (start + width).long()  # as torchaudio's mask_along_axis_iid
    pos = torch.arange(size, device=like.device)  # (size,)
    return (pos >= lo[:, None]) & (pos < hi[:, None])  # (B, size)


def spec_augment(
    feats: torch.Tensor,
    freq_mask_width: float,
    time_mask_width: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One frequency and one time mask per clip, masked values 0 (EAT: widths 128 * mask_ratio and
    target_frames * mask_ratio).

    Args:
        feats: (B, T, F).
        freq_mask_width: the largest frequency mask width in bins (exclusive).
        time_mask_width: the largest time mask width in frames (exclusive).
    """
    B, T, F = feats.shape
    masked = torch.zeros(B, T, F, dtype=torch.bool, device=feats.device)
    if freq_mask_width > 0:
        masked |= _mask_band(F, min(freq_mask_width, F), B, feats, generator)[:, None, :]  # (B, 1, F)
    if time_mask_width > 0:
        masked |= _mask_band(T, min(time_mask_width, T), B, feats, generator)[:, :, None]  # (B, T, 1)
    return feats.masked_fill(masked, 0.0)


def _lengths(feats: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """(B,) number of real frames per clip (padding is at the end of each clip)."""
    B, T, _ = feats.shape
    if padding_mask is None:
        return torch.full((B,), T, dtype=torch.long, device=feats.device)
    return (~padding_mask).sum(dim=1)


def roll_and_gain(
    feats: torch.Tensor,
    padding_mask: torch.Tensor | None = None,
    roll: bool = True,
    gain_norm_std: float | None = None,
    gain_beta: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Roll each clip's real frames circularly by a random offset in [0, length), and add a gain.

    The gain m ~ Beta(gain_beta, gain_beta) + 0.5 scales the waveform in the official recipe; in
    log-mel power it adds 2 ln(m), which after the (x - mean) / (2 std) normalisation is ln(m) / std,
    so ``gain_norm_std`` must be the std the data were normalised with (None: no gain). Padded frames
    (at the end of each clip) stay where they are and are not changed.
    """
    B, T, F = feats.shape
    lengths = _lengths(feats, padding_mask)  # (B,)
    real = torch.arange(T, device=feats.device)[None, :] < lengths[:, None]  # (B, T)
    out = feats
    if roll:
        shift = (_rand((B,), feats, generator) * lengths.clamp(min=1)).long()  # (B,) in [0, length)
        t = torch.arange(T, device=feats.device)[None, :]  # (1, T)
        src = torch.remainder(t - shift[:, None], lengths.clamp(min=1)[:, None])  # (B, T)
        src = torch.where(real, src, t.expand(B, T))  # padded frames map to themselves
        out = torch.gather(out, 1, src[:, :, None].expand(B, T, F))
    if gain_norm_std is not None:
        m = sample_beta(gain_beta, gain_beta, (B,), feats, generator) + 0.5  # (B,)
        offset = (torch.log(m) / gain_norm_std).to(feats.dtype)  # (B,)
        out = out + offset[:, None, None] * real[:, :, None]
    return out


def noise_and_shift(
    feats: torch.Tensor,
    padding_mask: torch.Tensor | None = None,
    noise_scale: float = 0.1,
    max_shift: int = 10,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SPC-2 recipe: feats + U[0, 1) * u * noise_scale (u ~ U[0, 1) per clip), then a circular shift
    of the whole (padded) clip by an integer in [-max_shift, max_shift), the padding mask with it.

    Returns:
        (feats, padding_mask)
    """
    B, T, F = feats.shape
    u = _rand((B, 1, 1), feats, generator)
    out = feats + _rand((B, T, F), feats, generator).to(feats.dtype) * (u * noise_scale).to(feats.dtype)
    if max_shift > 0:
        shift = (_rand((B,), feats, generator) * (2 * max_shift)).long() - max_shift  # (B,) in [-m, m)
        t = torch.arange(T, device=feats.device)[None, :]  # (1, T)
        src = torch.remainder(t - shift[:, None], T)  # (B, T)
        out = torch.gather(out, 1, src[:, :, None].expand(B, T, F))
        if padding_mask is not None:
            padding_mask = torch.gather(padding_mask, 1, src)
    return out, padding_mask


def mix_background_noise(
    feats: torch.Tensor,
    noise: torch.Tensor,
    norm_mean: float,
    norm_std: float,
    snr_db: tuple[float, float] = (0.0, 20.0),
    prob: float = 1.0,
    padding_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mix noise fbank into each clip at an SNR ~ U[snr_db] (dB), with probability ``prob`` per clip.

    Both inputs are normalised log-mel ((x - mean) / (2 std), the same statistics); mixing happens on
    raw mel power: x_mix = log(e^x + g e^n) with g = P_x / (P_n 10^(snr / 10)), P the mean mel power
    over the clip's real frames. Power adds only approximately when two signals overlap (cross terms
    are dropped), which is the usual fbank-domain approximation.

    Args:
        feats: (B, T, F) normalised clips.
        noise: (B, T, F) normalised noise crops, one per clip (see ``FinetuneModel`` for the cropping).
    """
    assert noise.shape == feats.shape, f"noise {tuple(noise.shape)} must match feats {tuple(feats.shape)}"
    B, T, F = feats.shape
    lengths = _lengths(feats, padding_mask)
    real = (torch.arange(T, device=feats.device)[None, :] < lengths[:, None])[:, :, None]  # (B, T, 1)
    x = feats.float() * (2 * norm_std) + norm_mean  # raw log-mel (B, T, F)
    n = noise.float() * (2 * norm_std) + norm_mean
    count = (real.sum(dim=(1, 2)) * F).clamp(min=1)  # (B,)
    # Mean power in log form: logsumexp over real cells minus log(count), (B,).
    neg_inf = torch.tensor(-math.inf, device=feats.device)
    log_px = torch.logsumexp(torch.where(real, x, neg_inf).flatten(1), dim=1) - torch.log(count.float())
    log_pn = torch.logsumexp(torch.where(real, n, neg_inf).flatten(1), dim=1) - torch.log(count.float())
    lo, hi = snr_db
    snr = lo + (hi - lo) * _rand((B,), feats, generator)  # (B,) dB
    log_g = log_px - log_pn - snr * (math.log(10.0) / 10.0)  # (B,)
    mixed = torch.logaddexp(x, n + log_g[:, None, None])
    apply = (_rand((B,), feats, generator) < prob)[:, None, None] & real  # (B, T, 1)
    out = torch.where(apply, mixed, x)
    return ((out - norm_mean) / (2 * norm_std)).to(feats.dtype)
