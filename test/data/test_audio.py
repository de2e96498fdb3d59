"""Audio loading: formats, resampling, channels, pipes, segments, and errors naming the path."""
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from audiossl.data.audio import AudioError, iter_utterances, load_audio
from audiossl.data.datadir import write_kv


def tone(num_samples: int, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A sine plus a little noise, (num_samples, channels), distinct per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    cols = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.01 * rng.standard_normal(num_samples) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def written(path, samples, sample_rate) -> np.ndarray:
    """Write, then read back what the file really holds (PCM/FLAC quantised), as float32."""
    sf.write(path, samples, sample_rate)
    return sf.read(path, dtype="float32", always_2d=True)[0]


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_16k_file_is_read_as_is(tmp_path, ext):
    ref = written(tmp_path / f"a.{ext}", tone(8000, 16000), 16000)
    wav = load_audio(str(tmp_path / f"a.{ext}"))
    assert wav.dtype == torch.float32 and wav.shape == (8000,)
    assert torch.equal(wav, torch.from_numpy(ref[:, 0]))


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_44k1_file_is_resampled(tmp_path, ext):
    ref = written(tmp_path / f"a.{ext}", tone(22050, 44100), 44100)  # 0.5 s
    wav = load_audio(str(tmp_path / f"a.{ext}"))
    assert wav.shape == (8000,)  # 0.5 s at 16 kHz
    expected = torchaudio.functional.resample(torch.from_numpy(ref[:, 0]), 44100, 16000)
    torch.testing.assert_close(wav, expected)
    assert load_audio(str(tmp_path / f"a.{ext}"), target_sr=8000).shape == (4000,)


def test_stereo_is_averaged(tmp_path):
    ref = written(tmp_path / "st.wav", tone(4000, 16000, channels=2), 16000)
    wav = load_audio(str(tmp_path / "st.wav"))
    torch.testing.assert_close(wav, torch.from_numpy(ref.mean(axis=1)))
    assert not torch.allclose(wav, torch.from_numpy(ref[:, 0]))


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_sox_pipe_equals_file(tmp_path):
    ref = written(tmp_path / "a.flac", tone(16000, 16000, channels=2), 16000)
    wav = load_audio(f"sox {tmp_path / 'a.flac'} -t wav - |")
    torch.testing.assert_close(wav, torch.from_numpy(ref.mean(axis=1)), atol=1e-4, rtol=0)
    assert wav.shape == (16000,)


def test_cat_pipe_and_segment_cut(tmp_path):
    ref = written(tmp_path / "a.wav", tone(16000, 16000), 16000)[:, 0]
    piped = load_audio(f"cat {tmp_path / 'a.wav'} |")
    assert torch.equal(piped, torch.from_numpy(ref))
    expected = torch.from_numpy(ref[4000:12000])  # 0.25 s .. 0.75 s
    assert torch.equal(load_audio(str(tmp_path / "a.wav"), start=0.25, end=0.75), expected)
    assert torch.equal(load_audio(f"cat {tmp_path / 'a.wav'} |", start=0.25, end=0.75), expected)


def test_segment_at_44k1_is_cut_then_resampled(tmp_path):
    ref = written(tmp_path / "a.wav", tone(44100, 44100), 44100)[:, 0]
    wav = load_audio(str(tmp_path / "a.wav"), start=0.5, end=1.0)
    expected = torchaudio.functional.resample(torch.from_numpy(ref[22050:44100]), 44100, 16000)
    assert wav.shape == (8000,)
    torch.testing.assert_close(wav, expected)


def test_segment_overshoot(tmp_path):
    written(tmp_path / "a.wav", tone(16000, 16000), 16000)
    assert load_audio(str(tmp_path / "a.wav"), start=0.5, end=1.3).shape == (8000,)  # clipped at 1 s
    with pytest.raises(AudioError, match=r"a\.wav: segment 0.5-2 s ends past the recording"):
        load_audio(str(tmp_path / "a.wav"), start=0.5, end=2.0)


def test_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError) as e:
        load_audio(str(missing))
    assert e.value.path == str(missing) and "no such file" in str(e.value)

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not a wave file")
    with pytest.raises(AudioError) as e:
        load_audio(str(corrupt))
    assert str(e.value).startswith(f"{corrupt}: unreadable audio")

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty audio"):
        load_audio(str(empty))


def test_failing_pipe_reports_its_stderr(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as e:
        load_audio(f"cat {missing} |")
    assert e.value.path == f"cat {missing}"
    assert "exit code 1" in e.value.reason and "No such file" in e.value.reason
    # A failure early in a pipeline is caught too (pipefail).
    with pytest.raises(AudioError, match="exit code"):
        load_audio(f"cat {missing} | cat |")


def test_iter_utterances_reads_each_recording_once(tmp_path):
    ref1 = written(tmp_path / "r1.wav", tone(16000, 16000, seed=1), 16000)[:, 0]
    ref2 = written(tmp_path / "r2.wav", tone(16000, 16000, seed=2), 16000)[:, 0]
    count = tmp_path / "count"
    data = tmp_path / "data"
    write_kv(data / "wav.scp", {
        "r1": f"echo r1 >> {count}; cat {tmp_path / 'r1.wav'} |",
        "r2": f"echo r2 >> {count}; cat {tmp_path / 'r2.wav'} |",
        "r3": str(tmp_path / "missing.wav"),
    })
    write_kv(data / "segments", {
        "r1-a": "r1 0 0.5", "r1-b": "r1 0.5 1", "r2-a": "r2 0.25 0.5", "r2-b": "r2 0 1",
        "r3-a": "r3 0 1", "r3-b": "r3 1 2",
    })
    errors = []
    out = dict(iter_utterances(data, on_error=lambda utt, err: errors.append((utt, err.path))))
    assert list(out) == ["r1-a", "r1-b", "r2-a", "r2-b"]
    assert torch.equal(out["r1-b"], torch.from_numpy(ref1[8000:16000]))
    assert torch.equal(out["r2-a"], torch.from_numpy(ref2[4000:8000]))
    assert torch.equal(out["r2-b"], torch.from_numpy(ref2))
    assert count.read_text().split() == ["r1", "r2"]  # one read per recording
    assert errors == [("r3-a", str(tmp_path / "missing.wav")), ("r3-b", str(tmp_path / "missing.wav"))]
    with pytest.raises(AudioError, match="missing.wav"):
        list(iter_utterances(data))


def test_iter_utterances_without_segments(tmp_path):
    ref = written(tmp_path / "a.wav", tone(3200, 16000), 16000)[:, 0]
    data = tmp_path / "data"
    write_kv(data / "wav.scp", {"u2": str(tmp_path / "a.wav"), "u1": f"cat {tmp_path / 'a.wav'} |"})
    out = list(iter_utterances(data))
    assert [u for u, _ in out] == ["u1", "u2"]
    assert all(torch.equal(w, torch.from_numpy(ref)) for _, w in out)
