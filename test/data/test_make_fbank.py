"""utils/make_fbank.sh end to end: split, run.pl jobs, merge, filtered copies, stats, bad audio."""
import json
import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from audiossl.data.audio import load_audio
from audiossl.data.datadir import write_kv, write_labels
from audiossl.data.fbank import compute_fbank

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def recipe(tmp_path):
    """A recipe-like working directory: utils/ linked in, the test's Python first on PATH."""
    (tmp_path / "utils").symlink_to(REPO / "utils")
    (tmp_path / "audio").mkdir()
    env = dict(os.environ, LC_ALL="C", OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return tmp_path, env


def make_fbank(recipe, *args):
    cwd, env = recipe
    return subprocess.run(["utils/make_fbank.sh", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def clip(path: Path, num_samples: int, sample_rate: int, seed: int, channels: int = 1) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t)[:, None] + 0.05 * rng.standard_normal((num_samples, channels))
    sf.write(path, x.astype(np.float32), sample_rate)


def write_set(root: Path, wav: dict[str, str], labels: list[str], segments: dict | None = None) -> None:
    """wav.scp (and segments), alternating labels, utt2dur, labels.txt with display names."""
    write_kv(root / "wav.scp", wav)
    if segments is not None:
        write_kv(root / "segments", {k: f"{r} {s:g} {e:g}" for k, (r, s, e) in segments.items()})
    utts = sorted(segments if segments is not None else wav)
    write_kv(root / "utt2label", {u: labels[i % len(labels)] for i, u in enumerate(utts)})
    write_kv(root / "utt2dur", {u: "0.5" for u in utts})
    write_labels(root / "labels.txt", labels, [f"The {x}" for x in labels])


def test_make_fbank_nj2_with_segments(recipe):
    cwd, _ = recipe
    audio = cwd / "audio"
    wav = {}
    for i in range(3):
        clip(audio / f"u{i}.wav", 16000 + 480 * i, 16000, seed=i)
        wav[f"r{i}"] = f"audio/u{i}.wav"
    clip(audio / "s.flac", 44100, 44100, seed=7, channels=2)
    wav["r3"] = "audio/s.flac"
    wav["r4"] = "cat audio/u1.wav |"
    # Two segments per recording: a recording's segments may land in both parts of the split.
    segments = {f"r{i}-{j}": (f"r{i}", 0.5 * j, 0.5 * j + 0.45 + 0.05 * i) for i in range(5) for j in range(2)}
    write_set(cwd / "data/train", wav, ["cat", "dog"], segments)

    res = make_fbank(recipe, "--nj", "2", "--kind", "beats", "data/train", "dump/fbank_beats/train")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Succeeded creating fbank for data/train: 10 utterances" in res.stdout
    dump = cwd / "dump/fbank_beats/train"
    assert (dump / "log/fbank.1.log").is_file() and (dump / "log/fbank.2.log").is_file()
    assert (cwd / "data/train/split2/2/segments").is_file()

    keys = [line.split()[0] for line in (dump / "feats.scp").read_text().splitlines()]
    assert keys == sorted(segments)
    old_cwd = os.getcwd()
    os.chdir(cwd)  # feats.scp names the arks relative to the recipe directory
    try:
        feats = dict(kaldiio.load_scp("dump/fbank_beats/train/feats.scp"))
        direct = {seg: compute_fbank(load_audio(wav[rec], start, end), "beats").numpy()
                  for seg, (rec, start, end) in segments.items()}
    finally:
        os.chdir(old_cwd)
    for seg in segments:
        np.testing.assert_array_equal(feats[seg], direct[seg])
    assert (dump / "utt2num_frames").read_text() == "".join(f"{u} {direct[u].shape[0]}\n" for u in keys)

    stats = json.loads((dump / "stats.json").read_text())
    x = np.concatenate([direct[u] for u in keys]).astype(np.float64)
    assert stats["num_frames"] == x.shape[0]
    assert stats["mean"] == pytest.approx(x.mean(), rel=1e-9)
    assert stats["std"] == pytest.approx(x.std(), rel=1e-9)
    np.testing.assert_allclose(stats["mean_per_bin"], x.mean(axis=0), rtol=1e-9)

    for f in ("utt2label", "utt2dur", "labels.txt"):
        assert (dump / f).read_text() == (cwd / "data/train" / f).read_text()
    assert (dump / "bad_utts").read_text() == ""


def test_make_fbank_bad_audio(recipe):
    cwd, _ = recipe
    audio = cwd / "audio"
    wav = {}
    for i in range(40):  # 2 bad of 42: above the 95% a set must keep
        clip(audio / f"u{i:02d}.wav", 1600, 16000, seed=i)
        wav[f"utt{i:02d}"] = f"audio/u{i:02d}.wav"
    (audio / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot audio")
    wav["utt07b"] = "audio/broken.wav"
    # finite float samples whose power spectrum overflows float32: the features are not finite
    huge = (1e30 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32)
    sf.write(audio / "nan.wav", huge, 16000, subtype="FLOAT")
    wav["utt12n"] = "audio/nan.wav"
    write_set(cwd / "data/train", wav, ["cat", "dog"])
    args = ["--nj", "2", "--kind", "eat", "data/train", "dump/fbank_eat/train"]

    res = make_fbank(recipe, *args)
    assert res.returncode == 1
    assert "2 of 42 utterances of data/train could not be used" in res.stderr
    assert "dump/fbank_eat/train/bad_utts" in res.stderr and "--skip-bad true" in res.stderr
    assert "failed; the last lines of dump/fbank_eat/train/log/fbank." in res.stderr
    bad = dict(line.split(" ", 1) for line in (cwd / "dump/fbank_eat/train/bad_utts").read_text().splitlines())
    assert bad["utt07b"].startswith("audio/broken.wav ")
    assert bad["utt12n"].startswith("audio/nan.wav non-finite features:") and "(0 non-finite audio samples)" in bad["utt12n"]
    assert not (cwd / "dump/fbank_eat/train/stats.json").exists()

    res = make_fbank(recipe, "--skip-bad", "true", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "left out 2 of 42 utterances" in res.stdout
    assert "Succeeded creating fbank for data/train: 40 utterances" in res.stdout
    dump = cwd / "dump/fbank_eat/train"
    kept = [line.split()[0] for line in (dump / "feats.scp").read_text().splitlines()]
    assert kept == sorted(u for u in wav if u not in ("utt07b", "utt12n"))
    assert [line.split()[0] for line in (dump / "utt2label").read_text().splitlines()] == kept
    assert [line.split()[0] for line in (dump / "utt2dur").read_text().splitlines()] == kept
    assert json.loads((dump / "stats.json").read_text())["num_frames"] == 40 * 8  # 1600 samples -> 8 frames


def test_make_fbank_under_95_percent_fails(recipe):
    cwd, _ = recipe
    clip(cwd / "audio/a.wav", 1600, 16000, seed=0)
    write_kv(cwd / "data/x/wav.scp", {"a": "audio/a.wav", "b": "audio/missing.wav"})
    res = make_fbank(recipe, "--nj", "1", "--skip-bad", "true", "data/x", "dump/x")
    assert res.returncode == 1
    assert "only 1 of 2 utterances of data/x were extracted (under 95%)" in res.stderr
    assert (cwd / "dump/x/bad_utts").read_text().startswith("b audio/missing.wav no such file")


def test_make_fbank_usage_errors(recipe):
    res = make_fbank(recipe, "data/only-one-arg")
    assert res.returncode == 1 and "Usage: utils/make_fbank.sh" in res.stderr
    res = make_fbank(recipe, "--kind", "mfcc", "data/x", "dump/x")
    assert res.returncode == 1 and "--kind must be beats or eat" in res.stderr
    res = make_fbank(recipe, "--nj", "2", "data/none", "dump/x")
    assert res.returncode == 1 and "data/none is not a valid data directory" in res.stderr



def test_make_fbank_from_dump_takes_a_subset(recipe, monkeypatch):
    """--from-dump: a set's features are the lines of a superset's dump; nothing is extracted."""
    cwd, _ = recipe
    monkeypatch.chdir(cwd)  # scp paths are relative to the recipe dir
    wav = {}
    for i in range(4):
        clip(cwd / "audio" / f"u{i}.wav", 8000, 16000, seed=i)
        wav[f"u{i}"] = f"audio/u{i}.wav"
    write_set(cwd / "data" / "all", wav, ["cat", "dog"])
    write_set(cwd / "data" / "part", {k: wav[k] for k in ("u1", "u3")}, ["cat", "dog"])
    res = make_fbank(recipe, "--nj", "2", "data/all", "dump/all")
    assert res.returncode == 0, res.stderr
    res = make_fbank(recipe, "--from-dump", "dump/all", "data/part", "dump/part")
    assert res.returncode == 0, res.stderr
    part = cwd / "dump" / "part"
    assert not (part / "log" / "fbank.1.log").exists()  # no extraction job ran
    lines = (part / "feats.scp").read_text().splitlines()
    assert [l.split()[0] for l in lines] == ["u1", "u3"]
    assert all("dump/all/data/feats." in l for l in lines)  # the superset's arks
    whole = kaldiio.load_scp(str(cwd / "dump" / "all" / "feats.scp"))
    for utt, mat in kaldiio.load_scp_sequential(str(part / "feats.scp")):
        np.testing.assert_array_equal(mat, whole[utt])
    assert (part / "utt2label").read_text() == (cwd / "data" / "part" / "utt2label").read_text()  # the set's own labels
    assert (part / "utt2num_frames").read_text().split()[::2] == ["u1", "u3"]
    stats = json.loads((part / "stats.json").read_text())
    assert stats["num_frames"] == sum(whole[u].shape[0] for u in ("u1", "u3"))

    # a set with an utterance the superset lacks is refused, naming it
    write_set(cwd / "data" / "other", {"u1": wav["u1"], "u9": "audio/u0.wav"}, ["cat", "dog"])
    res = make_fbank(recipe, "--from-dump", "dump/all", "data/other", "dump/other")
    assert res.returncode == 1 and "no features for some utterances of data/other (e.g. u9)" in res.stderr
    res = make_fbank(recipe, "--from-dump", "dump/none", "data/part", "dump/p2")
    assert res.returncode == 1 and "dump/none/feats.scp not found" in res.stderr


def test_compute_stats_refuses_non_finite_features(tmp_path):
    good = np.random.default_rng(0).normal(-5.0, 2.0, (20, 4)).astype(np.float32)
    bad = good.copy()
    bad[3, 1] = np.inf
    bad[5, 2] = np.nan
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/feats.ark,{tmp_path}/feats.scp") as w:
        w["a"], w["b"], w["c"] = good, bad, good + 1.0
    cmd = [sys.executable, "-m", "audiossl.bin.compute_stats"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([*cmd, str(tmp_path / "feats.scp"), str(tmp_path / "stats.json")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1
    assert "utterance b has 2 NaN/inf values of 80" in res.stderr and "no statistics written" in res.stderr
    assert not (tmp_path / "stats.json").exists()

    res = subprocess.run([*cmd, "--skip-bad", "true", str(tmp_path / "feats.scp"), str(tmp_path / "stats.json")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())  # valid JSON: no NaN in it
    both = np.concatenate([good, good + 1.0]).astype(np.float64)
    assert stats["num_frames"] == 40 and stats["mean"] == pytest.approx(both.mean(), abs=1e-6)
    assert "(1 with NaN/inf left out)" in res.stderr
