"""The helpers every corpus preparation shares: audio discovery, durations, the set writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.data.corpora.common import Utterance, find_audio_files, probe_durations, write_set
from audiossl.data.datadir import read_kv, validate_data_dir


def test_find_audio_files_recurses_once_through_symlink_cycles(tmp_path: Path) -> None:
    root = tmp_path / "audio"
    (root / "a" / "b").mkdir(parents=True)
    soundfile.write(root / "a" / "b" / "x.wav", np.zeros(16), 16000)
    soundfile.write(root / "y.FLAC", np.zeros(16), 16000, format="FLAC")
    soundfile.write(root / ".hidden.wav", np.zeros(16), 16000)
    (root / "notes.txt").write_text("not audio")
    (root / "a" / "b" / "loop").symlink_to(root)  # a cycle back to the top
    assert find_audio_files(root) == [root / "a" / "b" / "x.wav", root / "y.FLAC"]
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        find_audio_files(tmp_path / "nowhere")


def test_probe_durations_reads_headers_in_threads_like_serially(tmp_path: Path) -> None:
    utts = []
    for i in range(80):  # enough to take the threaded path
        path = tmp_path / f"u{i:03d}.wav"
        sr = 8000 if i % 2 else 16000
        soundfile.write(path, np.zeros(100 + i), sr)
        utts.append(Utterance(f"u{i:03d}", path, nominal_duration=9.0))
    (tmp_path / "u005.wav").write_bytes(b"not a wav")
    soundfile.write(tmp_path / "u006.wav", np.zeros(0), 16000)  # a valid header, no samples
    threaded = probe_durations(utts, nj=4)
    assert threaded == probe_durations(utts, nj=1)
    for i, utt in enumerate(threaded):
        if i in (5, 6):
            assert utt.duration == 9.0 and utt.problem
        else:
            assert utt.duration == pytest.approx((100 + i) / (8000 if i % 2 else 16000)) and not utt.problem


def test_write_set_refuses_repeated_ids_and_clears_stale_reports(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    soundfile.write(wav, np.zeros(1600), 16000)
    utt = probe_durations([Utterance("b", wav, labels=("dog",))])[0]
    with pytest.raises(ValueError, match="utterance id 'b' used twice"):
        write_set(tmp_path / "d", [utt, utt], ["dog"])
    out = tmp_path / "data" / "set"
    write_set(out, [utt], ["cat", "dog"], missing=["c /nowhere/c.wav"])
    assert (out / "missing.txt").read_text() == "c /nowhere/c.wav\n"
    summary = write_set(out, [utt], ["cat", "dog"])
    assert not (out / "missing.txt").exists()
    assert summary.num_utts == 1 and summary.num_missing == 0
    assert read_kv(out / "utt2label") == {"b": "dog"}
    assert validate_data_dir(out) == []
