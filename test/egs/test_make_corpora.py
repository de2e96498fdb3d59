"""The corpus generators of the recipes: egs/spc2/local/make_espeak_corpus.py (spoken words in the
Speech Commands V2 layout) and egs/esc50/local/make_synth_corpus.py (synthetic environmental sounds in
the ESC-50 layout), each on a tiny corpus in tmp_path.

They check what the generators promise: the official layout, the audio format, speaker-disjoint
splits (SPC) and one fold per source recording with balanced folds (ESC), byte-identical output for a
seed whatever --nj, a finished corpus left alone, and that the project's loaders read the result.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.bin import prepare_esc50 as prepare_esc50_bin
from audiossl.bin import prepare_spc2 as prepare_spc2_bin
from audiossl.data.corpora.esc50 import prepare_esc50, read_esc50_meta
from audiossl.data.corpora.spc2 import prepare_spc2
from audiossl.data.datadir import read_kv, read_labels, validate_data_dir

REPO = Path(__file__).resolve().parents[2]
SPC_SCRIPT = REPO / "egs" / "spc2" / "local" / "make_espeak_corpus.py"
ESC_SCRIPT = REPO / "egs" / "esc50" / "local" / "make_synth_corpus.py"
SPC_WORDS = ["yes", "no", "up"]
SPC_SPEAKERS = 6
ESC_CLIPS_PER_CLASS = 2
ESC_CLASSES = 20

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not on PATH; .ci/run installs it")


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, str(script), *args], cwd=script.parents[1], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"{script.name} {' '.join(args)} failed:\n{res.stderr[-3000:]}"
    return res


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root."""
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def spc_args(out: Path, seed: int = 3, nj: int = 2, speakers: int = SPC_SPEAKERS) -> list[str]:
    return ["--words", ",".join(SPC_WORDS), "--speakers", str(speakers), "--seed", str(seed), "--nj", str(nj), str(out)]


# --------------------------------------------------------------------------------------- Speech Commands


@pytest.fixture(scope="module")
def spc_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spc") / "speech_commands_v0.02"
    run(SPC_SCRIPT, *spc_args(out))
    return out


def speaker_of(rel: str) -> str:
    return Path(rel).name.split("_nohash_")[0]


def test_spc_split_rule_gives_every_split_a_speaker():
    module = load_script(SPC_SCRIPT)
    for num in range(3, 12):
        ids = [hashlib.sha1(f"s{num}/{i}".encode()).hexdigest()[:8] for i in range(num)]
        split = module.assign_splits(ids)
        assert set(split) == set(ids)
        assert set(split.values()) == {"train", "valid", "test"}, num
    many = [hashlib.sha1(f"many/{i}".encode()).hexdigest()[:8] for i in range(2000)]
    shares = Counter(module.assign_splits(many).values())
    assert 0.75 < shares["train"] / 2000 < 0.85
    assert 0.07 < shares["valid"] / 2000 < 0.13 and 0.07 < shares["test"] / 2000 < 0.13
    with pytest.raises(ValueError):
        module.assign_splits(many[:2])


@needs_espeak
def test_spc_layout_and_audio(spc_corpus: Path):
    words = sorted(p.name for p in spc_corpus.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert words == sorted(SPC_WORDS)
    speakers = None
    for word in words:
        names = sorted(p.name for p in (spc_corpus / word).iterdir())
        assert len(names) == SPC_SPEAKERS
        assert all(re.fullmatch(r"[0-9a-f]{8}_nohash_0\.wav", n) for n in names), names
        ids = {speaker_of(n) for n in names}
        assert speakers is None or ids == speakers  # every speaker says every word
        speakers = ids
        for name in names:
            info = sf.info(spc_corpus / word / name)
            assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 16000, 1, "PCM_16")
            x, _ = sf.read(spc_corpus / word / name)
            assert 0.05 < np.abs(x).max() <= 1.0 and np.std(x) > 1e-3
    noise = sorted((spc_corpus / "_background_noise_").glob("*.wav"))
    assert len(noise) >= 6
    for path in noise:
        info = sf.info(path)
        assert info.samplerate == 16000 and info.channels == 1 and info.frames >= 30 * 16000
    # every speaker's clips sound different: the clips of two speakers are not the same word recording
    assert len({digest(p) for p in spc_corpus.glob("*/*.wav")}) == len(list(spc_corpus.glob("*/*.wav")))


