"""Fine-tuning augmentations: mixup, SpecAugment, roll + gain, noise + shift, background noise."""
import math

import pytest
import torch

from audiossl.data import augment

torch.set_num_threads(1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_mixup_is_convex_and_mixes_labels_with_the_same_lambda():
    x = torch.randn(6, 20, 8)
    y = torch.eye(6)[[0, 1, 2, 3, 4, 5]]
    mask = torch.zeros(6, 20, dtype=torch.bool)
    mask[0, 15:] = True
    mask[5, 10:] = True
    xm, ym, mm, lam = augment.mixup(x, y, alpha=0.8, prob=1.0, generator=gen(0), padding_mask=mask)
    lam = float(lam)
    assert 0.0 < lam < 1.0
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))
    torch.testing.assert_close(ym, lam * y + (1 - lam) * y.flip(0))
    torch.testing.assert_close(ym.sum(1), torch.ones(6))  # still a distribution
    assert ym[0, 0] == pytest.approx(lam) and ym[0, 5] == pytest.approx(1 - lam)
    # Clip 0 is paired with clip 5: a frame is padding only where both are.
    assert mm[0].tolist() == (mask[0] & mask[5]).tolist() and mm[0, 15:].all() and not mm[0, 10:15].any()


def test_mixup_probability_and_off():
    x, y = torch.randn(4, 5, 3), torch.eye(4)
    xm, ym, _, lam = augment.mixup(x, y, alpha=0.8, prob=0.0, generator=gen(0))
    assert torch.equal(xm, x) and float(lam) == 1.0
    fired = sum(float(augment.mixup(x, y, alpha=0.8, prob=0.5, generator=gen(s))[3]) < 1.0 for s in range(200))
    assert 70 < fired < 130


def test_beta_samples_have_the_right_mean_and_variance():
    like = torch.zeros(1)
    s = augment.sample_beta(0.8, 0.8, (20000,), like, gen(1))
    assert s.min() >= 0 and s.max() <= 1
    assert s.mean().item() == pytest.approx(0.5, abs=0.01)
    assert s.var().item() == pytest.approx(0.25 / 2.6, abs=0.01)  # ab / ((a+b)^2 (a+b+1))
    g = augment.sample_beta(10, 10, (20000,), like, gen(2)) + 0.5
    assert g.min() > 0.5 and g.max() < 1.5 and g.mean().item() == pytest.approx(1.0, abs=0.01)


