"""utils/make_raw.sh end to end: 16-bit FLAC/WAV audio in Kaldi arks, bad audio, clipping,
--from-dump, and the per-front-end statistics merged from parts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from audiossl.bin.dump_audio import to_int16
from audiossl.data.audio import load_audio
from audiossl.data.datadir import write_kv, write_labels
from audiossl.data.fbank import StatsAccumulator, compute_fbank

REPO = Path(__file__).resolve().parents[2]
Q = 1 / 32768  # one step of 16-bit PCM


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """A recipe-like working directory (utils/ linked in, the test's Python first on PATH), also the
    test's own working directory: the dump's scp files name the arks relative to it."""
    (tmp_path / "utils").symlink_to(REPO / "utils")
    (tmp_path / "audio").mkdir()
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ, LC_ALL="C", OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return tmp_path, env


def make_raw(recipe, *args):
    cwd, env = recipe
    return subprocess.run(["utils/make_raw.sh", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def clip(path: Path, num_samples: int, sample_rate: int, seed: int, channels: int = 1,
         amplitude: float = 0.3, subtype: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    x = amplitude * np.sin(2 * np.pi * (200 + 40 * seed) * t)[:, None] + 0.05 * rng.standard_normal((num_samples, channels))
    sf.write(path, x.astype(np.float32), sample_rate, subtype=subtype)


def write_set(root: Path, wav: dict[str, str], segments: dict | None = None) -> None:
    write_kv(root / "wav.scp", wav)
    if segments is not None:
        write_kv(root / "segments", {k: f"{r} {s:g} {e:g}" for k, (r, s, e) in segments.items()})
    utts = sorted(segments if segments is not None else wav)
    write_kv(root / "utt2label", {u: ["cat", "dog"][i % 2] for i, u in enumerate(utts)})
    write_kv(root / "utt2dur", {u: "0.5" for u in utts})
    write_labels(root / "labels.txt", ["cat", "dog"], ["The cat", "The dog"])


def mixed_set(cwd: Path) -> dict[str, tuple]:
    """Clips of several rates and channel counts, a pipe, segments and a clip above full scale:
    {utt: (wav.scp value, start, end)}."""
    audio = cwd / "audio"
    clip(audio / "a.wav", 16000, 16000, seed=0, subtype="PCM_16")
    clip(audio / "b.flac", 22050, 44100, seed=1, channels=2)
    clip(audio / "c.wav", 6000, 8000, seed=2)
    clip(audio / "loud.wav", 9000, 16000, seed=3, amplitude=1.4, subtype="FLOAT")  # peaks above 1
    return {
        "a": ("audio/a.wav", None, None),
        "b": ("audio/b.flac", None, None),
        "c": ("audio/c.wav", None, None),
        "loud": ("audio/loud.wav", None, None),
        "p": ("cat audio/c.wav |", None, None),
        "s1": ("audio/a.wav", 0.0, 0.4),
        "s2": ("audio/a.wav", 0.5, 0.95),
    }


def write_mixed_set(cwd: Path, utts: dict[str, tuple]) -> None:
    """As a data dir with segments: each utterance a segment of its own recording (whole or part)."""
    wav, segments = {}, {}
    for utt, (spec, start, end) in utts.items():
        rec = "rec_" + utt
        wav[rec] = spec
        dur = sf.info(spec).duration if not spec.endswith("|") else 0.75
        segments[utt] = (rec, start or 0.0, end if end is not None else dur)
    write_set(cwd / "data/train", wav, segments)


def loader_samples(utts: dict[str, tuple]) -> dict[str, np.ndarray]:
    """The 16 kHz mono samples audiossl.data.audio gives for each utterance (whole clips and cuts)."""
    out = {}
    for utt, (spec, start, end) in utts.items():
        out[utt] = load_audio(spec, start, end).numpy() if start is not None else load_audio(spec).numpy()
    return out


@pytest.mark.parametrize("audio_format,magic", [("flac", b"fLaC"), ("wav", b"RIFF")])
def test_make_raw_round_trip(recipe, audio_format, magic):
    cwd, _ = recipe
    utts = mixed_set(cwd)
    write_mixed_set(cwd, utts)
    kinds = "beats eat" if audio_format == "flac" else "eat"
    res = make_raw(recipe, "--nj", "2", "--audio-format", audio_format, "--stats-kinds", kinds,
                   "data/train", "dump/raw/train")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Succeeded dumping raw audio ({audio_format}) for data/train: 7 utterances" in res.stdout
    dump = cwd / "dump/raw/train"
    assert (dump / "log/dump.1.log").is_file() and (dump / "log/dump.2.log").is_file()

    # wav.scp: sorted keys, byte offsets into the job arks, each entry an AUDIO blob of the chosen format
    lines = (dump / "wav.scp").read_text().splitlines()
    assert [l.split()[0] for l in lines] == sorted(utts)
    for line in lines:
        ark, offset = line.split()[1].rsplit(":", 1)
        assert ark.startswith("dump/raw/train/data/wav.") and ark.endswith(".ark")
        blob = Path(ark).read_bytes()[int(offset):int(offset) + 16]
        assert blob.startswith(b"AUDIO") and magic in blob

    decoded = {}
    expected = loader_samples(utts)
    with kaldiio.ReadHelper("scp:dump/raw/train/wav.scp") as reader:
        for utt, (rate, samples) in reader:
            assert rate == 16000 and samples.ndim == 1
            decoded[utt] = samples
    lazy = kaldiio.load_scp("dump/raw/train/wav.scp")
    for utt, x in expected.items():
        y = decoded[utt]
        assert y.shape == x.shape, utt
        np.testing.assert_array_equal(lazy[utt][1], y)  # random access gives the same
        # exactly 16-bit values, within one quantisation step of the loader's float samples
        np.testing.assert_array_equal(np.rint(y * 32768), y * 32768)
        np.testing.assert_allclose(y, np.clip(x, -1.0, 1.0 - Q), rtol=0, atol=Q)
    # a 16-bit source at 16 kHz comes back bit-exact
    np.testing.assert_array_equal(decoded["a"], sf.read("audio/a.wav")[0])

    # clipping: the loud clip is clipped (not wrapped), listed and warned about
    assert np.abs(expected["loud"]).max() > 1.0
    assert decoded["loud"].max() == 1.0 - Q and decoded["loud"].min() == -1.0
    clipped = (dump / "clipped_utts").read_text().split()
    assert clipped[0] == "loud" and int(clipped[1]) == int(np.sum((expected["loud"] >= 1.0 - Q / 2) | (expected["loud"] < -1.0 - Q / 2)))
    assert float(clipped[2]) == pytest.approx(np.abs(expected["loud"]).max(), rel=1e-5)
    assert "1 of 7 utterances had samples outside [-1, 1), clipped" in res.stderr

    assert (dump / "utt2num_samples").read_text() == "".join(f"{u} {expected[u].size}\n" for u in sorted(utts))
    for f in ("utt2label", "utt2dur", "labels.txt"):
        assert (dump / f).read_text() == (cwd / "data/train" / f).read_text()
    assert (dump / "bad_utts").read_text() == ""

    # statistics per front end: merged from the two jobs' parts, equal to one pass over the decoded audio
    for kind in ("beats", "eat"):
        if kind not in kinds:
            assert not (dump / f"stats_{kind}.json").exists()
            continue
        acc = StatsAccumulator()
        for utt in sorted(utts):
            acc.add(compute_fbank(torch.from_numpy(decoded[utt].astype(np.float32)), kind))
        want = acc.result()
        got = json.loads((dump / f"stats_{kind}.json").read_text())
        assert got["num_frames"] == want.num_frames and got["num_silent_frames"] == want.num_silent_frames
        assert got["mean"] == pytest.approx(want.mean, rel=1e-12)
        assert got["std"] == pytest.approx(want.std, rel=1e-12)
        np.testing.assert_allclose(got["mean_per_bin"], want.mean_per_bin, rtol=1e-12)
        np.testing.assert_allclose(got["std_per_bin"], want.std_per_bin, rtol=1e-12)
        assert (dump / f"log/stats_{kind}.1.log").is_file() and (dump / f"log/stats_{kind}.2.log").is_file()
    assert not (dump / "stats.json").exists()


def test_flac_is_smaller_than_wav(recipe):
    cwd, _ = recipe
    clip(cwd / "audio/a.wav", 48000, 16000, seed=0, subtype="PCM_16")
    write_set(cwd / "data/x", {"a": "audio/a.wav"})
    sizes = {}
    for fmt in ("flac", "wav"):
        res = make_raw(recipe, "--nj", "1", "--audio-format", fmt, "--stats-kinds", "", "data/x", f"dump/{fmt}")
        assert res.returncode == 0, res.stderr
        assert not list((cwd / f"dump/{fmt}").glob("stats_*.json"))
        sizes[fmt] = (cwd / f"dump/{fmt}/data/wav.1.ark").stat().st_size
    assert 96000 < sizes["wav"] < 96200  # 2 bytes a sample, a 44-byte header, key and length
    assert sizes["flac"] < sizes["wav"]


def test_make_raw_bad_audio(recipe):
    cwd, _ = recipe
    audio = cwd / "audio"
    wav = {}
    for i in range(40):  # 2 bad of 42: above the 95% a set must keep
        clip(audio / f"u{i:02d}.wav", 1600 + 800 * (i % 3), [16000, 22050, 8000][i % 3], seed=i, channels=1 + i % 2)
        wav[f"utt{i:02d}"] = f"audio/u{i:02d}.wav"
    (audio / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot audio")
    wav["utt07b"] = "audio/broken.wav"
    clip(audio / "short.wav", 399, 16000, seed=99)  # one sample short of a 25 ms window
    wav["utt12s"] = "audio/short.wav"
    write_set(cwd / "data/train", wav)
    args = ["--nj", "2", "--stats-kinds", "eat", "data/train", "dump/raw/train"]

    res = make_raw(recipe, *args)
    assert res.returncode == 1
    assert "2 of 42 utterances of data/train could not be used" in res.stderr
    assert "dump/raw/train/bad_utts" in res.stderr and "--skip-bad true" in res.stderr
    assert "failed; the last lines of dump/raw/train/log/dump." in res.stderr
    assert "utt07b" in res.stderr and "utt12s" in res.stderr  # the failed jobs' log tails name them
    bad = dict(line.split(" ", 1) for line in (cwd / "dump/raw/train/bad_utts").read_text().splitlines())
    assert sorted(bad) == ["utt07b", "utt12s"]
    assert bad["utt07b"].startswith("audio/broken.wav unreadable audio")
    assert bad["utt12s"] == "audio/short.wav too short: 399 samples give no 25 ms frame"
    assert not (cwd / "dump/raw/train/wav.scp").exists() and not (cwd / "dump/raw/train/stats_eat.json").exists()

    res = make_raw(recipe, "--skip-bad", "true", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "left out 2 of 42 utterances" in res.stdout
    assert "Succeeded dumping raw audio (flac) for data/train: 40 utterances" in res.stdout
    dump = cwd / "dump/raw/train"
    kept = sorted(u for u in wav if u not in ("utt07b", "utt12s"))
    assert [l.split()[0] for l in (dump / "wav.scp").read_text().splitlines()] == kept
    assert [l.split()[0] for l in (dump / "utt2label").read_text().splitlines()] == kept
    assert [l.split()[0] for l in (dump / "utt2dur").read_text().splitlines()] == kept
    num_samples = dict(l.split() for l in (dump / "utt2num_samples").read_text().splitlines())
    for utt in kept:
        assert int(num_samples[utt]) == load_audio(wav[utt]).numel()
    assert sorted((dump / "bad_utts").read_text().split("\n")[:2]) == sorted(
        f"{u} {bad[u]}" for u in ("utt07b", "utt12s"))
    assert json.loads((dump / "stats_eat.json").read_text())["num_frames"] > 0


def test_make_raw_from_dump_takes_a_subset(recipe):
    cwd, _ = recipe
    wav = {}
    for i in range(4):
        clip(cwd / "audio" / f"u{i}.wav", 8000, 16000, seed=i)
        wav[f"u{i}"] = f"audio/u{i}.wav"
    write_set(cwd / "data/all", wav)
    write_set(cwd / "data/part", {k: wav[k] for k in ("u1", "u3")})
    res = make_raw(recipe, "--nj", "2", "--stats-kinds", "", "data/all", "dump/raw/all")
    assert res.returncode == 0, res.stderr
    res = make_raw(recipe, "--from-dump", "dump/raw/all", "--stats-kinds", "beats", "data/part", "dump/raw/part")
    assert res.returncode == 0, res.stderr
    part, whole = cwd / "dump/raw/part", cwd / "dump/raw/all"
    assert not (part / "log/dump.1.log").exists() and not (part / "data").exists()  # nothing encoded
    whole_lines = dict(l.split(" ", 1) for l in (whole / "wav.scp").read_text().splitlines())
    assert (part / "wav.scp").read_text() == "".join(f"{u} {whole_lines[u]}" + "\n" for u in ("u1", "u3"))
    assert (part / "utt2num_samples").read_text() == "u1 8000\nu3 8000\n"
    assert (part / "utt2label").read_text() == (cwd / "data/part/utt2label").read_text()
    # the statistics are the subset's own
    acc = StatsAccumulator()
    for _, (_, x) in kaldiio.load_scp_sequential(str(part / "wav.scp")):
        acc.add(compute_fbank(torch.from_numpy(x.astype(np.float32)), "beats"))
    stats = json.loads((part / "stats_beats.json").read_text())
    assert stats["num_frames"] == acc.result().num_frames == 2 * 48
    assert stats["mean"] == pytest.approx(acc.result().mean, rel=1e-12)

    write_set(cwd / "data/other", {"u1": wav["u1"], "u9": "audio/u0.wav"})
    res = make_raw(recipe, "--from-dump", "dump/raw/all", "data/other", "dump/raw/other")
    assert res.returncode == 1 and "no audio for some utterances of data/other (e.g. u9)" in res.stderr
    res = make_raw(recipe, "--from-dump", "dump/raw/none", "data/part", "dump/raw/p2")
    assert res.returncode == 1 and "dump/raw/none/wav.scp not found" in res.stderr


def test_make_raw_usage_errors(recipe):
    res = make_raw(recipe)
    assert res.returncode == 1 and "Usage: utils/make_raw.sh" in res.stderr and "e.g.:" in res.stderr
    res = make_raw(recipe, "--audio-format", "mp3", "data/x", "dump/x")
    assert res.returncode == 1 and "--audio-format must be flac or wav, got 'mp3'" in res.stderr
    res = make_raw(recipe, "--stats-kinds", "beats mfcc", "data/x", "dump/x")
    assert res.returncode == 1 and "--stats-kinds takes beats and/or eat, got 'mfcc'" in res.stderr
    res = make_raw(recipe, "--nj", "2", "data/none", "dump/x")
    assert res.returncode == 1 and "data/none is not a valid data directory" in res.stderr


def test_to_int16_clips_and_counts():
    x = torch.tensor([0.0, 0.5, -1.0, 1.0 - Q, 1.0, -1.2, 2.0, Q * 0.49])
    pcm, num_clipped, peak = to_int16(x)
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [0, 16384, -32768, 32767, 32767, -32768, 32767, 0]
    assert num_clipped == 3 and peak == 2.0


def test_stats_accumulator_merge_equals_one_pass():
    rng = np.random.default_rng(0)
    mats = [rng.normal(m, s, (n, 5)) for m, s, n in [(0.0, 1.0, 30), (50.0, 3.0, 7), (-4.0, 0.1, 1), (1.0, 2.0, 200)]]
    mats[1][2] = -15.9424  # a frame of digital silence, left out and counted
    one = StatsAccumulator()
    for m in mats:
        one.add(m)
    a, b, empty = StatsAccumulator(), StatsAccumulator(), StatsAccumulator()
    a.add(mats[0]), a.add(mats[1])
    b.add(mats[2]), b.add(mats[3])
    merged = StatsAccumulator()
    for part in (empty, a, StatsAccumulator.from_state_dict(json.loads(json.dumps(b.state_dict())))):
        merged.merge(part)
    assert merged.count == one.count == 237 and merged.num_silent == one.num_silent == 1
    np.testing.assert_allclose(merged.mean, one.mean, rtol=1e-13)
    np.testing.assert_allclose(merged.m2, one.m2, rtol=1e-12)
    x = np.concatenate([mats[0], np.delete(mats[1], 2, axis=0), mats[2], mats[3]])
    np.testing.assert_allclose(merged.result().std_per_bin, x.std(axis=0), rtol=1e-12)


def test_shard_mb_cuts_each_job_into_arks_read_front_to_back(recipe):
    cwd, _ = recipe
    wav = {}
    for i in range(6):
        clip(cwd / f"audio/{i}.wav", 16000, 16000, seed=i, subtype="PCM_16")
        wav[f"u{i}"] = f"audio/{i}.wav"
    write_set(cwd / "data/x", wav)
    res = make_raw(recipe, "--nj", "1", "--audio-format", "wav", "--shard-mb", "0.05", "--stats-kinds", "",
                   "data/x", "dump/x")  # 32 kB a clip: a new ark every second clip
    assert res.returncode == 0, res.stderr
    arks = sorted(p.name for p in (cwd / "dump/x/data").glob("*.ark"))
    assert arks == ["wav.1.ark", "wav.1_1.ark", "wav.1_2.ark"]
    from audiossl.data.dump import Dump

    dump = Dump("dump/x", "beats", sequential=True)
    assert [len(s) for s in dump.shards()] == [2, 2, 2]
    expected = loader_samples({u: (spec, None, None) for u, spec in wav.items()})
    for utt in dump:
        np.testing.assert_allclose(dump.audio(utt).numpy(), expected[utt], atol=Q / 2 + 1e-7, rtol=0)