@needs_espeak
def test_spc_split_lists_are_sorted_and_speaker_disjoint(spc_corpus: Path):
    lists = {}
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = (spc_corpus / name).read_text().splitlines()
        assert lines == sorted(lines) and lines, name
        assert all(re.fullmatch(r"[a-z]+/[0-9a-f]{8}_nohash_\d+\.wav", line) for line in lines)
        assert all((spc_corpus / line).is_file() for line in lines)
        lists[name] = lines
    everything = [f"{p.parent.name}/{p.name}" for p in spc_corpus.glob("*/*.wav") if not p.parent.name.startswith("_")]
    train = set(everything) - set(lists["validation_list.txt"]) - set(lists["testing_list.txt"])
    groups = {"train": train, "valid": set(lists["validation_list.txt"]), "test": set(lists["testing_list.txt"])}
    spk = {name: {speaker_of(rel) for rel in rels} for name, rels in groups.items()}
    assert all(spk.values()), spk
    assert not (spk["train"] & spk["valid"]) and not (spk["train"] & spk["test"]) and not (spk["valid"] & spk["test"])
    for name, rels in groups.items():  # a speaker's every clip is in its split
        assert len(rels) == len(spk[name]) * len(SPC_WORDS)


@needs_espeak
def test_spc_loader_reads_it(spc_corpus: Path, tmp_path: Path):
    report = prepare_spc2(spc_corpus, tmp_path / "data", nj=2)
    assert report.words == sorted(SPC_WORDS) and not report.missing
    n_valid = len((spc_corpus / "validation_list.txt").read_text().split())
    n_test = len((spc_corpus / "testing_list.txt").read_text().split())
    sizes = {name: s.num_utts for name, s in report.sets.items()}
    total = len(SPC_WORDS) * SPC_SPEAKERS
    assert sizes == {"train": total - n_valid - n_test, "valid": n_valid, "test": n_test, "background_noise": 6}
    for split in ("train", "valid", "test"):
        validate_data_dir(tmp_path / "data" / split)
        durations = read_kv(tmp_path / "data" / split / "utt2dur")
        assert all(abs(float(d) - 1.0) < 1e-6 for d in durations.values())
        labels = read_kv(tmp_path / "data" / split / "utt2label")
        assert all(utt.split("_")[0] == label for utt, label in labels.items())
    assert read_labels(tmp_path / "data" / "labels.txt")[0] == sorted(SPC_WORDS)
    assert prepare_spc2_bin.main(["--spc2-root", str(spc_corpus), "--nj", "1", str(tmp_path / "data2")]) == 0


@needs_espeak
def test_spc_rerun_is_a_no_op(spc_corpus: Path):
    before = {p: p.stat().st_mtime_ns for p in spc_corpus.rglob("*")}
    res = run(SPC_SCRIPT, *spc_args(spc_corpus))
    assert "already made" in res.stderr
    assert {p: p.stat().st_mtime_ns for p in spc_corpus.rglob("*")} == before


@needs_espeak
def test_spc_is_deterministic_whatever_nj_and_resumes(spc_corpus: Path, tmp_path: Path):
    again = tmp_path / "again"
    run(SPC_SCRIPT, *spc_args(again, nj=1))
    assert tree(again) == tree(spc_corpus)
    # an interrupted run (no .done, a clip missing) is finished with the same bytes
    victim = sorted(again.glob("yes/*.wav"))[0]
    victim.unlink()
    (again / ".done").unlink()
    (again / "testing_list.txt").unlink()
    run(SPC_SCRIPT, *spc_args(again, nj=2))
    assert tree(again) == tree(spc_corpus)
    # other options on an unfinished dir are refused
    (again / ".done").unlink()
    res = subprocess.run([sys.executable, str(SPC_SCRIPT), *spc_args(again, seed=4)], capture_output=True, text=True)
    assert res.returncode == 1 and "other options" in res.stderr
    # another seed: other speakers, other audio
    other = tmp_path / "other"
    run(SPC_SCRIPT, *spc_args(other, seed=4, speakers=3))
    ours, theirs = tree(spc_corpus), tree(other)
    clips = lambda t: {k: v for k, v in t.items() if k.endswith(".wav") and not k.startswith("_")}
    assert not set(clips(ours)) & set(clips(theirs))
    assert not set(clips(ours).values()) & set(clips(theirs).values())