def test_seeded_reproducibility():
    x, y = torch.randn(4, 32, 16), torch.eye(4)
    a = augment.spec_augment(augment.mixup(x, y, 0.8, generator=gen(7))[0], 4, 6, generator=gen(8))
    b = augment.spec_augment(augment.mixup(x, y, 0.8, generator=gen(7))[0], 4, 6, generator=gen(8))
    c = augment.spec_augment(augment.mixup(x, y, 0.8, generator=gen(9))[0], 4, 6, generator=gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    r1 = augment.roll_and_gain(x, gain_norm_std=4.5, generator=gen(3))
    r2 = augment.roll_and_gain(x, gain_norm_std=4.5, generator=gen(3))
    assert torch.equal(r1, r2)


def test_specaugment_one_band_each_within_the_widths():
    B, T, F = 400, 100, 128
    ratio = 0.2
    out = augment.spec_augment(torch.ones(B, T, F), F * ratio, T * ratio, generator=gen(0))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    freq_masked = (out == 0).all(dim=1)  # (B, F): bins masked at every frame
    time_masked = (out == 0).all(dim=2)  # (B, T): frames masked in every bin
    fw, tw = freq_masked.sum(1), time_masked.sum(1)
    # Bands are [floor(start), floor(start + width)) with width < max: at most ceil(max) long.
    assert fw.max() <= math.ceil(F * ratio) and tw.max() <= math.ceil(T * ratio)
    assert fw.float().mean().item() == pytest.approx(F * ratio / 2, rel=0.15)  # width ~ U[0, max)
    assert tw.float().mean().item() == pytest.approx(T * ratio / 2, rel=0.15)
    for b in range(20):  # each mask is one contiguous band
        for m in (freq_masked[b], time_masked[b]):
            idx = torch.nonzero(m).flatten()
            if len(idx):
                assert idx[-1] - idx[0] + 1 == len(idx)
    # Every zero is explained by the two bands.
    explained = freq_masked[:, None, :] | time_masked[:, :, None]
    assert torch.equal(out == 0, explained)


def test_roll_keeps_the_real_frames_and_leaves_padding():
    B, T, F = 3, 12, 2
    x = torch.arange(B * T, dtype=torch.float32).view(B, T, 1).expand(B, T, F).clone()
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[1, 7:] = True
    out = augment.roll_and_gain(x, mask, roll=True, gain_norm_std=None, generator=gen(5))
    for b, length in enumerate([12, 7, 12]):
        real_in, real_out = x[b, :length, 0], out[b, :length, 0]
        assert sorted(real_out.tolist()) == sorted(real_in.tolist())
        shift = int((real_out[0] - real_in[0]).item()) % length
        assert torch.equal(real_out, torch.roll(real_in, -shift))  # circular within the clip
    assert torch.equal(out[1, 7:], x[1, 7:])


def test_gain_is_a_constant_log_offset_on_real_frames():
    x = torch.randn(64, 10, 4)
    mask = torch.zeros(64, 10, dtype=torch.bool)
    mask[:, 8:] = True
    std = 4.569
    out = augment.roll_and_gain(x, mask, roll=False, gain_norm_std=std, generator=gen(6))
    offset = out - x
    assert torch.equal(offset[:, 8:], torch.zeros(64, 2, 4))
    per_clip = offset[:, :8].reshape(64, -1)
    torch.testing.assert_close(per_clip, per_clip[:, :1].expand_as(per_clip))
    lo, hi = math.log(0.5) / std, math.log(1.5) / std
    assert per_clip.min() > lo and per_clip.max() < hi


def test_noise_and_shift():
    B, T, F = 200, 30, 5
    x = torch.zeros(B, T, F)
    noisy, _ = augment.noise_and_shift(x, None, noise_scale=0.1, max_shift=0, generator=gen(1))
    assert noisy.min() >= 0 and noisy.max() < 0.1
    ramp = torch.arange(T, dtype=torch.float32).view(1, T, 1).expand(B, T, F).contiguous()
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, 25:] = True
    shifted, smask = augment.noise_and_shift(ramp, mask, noise_scale=0.0, max_shift=10, generator=gen(2))
    shifts = set()
    for b in range(B):
        s = int(shifted[b, 0, 0].item())
        d = (-s) % T  # roll amount
        assert torch.equal(shifted[b], torch.roll(ramp[b], d, dims=0))
        assert torch.equal(smask[b], torch.roll(mask[b], d, dims=0))
        shifts.add(d if d < T // 2 else d - T)
    assert min(shifts) == -10 and max(shifts) == 9  # integers in [-10, 10)


def test_background_noise_mixes_at_the_requested_snr():
    torch.manual_seed(0)
    mean, std = -4.0, 4.0
    x = torch.randn(3, 20, 6)
    n = torch.randn(3, 20, 6)
    snr = 10.0
    out = augment.mix_background_noise(x, n, mean, std, snr_db=(snr, snr), prob=1.0, generator=gen(0))
    raw = lambda z: z.double() * 2 * std + mean  # noqa: E731
    p_x, p_out = raw(x).exp().mean((1, 2)), raw(out).exp().mean((1, 2))
    # Powers add: the added power is the clip's power / 10^(snr/10).
    torch.testing.assert_close((p_out - p_x) / p_x, torch.full((3,), 10 ** (-snr / 10), dtype=torch.float64), rtol=1e-4, atol=0)
    kept = augment.mix_background_noise(x, n, mean, std, snr_db=(snr, snr), prob=0.0, generator=gen(0))
    torch.testing.assert_close(kept, x)
