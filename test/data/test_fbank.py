"""Front ends against the official option sets, corpus statistics, and the compute_fbank stage."""
import json

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from audiossl.bin import compute_fbank as compute_fbank_cli
from audiossl.bin import compute_stats as compute_stats_cli
from audiossl.data.audio import load_audio
from audiossl.data.datadir import write_kv
from audiossl.data import fbank as fbank_module
from audiossl.data.fbank import (
    BatchFbank, StatsAccumulator, _pack_blocks, compute_fbank, num_fbank_frames, read_stats, write_stats)

torch.set_num_threads(1)


def noisy_tone(num_samples: int, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    x = 0.2 * np.sin(2 * np.pi * (300 + 50 * seed) * t)[:, None] + 0.05 * rng.standard_normal((num_samples, channels))
    return (x + 0.02).astype(np.float32)  # a DC offset, which EAT removes and BEATs keeps


# The official calls, written out from each model's own code (design notes, section 2).
def official_beats(wav: torch.Tensor) -> torch.Tensor:
    # BEATs.preprocess: waveform * 2^15, then fbank with these options.
    return torchaudio.compliance.kaldi.fbank(
        wav.unsqueeze(0) * 2**15, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10
    )


def official_eat(wav: torch.Tensor) -> torch.Tensor:
    # EAT feature_extract: mean removed, then fbank with these options.
    wav = wav - wav.mean()
    return torchaudio.compliance.kaldi.fbank(
        wav.unsqueeze(0), htk_compat=True, sample_frequency=16000, use_energy=False,
        window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10,
    )


@pytest.mark.parametrize("kind, official", [("beats", official_beats), ("eat", official_eat)])
def test_fbank_equals_official_options(kind, official):
    wav = torch.from_numpy(noisy_tone(16000)[:, 0])
    feats = compute_fbank(wav, kind)
    assert feats.dtype == torch.float32
    assert feats.shape == (98, 128)  # 1 + (16000 - 400) // 160 frames
    assert torch.equal(feats, official(wav))


def test_the_two_front_ends_differ():
    wav = torch.from_numpy(noisy_tone(8000)[:, 0])
    beats, eat = compute_fbank(wav, "beats"), compute_fbank(wav, "eat")
    assert beats.shape == eat.shape
    # The 2^15 scale alone moves log-mel by log(2^30) ~ 20.8: the dumps are not interchangeable.
    assert (beats.mean() - eat.mean()).item() == pytest.approx(20.8, abs=1.0)


def test_stats_accumulator_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [(rng.standard_normal((n, 128)) * rng.uniform(1, 5, 128) + rng.uniform(-10, 20, 128)).astype(np.float32)
              for n in (1, 37, 250, 3)]
    acc = StatsAccumulator()
    for c in chunks:
        acc.add(c)
    acc.add(np.zeros((0, 128), dtype=np.float32))  # an empty matrix changes nothing
    stats = acc.result()
    all_frames = np.concatenate(chunks).astype(np.float64)
    assert stats.num_frames == 291
    assert stats.mean == pytest.approx(all_frames.mean(), rel=1e-12)
    assert stats.std == pytest.approx(all_frames.std(), rel=1e-12)
    np.testing.assert_allclose(stats.mean_per_bin, all_frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std_per_bin, all_frames.std(axis=0), rtol=1e-12)
    write_stats(stats, tmp_path / "stats.json")
    assert read_stats(tmp_path / "stats.json") == stats
    assert set(json.loads((tmp_path / "stats.json").read_text())) == {
        "mean", "std", "num_frames", "mean_per_bin", "std_per_bin", "num_silent_frames"}


@pytest.mark.parametrize("kind", ["beats", "eat"])
def test_stats_leave_out_digital_silence(kind):
    """A clip zero-padded with silence (as ESC-50's) gives the statistics of the clip alone."""
    tone = torch.from_numpy(np.asarray(noisy_tone(16000, seed=3), dtype=np.float32).reshape(-1))
    padded = torch.cat([tone, torch.zeros(24000)])
    alone, with_pad = StatsAccumulator(), StatsAccumulator()
    alone.add(compute_fbank(tone, kind))
    feats = compute_fbank(padded, kind)
    with_pad.add(feats)
    a, b = alone.result(), with_pad.result()
    assert b.num_silent_frames >= 140  # 1.5 s of zeros, less the frames that overlap the tone
    assert a.num_silent_frames == 0
    assert b.num_frames + b.num_silent_frames == feats.shape[0]
    assert b.mean == pytest.approx(a.mean, abs=0.05) and b.std == pytest.approx(a.std, abs=0.05)
    everything = StatsAccumulator(skip_silence=False)
    everything.add(feats)
    assert everything.result().mean < a.mean - 2  # the log floor of silence would drag it down


def make_data(tmp_path, corrupt: bool = False):
    """A data dir: a 16 kHz wav, a 44.1 kHz stereo flac, a pipe, two segments of one recording."""
    d = tmp_path / "data"
    sf.write(tmp_path / "a.wav", noisy_tone(12000, seed=1), 16000)
    sf.write(tmp_path / "b.flac", noisy_tone(22050, 44100, channels=2, seed=2), 44100)
    wav = {"a": str(tmp_path / "a.wav"), "b": str(tmp_path / "b.flac"), "c": f"cat {tmp_path / 'a.wav'} |"}
    if corrupt:
        (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEnot really")
        sf.write(tmp_path / "short.wav", noisy_tone(100), 16000)
        wav.update({"d_bad": str(tmp_path / "bad.wav"), "e_short": str(tmp_path / "short.wav")})
    write_kv(d / "wav.scp", wav)
    return d


def run_compute_fbank(tmp_path, data, kind, *extra):
    out = tmp_path / "out"
    args = ["--kind", kind, *extra, str(data), str(out / "feats.1.ark"), str(out / "feats.1.scp"), str(out / "bad.1")]
    return compute_fbank_cli.main(args), out


@pytest.mark.parametrize("kind", ["beats", "eat"])
def test_compute_fbank_end_to_end(tmp_path, kind):
    data = make_data(tmp_path)
    rc, out = run_compute_fbank(tmp_path, data, kind)
    assert rc == 0
    feats = dict(kaldiio.load_scp(str(out / "feats.1.scp")))
    assert list(feats) == ["a", "b", "c"]
    specs = {"a": str(tmp_path / "a.wav"), "b": str(tmp_path / "b.flac"), "c": str(tmp_path / "a.wav")}
    for utt, spec in specs.items():
        expected = compute_fbank(load_audio(spec), kind).numpy()
        assert feats[utt].dtype == np.float32
        np.testing.assert_array_equal(feats[utt], expected)
    assert feats["b"].shape == (48, 128)  # 0.5 s at 44.1 kHz -> 8000 samples at 16 kHz
    assert (out / "utt2num_frames.1").read_text() == "a 73\nb 48\nc 73\n"
    assert (out / "bad.1").read_text() == ""


def test_compute_fbank_with_segments(tmp_path):
    data = make_data(tmp_path)
    write_kv(data / "segments", {"a-0": "a 0 0.25", "a-1": "a 0.25 0.75", "b-0": "b 0.1 0.5"})
    rc, out = run_compute_fbank(tmp_path, data, "beats")
    assert rc == 0
    feats = dict(kaldiio.load_scp(str(out / "feats.1.scp")))
    np.testing.assert_array_equal(
        feats["a-1"], compute_fbank(load_audio(str(tmp_path / "a.wav"), start=0.25, end=0.75), "beats").numpy())
    assert [feats[k].shape[0] for k in ("a-0", "a-1", "b-0")] == [23, 48, 38]


def test_bad_utterances_are_listed_and_fail_unless_skipped(tmp_path):
    data = make_data(tmp_path, corrupt=True)
    rc, out = run_compute_fbank(tmp_path, data, "eat")
    assert rc == 1
    bad = (out / "bad.1").read_text().splitlines()
    assert [line.split()[:2] for line in bad] == [
        ["d_bad", str(tmp_path / "bad.wav")], ["e_short", str(tmp_path / "short.wav")]]
    assert "unreadable audio" in bad[0] and "too short: 100 samples" in bad[1]
    assert set(dict(kaldiio.load_scp(str(out / "feats.1.scp")))) == {"a", "b", "c"}  # the good ones still written

    rc, out = run_compute_fbank(tmp_path, data, "eat", "--skip-bad", "true")
    assert rc == 0
    assert len((out / "bad.1").read_text().splitlines()) == 2
    assert (out / "utt2num_frames.1").read_text().split()[::2] == ["a", "b", "c"]


def test_compute_stats_cli(tmp_path):
    rng = np.random.default_rng(1)
    mats = {f"u{i}": (rng.standard_normal((n, 128)) * 3 + 5).astype(np.float32) for i, n in enumerate((10, 40, 7))}
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'f.ark'},{tmp_path / 'f.scp'}") as w:
        for k, v in mats.items():
            w(k, v)
    assert compute_stats_cli.main([str(tmp_path / "f.scp"), str(tmp_path / "stats.json")]) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    x = np.concatenate(list(mats.values())).astype(np.float64)
    assert stats["num_frames"] == 57
    assert stats["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(x.std(), rel=1e-12)
    np.testing.assert_allclose(stats["std_per_bin"], x.std(axis=0), rtol=1e-12)


def test_too_short_clip_is_an_error():
    assert compute_fbank(torch.zeros(400), "eat").shape == (1, 128)
    with pytest.raises(ValueError, match="399 samples are fewer than one 25 ms window"):
        compute_fbank(torch.zeros(399), "beats")


# --------------------------------------------------------------------------------------------
# BatchFbank: the batched front end against compute_fbank
# --------------------------------------------------------------------------------------------
BATCH_TOLERANCE = 1e-4  # log-mel units


def random_clip(num_samples: int, rng: np.random.Generator) -> torch.Tensor:
    """White or coloured noise, a tone, a DC offset, at a random level: quiet bins included."""
    t = np.arange(num_samples) / 16000
    level = 10 ** rng.uniform(-3, -0.5)
    x = rng.standard_normal(num_samples)
    if rng.random() < 0.5:
        x = np.cumsum(x) / 30  # brown noise: high bins far below the low ones
    x = x + rng.uniform(0, 3) * np.sin(2 * np.pi * rng.uniform(50, 7000) * t + rng.uniform(0, 6.3))
    x = level * x / (np.abs(x).max() + 1e-9) + rng.uniform(-0.05, 0.05)
    return torch.from_numpy(np.clip(x, -1, 1).astype(np.float32))


def pad_batch(clips: list[torch.Tensor], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.full((len(clips), int(lengths.max())), fill, dtype=torch.float32)
    for b, c in enumerate(clips):
        batch[b, :len(c)] = c
    return batch, lengths


def assert_matches_reference(feats, num_frames, clips, kind, tolerance=BATCH_TOLERANCE):
    assert feats.dtype == torch.float32 and num_frames.dtype == torch.int64
    assert feats.shape == (len(clips), int(num_frames.max()), 128)
    for b, clip in enumerate(clips):
        ref = compute_fbank(clip, kind)
        n = int(num_frames[b])
        assert n == ref.shape[0] == 1 + (len(clip) - 400) // 160
        err = (feats[b, :n].cpu() - ref).abs().max().item()
        assert err <= tolerance, f"clip {b} ({len(clip)} samples): max |batched - compute_fbank| = {err}"
        assert torch.all(feats[b, n:] == 0), f"clip {b}: frames past its {n} are not zero"


BOUNDARY_LENGTHS = [400, 559, 560, 561, 720, 160000]  # one frame, the 1 -> 2 frame boundary, 10 s


def batch_clips(seed: int, count: int = 14) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    lengths = BOUNDARY_LENGTHS + [int(n) for n in rng.integers(400, 64000, count - len(BOUNDARY_LENGTHS))]
    lengths = [lengths[i] for i in rng.permutation(len(lengths))]  # padded in random order
    return [random_clip(n, rng) for n in lengths]


@pytest.mark.parametrize("kind", ["beats", "eat"])
@pytest.mark.parametrize("blocked", [True, False])
def test_batch_fbank_matches_compute_fbank(kind, blocked):
    clips = batch_clips(seed=11)
    feats, num_frames = BatchFbank(kind, blocked=blocked)(*pad_batch(clips))
    assert_matches_reference(feats, num_frames, clips, kind)


@pytest.mark.parametrize("kind", ["beats", "eat"])
def test_batch_fbank_clip_alone_equals_clip_in_batch(kind, monkeypatch):
    clips = batch_clips(seed=12, count=10)
    bf = BatchFbank(kind)
    feats, num_frames = bf(*pad_batch(clips))
    for b, clip in enumerate(clips):
        alone, n = bf(clip.unsqueeze(0), torch.tensor([len(clip)]))
        assert n.tolist() == [int(num_frames[b])]
        # The same float32 operations on the same samples; only the BLAS kernel of the mel product
        # depends on the number of rows, which can move the last bit.
        torch.testing.assert_close(alone[0], feats[b, :n[0]], rtol=3e-7, atol=1e-6)
    # Other cuts of the same frames into blocks: clips cut into pieces, pieces packed together.
    monkeypatch.setattr(fbank_module, "CPU_BLOCK_FRAMES", 37)
    feats_small_blocks, _ = bf(*pad_batch(clips))
    torch.testing.assert_close(feats_small_blocks, feats, rtol=3e-7, atol=1e-6)
    # One pass over the padded batch (the GPU's way) and the blocks agree.
    feats_one_pass, _ = BatchFbank(kind, blocked=False)(*pad_batch(clips))
    torch.testing.assert_close(feats_one_pass, feats, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["beats", "eat"])
@pytest.mark.parametrize("blocked", [True, False])
def test_batch_fbank_never_reads_the_padding(kind, blocked):
    clips = batch_clips(seed=13, count=8)
    bf = BatchFbank(kind, blocked=blocked)
    zero_padded, _ = bf(*pad_batch(clips))
    for fill in (float("nan"), 1e6):
        feats, _ = bf(*pad_batch(clips, fill=fill))
        assert torch.equal(feats, zero_padded), f"padding {fill} changed the features"


@pytest.mark.parametrize("kind", ["beats", "eat"])
def test_batch_fbank_silence_loud_and_dc_offset(kind):
    rng = np.random.default_rng(14)
    t = np.arange(48000) / 16000
    loud = np.clip(1.05 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(48000), -1, 1)
    full_scale_noise = rng.uniform(-1, 1, 32000)
    dc = 0.5 + 0.01 * np.sin(2 * np.pi * 1000 * t[:24000]) + 0.001 * rng.standard_normal(24000)
    silence = np.zeros(16000)
    half_silent = np.concatenate([0.1 * rng.standard_normal(8000), np.zeros(8000)])
    clips = [torch.from_numpy(c.astype(np.float32)) for c in (loud, full_scale_noise, dc, silence, half_silent)]
    feats, num_frames = BatchFbank(kind)(*pad_batch(clips))
    assert_matches_reference(feats, num_frames, clips, kind)
    floor = float(np.log(np.finfo(np.float32).eps))
    assert torch.all(feats[3, :num_frames[3]] == floor)  # digital silence: every bin at the log floor
    assert torch.all(feats[4, 60:num_frames[4]] == floor)


def test_batch_fbank_module_and_inputs():
    bf = BatchFbank("beats")
    assert bf.state_dict() == {}  # window and mel matrix are non-persistent buffers
    assert bf.window.shape == (400,) and bf.mel.shape == (257, 128)
    assert torch.all(bf.mel[0] == 0) and torch.all(bf.mel[256] == 0)  # neither DC nor Nyquist weighed
    meta = BatchFbank("eat").to("meta")
    assert meta.window.device.type == "meta" and meta.mel.device.type == "meta"
    # float64 input, lengths as int32: float32 features, long frame counts.
    wav = random_clip(16000, np.random.default_rng(15))
    feats, num_frames = bf(wav.double().unsqueeze(0), torch.tensor([16000], dtype=torch.int32))
    assert feats.dtype == torch.float32 and num_frames.dtype == torch.int64
    torch.testing.assert_close(feats[0], compute_fbank(wav, "beats"), rtol=0, atol=BATCH_TOLERANCE)
    with pytest.raises(AssertionError, match="399 samples is shorter than one window"):
        bf(torch.zeros(2, 1000), torch.tensor([1000, 399]))
    with pytest.raises(AssertionError, match="exceeds the 1000 samples"):
        bf(torch.zeros(2, 1000), torch.tensor([1000, 1001]))
    with pytest.raises(AssertionError, match="fbank kind must be one of"):
        BatchFbank("mfcc")
    assert num_fbank_frames(torch.tensor([399, 400, 559, 560, 161000])).tolist() == [0, 1, 1, 2, 1004]


def test_pack_blocks_covers_every_frame_once():
    counts = [1, 98, 998, 3, 37, 2500, 40]
    blocks = _pack_blocks(counts, 100)
    assert all(sum(t1 - t0 for _, t0, t1 in block) <= 100 for block in blocks)
    covered = {b: [] for b in range(len(counts))}
    for block in blocks:
        for b, t0, t1 in block:
            covered[b].extend(range(t0, t1))
    assert all(covered[b] == list(range(n)) for b, n in enumerate(counts))
    assert _pack_blocks([5, 6, 7], 100) == [[(0, 0, 5), (1, 0, 6), (2, 0, 7)]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is tested on the CPU only")
@pytest.mark.parametrize("kind", ["beats", "eat"])
def test_batch_fbank_on_cuda(kind):
    clips = batch_clips(seed=16)
    waveforms, lengths = pad_batch(clips)
    bf = BatchFbank(kind).to("cuda")
    feats, num_frames = bf(waveforms.cuda(), lengths.cuda())
    assert feats.device.type == "cuda" and num_frames.device.type == "cuda"
    # cuFFT rounds differently from the CPU's FFT, which moves quiet bins (far below their frame's
    # energy) by as much as the float32 reference itself differs from float64 arithmetic: most
    # entries agree to 1e-4, a rare few less.
    cpu_feats, cpu_frames = BatchFbank(kind)(waveforms, lengths)
    assert torch.equal(num_frames.cpu(), cpu_frames)
    diff = (feats.cpu() - cpu_feats).abs()
    assert (diff > BATCH_TOLERANCE).float().mean().item() < 1e-3
    assert diff.max().item() < 1e-2
    for b, n in enumerate(num_frames.tolist()):
        assert torch.all(feats[b, n:] == 0)