@needs_espeak
def test_spc_language_de_has_german_voices_and_words(tmp_path: Path):
    module = load_script(SPC_SCRIPT)
    dialects, _ = module.available_voices(module.LANGUAGES["de"][0])
    if not dialects:
        pytest.skip("this espeak-ng has no German voice")
    out = tmp_path / "de"
    run(SPC_SCRIPT, "--language", "de", "--words", "null,eins", "--speakers", "3", "--seed", "3", str(out))
    options = (out / ".options").read_text()
    assert '"dialects": ["de"]' in options
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["_background_noise_", "eins", "null"]
    # the same words and seed in English: other voices, so other speakers and other audio
    en = tmp_path / "en"
    run(SPC_SCRIPT, "--words", "null,eins", "--speakers", "3", "--seed", "3", str(en))
    de_clips = {p.name for p in out.glob("null/*.wav")}
    assert len(de_clips) == 3 and not de_clips & {p.name for p in en.glob("null/*.wav")}
    # without --words, --language de brings its own 35 words
    assert len(module.LANGUAGES["de"][1]) == 35 and not set(module.LANGUAGES["de"][1]) & {"yes", "no", "up"}


# --------------------------------------------------------------------------------------- ESC-50


@pytest.fixture(scope="module")
def esc_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("esc") / "ESC-50-master"
    run(ESC_SCRIPT, "--clips-per-class", str(ESC_CLIPS_PER_CLASS), "--seed", "3", "--nj", "2", str(out))
    return out


