"""Speech Commands V2 data preparation on a tiny corpus in the official layout, written into tmp_path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.data.corpora.spc2 import prepare_spc2
from audiossl.data.datadir import read_kv, read_labels, validate_data_dir

SR = 16000
WORDS = ["yes", "no", "up", "backward"]
SPEAKERS = ["0a7c2a8d", "bb05582b", "c1d39ce8"]
VALID = ["no/bb05582b_nohash_0.wav", "yes/0a7c2a8d_nohash_1.wav"]
TEST = ["up/c1d39ce8_nohash_0.wav", "backward/0a7c2a8d_nohash_0.wav", "yes/ffffffff_nohash_9.wav"]  # last: no file


@pytest.fixture
def spc2_root(tmp_path: Path) -> Path:
    root = tmp_path / "speech_commands_v0.02"
    for w, word in enumerate(WORDS):
        (root / word).mkdir(parents=True)
        for s, speaker in enumerate(SPEAKERS):
            for n in range(2):
                samples = 800 + 10 * (w * 6 + s * 2 + n)  # lengths differ, so utt2dur is checked
                soundfile.write(root / word / f"{speaker}_nohash_{n}.wav", np.full(samples, 0.01), SR)
    noise = root / "_background_noise_"
    noise.mkdir()
    soundfile.write(noise / "white_noise.wav", np.full(4000, 0.01), SR)
    soundfile.write(noise / "running_tap.wav", np.full(3000, 0.01), SR)
    (noise / "README.md").write_text("noise files")
    (root / "LICENSE").write_text("CC-BY-4.0")
    (root / "validation_list.txt").write_text("\n".join(VALID) + "\n")
    (root / "testing_list.txt").write_text("\n".join(TEST) + "\n")
    return root


def utt_of(entry: str) -> str:
    word, name = entry.split("/")
    return f"{word}_{Path(name).stem}"


def c_sorted(path: Path) -> bool:
    return subprocess.run(["sort", "-c", "-k1,1", str(path)], env={**os.environ, "LC_ALL": "C"}).returncode == 0


def test_splits_follow_the_lists_exactly(spc2_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = prepare_spc2(spc2_root, out, nj=2)
    every = {f"{word}/{sp}_nohash_{n}.wav" for word in WORDS for sp in SPEAKERS for n in range(2)}
    valid, test = set(read_kv(out / "valid" / "wav.scp")), set(read_kv(out / "test" / "wav.scp"))
    train = set(read_kv(out / "train" / "wav.scp"))
    assert valid == {utt_of(e) for e in VALID}
    assert test == {utt_of(e) for e in TEST if e in every}
    assert train == {utt_of(e) for e in every - set(VALID) - set(TEST)}
    assert read_kv(out / "test" / "wav.scp")["up_c1d39ce8_nohash_0"] == str(spc2_root / "up" / "c1d39ce8_nohash_0.wav")
    utt2label = read_kv(out / "train" / "utt2label")
    assert all(label == utt.split("_")[0] for utt, label in utt2label.items())
    seconds = float(read_kv(out / "train" / "utt2dur")["backward_0a7c2a8d_nohash_1"])
    assert seconds == pytest.approx((800 + 10 * 19) / SR, abs=1e-3)  # word 3, speaker 0, take 1
    assert report.words == sorted(WORDS) == read_labels(out / "labels.txt")[0] == read_labels(out / "test" / "labels.txt")[0]
    for split in ("train", "valid", "test"):
        assert validate_data_dir(out / split) == []
        for name in ("wav.scp", "utt2label", "utt2dur"):
            assert c_sorted(out / split / name)


def test_background_noise_is_excluded_and_listed(spc2_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    prepare_spc2(spc2_root, out)
    noise = read_kv(out / "background_noise" / "wav.scp")
    assert noise == {
        "running_tap": str(spc2_root / "_background_noise_" / "running_tap.wav"),
        "white_noise": str(spc2_root / "_background_noise_" / "white_noise.wav"),
    }
    assert float(read_kv(out / "background_noise" / "utt2dur")["white_noise"]) == pytest.approx(0.25, abs=1e-3)
    assert not (out / "background_noise" / "utt2label").exists()
    assert validate_data_dir(out / "background_noise", labels=False) == []
    for split in ("train", "valid", "test"):
        wav = read_kv(out / split / "wav.scp")
        assert not any(Path(p).parent.name == "_background_noise_" for p in wav.values())
        assert not {"running_tap", "white_noise"} & set(wav)
    assert "_background_noise_" not in read_labels(out / "labels.txt")[0]


def test_a_listed_file_that_is_missing_is_reported(spc2_root: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "data"
    report = prepare_spc2(spc2_root, out)
    listing = spc2_root / "testing_list.txt"
    assert report.missing == [f"{listing}:3: yes/ffffffff_nohash_9.wav"]
    assert f"{listing}:3" in caplog.text
    assert (out / "test" / "missing.txt").read_text().split()[0] == "yes/ffffffff_nohash_9.wav"
    assert report.sets["test"].num_missing == 1 and report.sets["valid"].num_missing == 0


def test_a_corrupt_wav_is_indexed_not_fatal(spc2_root: Path, tmp_path: Path) -> None:
    corrupt = spc2_root / "no" / "c1d39ce8_nohash_1.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt broken")
    out = tmp_path / "data"
    report = prepare_spc2(spc2_root, out)
    assert read_kv(out / "train" / "wav.scp")["no_c1d39ce8_nohash_1"] == str(corrupt)
    assert float(read_kv(out / "train" / "utt2dur")["no_c1d39ce8_nohash_1"]) == 1.0
    assert report.sets["train"].num_unreadable == 1
    assert (out / "train" / "unreadable.txt").read_text().startswith(f"no_c1d39ce8_nohash_1 {corrupt} ")


def test_an_entry_on_both_lists_is_an_error(spc2_root: Path, tmp_path: Path) -> None:
    (spc2_root / "testing_list.txt").write_text("\n".join([*TEST, VALID[1]]) + "\n")
    with pytest.raises(ValueError, match=rf"testing_list.txt:4: {VALID[1]} is also on .*validation_list.txt:2"):
        prepare_spc2(spc2_root, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_cli(spc2_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = subprocess.run(
        [sys.executable, "-m", "audiossl.bin.prepare_spc2", "--spc2-root", str(spc2_root), "--nj", "1", str(out)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "1 listed files missing" in run.stderr
    assert set(read_kv(out / "valid" / "wav.scp")) == {utt_of(e) for e in VALID}


def run_data_sh(recipe: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run egs/<recipe>/local/data.sh from a recipe-like directory (utils/ and local/ linked in)."""
    repo = Path(__file__).resolve().parents[2]
    workdir.mkdir()
    (workdir / "utils").symlink_to(repo / "utils")
    (workdir / "local").symlink_to(repo / "egs" / recipe / "local")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "LC_ALL": "C"}
    return subprocess.run(["bash", "local/data.sh", *args], cwd=workdir, env=env, capture_output=True, text=True)


def test_data_sh(spc2_root: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    run = run_data_sh("spc2", recipe, "--spc2-root", str(spc2_root), "--nj", "1", "data")
    assert run.returncode == 0, run.stderr
    assert set(read_kv(recipe / "data" / "valid" / "wav.scp")) == {utt_of(e) for e in VALID}
    assert set(read_kv(recipe / "data" / "background_noise" / "wav.scp")) == {"running_tap", "white_noise"}
