"""audiossl.data.dump and the raw path of the dataset: a raw audio dump reads as the fbank dump of the
same audio would (within 1e-4), whole or cropped, in the loader or batched on the device."""
from __future__ import annotations

import json

import kaldiio
import numpy as np
import pytest
import torch

from audiossl.data.dataset import Collator, FbankOnDevice, FeatsDataset, FeatsWindows, resolve_norm
from audiossl.data.dump import Dump, num_frames_of
from audiossl.data.fbank import FeatureNorm, compute_fbank
from audiossl.score.probe import logmel_stats

torch.set_num_threads(1)
TOL = 1e-4  # log-mel units
LENGTHS = [400, 559, 560, 561, 4000, 16000, 23456, 48000]  # samples: one frame, frame edges, up to 3 s


def clips(seed: int = 0) -> dict[str, np.ndarray]:
    """16-bit clips of noise, tones, a DC offset and some digital silence, as int16 samples."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, n in enumerate(LENGTHS):
        t = np.arange(n) / 16000
        x = 0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t) + 0.05 * (i % 3)
        if n > 8000:
            x[: n // 4] = 0.0  # silence first
        out[f"utt{i}"] = np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)
    return out


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """The same audio as a raw dump (FLAC in an ark) and as fbank dumps of both front ends."""
    root = tmp_path_factory.mktemp("dumps")
    audio = clips()
    raw = root / "raw"
    raw.mkdir()
    for utt, pcm in audio.items():
        kaldiio.save_ark(str(raw / "wav.ark"), {utt: (16000, pcm)}, scp=str(raw / "wav.scp"), append=True,
                         write_function="soundfile", write_kwargs={"format": "flac", "subtype": "PCM_16"})
    (raw / "utt2num_samples").write_text("".join(f"{u} {len(x)}\n" for u, x in audio.items()))
    labels = "".join(f"{u} {'ab'[i % 2]}\n" for i, u in enumerate(audio))
    fbank = {}
    for kind in ("beats", "eat"):
        d = root / f"fbank_{kind}"
        d.mkdir()
        with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
            for utt, pcm in audio.items():
                w[utt] = compute_fbank(torch.from_numpy(pcm.astype(np.float32) / 32768), kind).numpy()
        (d / "utt2num_frames").write_text("".join(f"{u} {num_frames_of(len(x))}\n" for u, x in audio.items()))
        (d / "stats.json").write_text(json.dumps({"mean": 1.0 if kind == "beats" else -5.0, "std": 3.0}))
        (raw / f"stats_{kind}.json").write_text(json.dumps({"mean": 1.0 if kind == "beats" else -5.0, "std": 3.0}))
        fbank[kind] = d
    for d in (raw, *fbank.values()):
        (d / "utt2label").write_text(labels)
        (d / "labels.txt").write_text("0 a\n1 b\n")
    return raw, fbank


@pytest.mark.parametrize("kind", ["beats", "eat"])
def test_raw_dump_reads_as_its_fbank_dump(dumps, kind):
    raw, fbank = dumps
    r, f = Dump(raw, kind), Dump(fbank[kind])
    assert (r.type, f.type) == ("raw", "fbank") and r.utt_ids == f.utt_ids
    assert r.num_frames() == f.num_frames() == [num_frames_of(n) for n in LENGTHS]
    for utt in r:
        whole = f[utt]
        np.testing.assert_allclose(r[utt], whole, atol=TOL, rtol=0)
        T = whole.shape[0]
        for start, num in ((0, 1), (T // 3, max(T // 2, 1)), (T - 1, 5)):  # crops, one past the end
            if start < T:
                np.testing.assert_allclose(r.feats(utt, start, num), whole[start:start + num], atol=TOL, rtol=0)
    assert resolve_norm(raw, None, None, kind) == resolve_norm(fbank[kind], None, None)


@pytest.mark.parametrize("kind", ["beats", "eat"])
def test_training_crops_and_validation_windows_match_the_fbank_dumps(dumps, kind):
    raw, fbank = dumps
    for crop in ("random", "active", "start"):
        a = FeatsDataset(raw, target_frames=100, crop=crop, fbank_kind=kind)
        b = FeatsDataset(fbank[kind], target_frames=100, crop=crop)
        for i in range(len(a)):
            for seed in (0, 7):
                x, y = a[(i, seed)], b[(i, seed)]
                assert x["utt_id"] == y["utt_id"] and torch.equal(x["targets"], y["targets"])
                torch.testing.assert_close(x["feats"], y["feats"], atol=TOL, rtol=0)
    a = FeatsWindows(raw, 120, fbank_kind=kind)
    b = FeatsWindows(fbank[kind], 120)
    assert a.windows == b.windows
    for j in range(len(a)):
        x, y = a[j], b[j]
        assert (x["clip"], x["keep"]) == (y["clip"], y["keep"])
        torch.testing.assert_close(x["feats"], y["feats"], atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["beats", "eat"])
@pytest.mark.parametrize("target_frames", [100, None])
def test_features_made_on_the_device_are_the_loaders(dumps, kind, target_frames):
    raw, fbank = dumps
    norm = FeatureNorm(-3.0, 2.5)
    waves = FeatsDataset(raw, target_frames=target_frames, fbank_kind=kind, waveform=True)
    feats = FeatsDataset(fbank[kind], target_frames=target_frames)
    keys = [(i, 3) for i in range(len(waves))]
    collate = Collator(norm, target_frames)
    on_device = FbankOnDevice(kind, norm, target_frames)(collate([waves[k] for k in keys]))
    in_loader = collate([feats[k] for k in keys])
    assert on_device["utt_ids"] == in_loader["utt_ids"]
    assert torch.equal(on_device["padding_mask"], in_loader["padding_mask"])
    assert torch.equal(on_device["targets"], in_loader["targets"])
    torch.testing.assert_close(on_device["feats"], in_loader["feats"], atol=TOL / (2 * norm.std), rtol=0)


def test_probe_baseline_reads_raw_dumps(dumps):
    raw, fbank = dumps
    utts_r, x_r = logmel_stats(raw, "eat")
    utts_f, x_f = logmel_stats(fbank["eat"])
    assert utts_r == utts_f
    np.testing.assert_allclose(x_r, x_f, atol=1e-3, rtol=0)  # means and stds of features within 1e-4


def test_errors_name_the_dump_and_the_fix(dumps, tmp_path):
    raw, fbank = dumps
    with pytest.raises(ValueError, match="raw audio dump.*data.fbank_kind"):
        Dump(raw)
    with pytest.raises(ValueError, match="need a raw audio dump"):
        FeatsDataset(fbank["beats"], waveform=True)
    with pytest.raises(FileNotFoundError, match="neither feats.scp .* nor wav.scp"):
        Dump(tmp_path)
    with pytest.raises(FileNotFoundError, match="stats_beats.json"):
        empty = tmp_path / "r"
        empty.mkdir()
        (empty / "wav.scp").write_text((raw / "wav.scp").read_text())
        resolve_norm(empty, None, None, "beats")


class _CountingFile:
    """A file that counts its seeks (reading front to back needs none)."""

    seeks = 0

    def __init__(self, fh):
        self.fh = fh

    def seek(self, *args):
        _CountingFile.seeks += 1
        return self.fh.seek(*args)

    def __getattr__(self, name):
        return getattr(self.fh, name)


@pytest.fixture
def sharded(tmp_path):
    """A raw dump in three arks (shards), as make_raw.sh --shard-mb writes them."""
    audio = clips(1)
    d = tmp_path / "raw"
    d.mkdir()
    for n, (utt, pcm) in enumerate(audio.items()):
        kaldiio.save_ark(str(d / f"wav.1_{n % 3}.ark"), {utt: (16000, pcm)}, scp=str(d / "wav.scp"), append=True,
                         write_function="soundfile", write_kwargs={"format": "flac", "subtype": "PCM_16"})
    return d


def test_sequential_reads_give_the_same_values_front_to_back(sharded, monkeypatch):
    import builtins

    from audiossl.data import dump as dump_module
    from audiossl.data.sampler import ShardedBatchSampler

    plain = Dump(sharded, "eat")
    shards = plain.shards()
    assert len(shards) == 3 and sorted(i for s in shards for i in s) == list(range(len(plain)))
    real_open = builtins.open
    monkeypatch.setattr(dump_module, "open", lambda *a, **k: _CountingFile(real_open(*a, **k)), raising=False)
    # file order, then the order of a sampler's shuffle buffer: every value as read at random, no seek
    buffered = [i for b in ShardedBatchSampler(shards, 2, num_workers=1, buffer=3, seed=4) for i, _ in b]
    for order in ([i for s in shards for i in s], buffered):
        seq = Dump(sharded, "eat", sequential=True)
        _CountingFile.seeks = 0
        for i in order:
            utt = seq.utt_ids[i]
            np.testing.assert_array_equal(seq.audio(utt).numpy(), plain.audio(utt).numpy())
        assert _CountingFile.seeks == 0, "reading in shard order reads every ark front to back"
    # any other order works too (seeking back), and a small read-ahead drops what it cannot keep
    seq = Dump(sharded, "beats", sequential=True, readahead_mb=0.05)
    for utt in reversed(plain.utt_ids):
        np.testing.assert_allclose(seq[utt], Dump(sharded, "beats")[utt], atol=0, rtol=0)
    assert seq._arks.kept_bytes <= 0.05 * 2**20


def test_sequential_reads_of_an_fbank_dump(dumps):
    _, fbank = dumps
    plain, seq = Dump(fbank["beats"]), Dump(fbank["beats"], sequential=True)
    for utt in list(plain)[::2] + list(plain)[1::2]:  # forward, keeping the odd ones for the second pass
        np.testing.assert_array_equal(seq[utt], plain[utt])