def read_rows(root: Path) -> list[dict]:
    with open(root / "meta" / "esc50.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_esc_plan_default_size_is_balanced():
    module = load_script(ESC_SCRIPT)
    rows = module.plan(40, 1)
    assert len(rows) == 800 and [r["filename"] for r in rows] == sorted(r["filename"] for r in rows)
    assert Counter(r["fold"] for r in rows) == {k: 160 for k in range(1, 6)}
    assert Counter((r["target"], r["fold"]) for r in rows) == {(t, k): 8 for t in range(ESC_CLASSES) for k in range(1, 6)}
    sources = defaultdict(list)
    for r in rows:
        sources[r["src_file"]].append(r)
    for src, takes in sources.items():
        assert re.fullmatch(r"[1-9]\d{5}", src)
        assert 3 <= len(takes) <= 5
        assert len({(r["fold"], r["target"]) for r in takes}) == 1
        assert sorted(r["take"] for r in takes) == [chr(ord("A") + i) for i in range(len(takes))]
    odd = module.plan(7, 2)  # 7 = 5 + 2: the two extra clips of a class go to different folds per class
    assert Counter(r["fold"] for r in odd) == {k: 28 for k in range(1, 6)}
    assert all(v in (1, 2) for v in Counter((r["target"], r["fold"]) for r in odd).values())


def test_esc_layout_and_audio(esc_corpus: Path):
    header = (esc_corpus / "meta" / "esc50.csv").read_text().splitlines()[0]
    assert header == "filename,fold,target,category,esc10,src_file,take"
    rows = read_rows(esc_corpus)
    assert len(rows) == ESC_CLIPS_PER_CLASS * ESC_CLASSES
    assert sorted(p.name for p in (esc_corpus / "audio").iterdir()) == sorted(r["filename"] for r in rows)
    categories = {}
    for r in rows:
        assert r["filename"] == f"{r['fold']}-{r['src_file']}-{r['take']}-{r['target']}.wav"
        assert re.fullmatch(r"[1-9]\d{5}", r["src_file"]) and re.fullmatch(r"[A-Z]", r["take"])
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", r["category"]) and r["esc10"] in ("True", "False")
        assert categories.setdefault(int(r["target"]), (r["category"], r["esc10"])) == (r["category"], r["esc10"])
    assert sorted(categories) == list(range(ESC_CLASSES))
    assert len({c for c, _ in categories.values()}) == ESC_CLASSES
    assert sum(e == "True" for _, e in categories.values()) == 10
    assert Counter(r["fold"] for r in rows) == {str(k): len(rows) // 5 for k in range(1, 6)}
    folds_of = defaultdict(set)
    for r in rows:
        folds_of[r["src_file"]].add(r["fold"])
    assert all(len(f) == 1 for f in folds_of.values())
    padded = 0
    for r in rows:
        path = esc_corpus / "audio" / r["filename"]
        info = sf.info(path)
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (44100, 220500, 1, "PCM_16")
        x, _ = sf.read(path)
        assert 0.1 < np.abs(x).max() <= 1.0 and np.std(x[:44100]) > 0
        padded += bool(np.all(x[-4410:] == 0))
    assert 0 < padded < len(rows)  # some clips are shorter events padded with digital silence, most not


def test_esc_loader_reads_it(esc_corpus: Path, tmp_path: Path):
    clips = read_esc50_meta(esc_corpus / "meta" / "esc50.csv")
    assert len(clips) == ESC_CLIPS_PER_CLASS * ESC_CLASSES
    report = prepare_esc50(esc_corpus, tmp_path / "data", nj=2)
    module = load_script(ESC_SCRIPT)
    assert report.categories == [c[0] for c in module.CLASSES] and report.num_missing == 0
    n = len(clips)
    assert report.sets["all"].num_utts == n
    for k in range(1, 6):
        assert report.sets[f"fold{k}/test"].num_utts == n // 5
        assert report.sets[f"fold{k}/train"].num_utts == n - n // 5
        validate_data_dir(tmp_path / "data" / f"fold{k}" / "test")
    durations = read_kv(tmp_path / "data" / "all" / "utt2dur")
    assert all(abs(float(d) - 5.0) < 1e-6 for d in durations.values())
    assert prepare_esc50_bin.main(["--esc50-root", str(esc_corpus), "--nj", "1", str(tmp_path / "data2")]) == 0


def test_esc_rerun_is_a_no_op(esc_corpus: Path):
    before = {p: p.stat().st_mtime_ns for p in esc_corpus.rglob("*")}
    res = run(ESC_SCRIPT, "--clips-per-class", str(ESC_CLIPS_PER_CLASS), "--seed", "3", str(esc_corpus))
    assert "already made" in res.stderr
    assert {p: p.stat().st_mtime_ns for p in esc_corpus.rglob("*")} == before


def test_esc_is_deterministic(esc_corpus: Path, tmp_path: Path):
    """A clip written in this process is byte-identical to the one a worker of the --nj 2 run wrote;
    another seed gives other audio; the plan is a function of the seed."""
    module = load_script(ESC_SCRIPT)
    rows = read_rows(esc_corpus)
    assert [r["filename"] for r in module.plan(ESC_CLIPS_PER_CLASS, 3)] == [r["filename"] for r in rows]
    assert [r["filename"] for r in module.plan(ESC_CLIPS_PER_CLASS, 4)] != [r["filename"] for r in rows]
    for r in rows[:: len(rows) // 4]:
        target, src, take = int(r["target"]), r["src_file"], r["take"]
        mine = tmp_path / r["filename"]
        module.write_wav(mine, module.make_clip(target, src, take, 3))
        assert digest(mine) == digest(esc_corpus / "audio" / r["filename"]), r["filename"]
        assert not np.array_equal(module.make_clip(target, src, take, 3), module.make_clip(target, src, take, 4))
        other_take = chr(ord(take) + 1)  # the same source, another take: shares parameters, not samples
        assert not np.array_equal(module.make_clip(target, src, take, 3), module.make_clip(target, src, other_take, 3))
