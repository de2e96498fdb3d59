"""Audio loading for ``wav.scp`` entries: files, command pipes, segments, resampling.

A ``wav.scp`` value is either a path to any format libsndfile reads (wav, flac, ogg, mp3, ...), or a
shell command ending in ``|`` whose standard output is such a file, e.g. ``sox in.m4a -t wav - |``
or ``ffmpeg -i in.mp4 -f wav - |``. Commands run under ``bash`` with ``pipefail``; their output is read
from memory.

Every clip comes back as a mono float32 tensor in [-1, 1] (channels averaged) at the target sample
rate (``torchaudio.functional.resample``). A segment ``[start, end)`` in seconds is cut at sample
``round(t * sample_rate)`` of the source rate; like Kaldi's ``extract-segments``, an end up to
``MAX_OVERSHOOT`` seconds past the end of the recording is clipped, further is an error.
"""
from __future__ import annotations

import io
import logging
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from audiossl.data.datadir import DataDir, PathLike, load_data_dir

logger = logging.getLogger(__name__)

MAX_OVERSHOOT = 0.5  # seconds a segment end may pass the end of its recording (Kaldi's default)
_STDERR_TAIL = 500  # characters of a failing command's stderr kept in the error


class AudioError(Exception):
    """Audio could not be loaded. ``path`` is the file (or the command of a pipe), ``reason`` why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def is_pipe(spec: str) -> bool:
    """Whether a wav.scp value is a ``command |`` pipe."""
    return spec.rstrip().endswith("|")


def spec_path(spec: str) -> str:
    """The path of a wav.scp value, or the command of a pipe (without the trailing ``|``)."""
    return spec.rstrip()[:-1].strip() if is_pipe(spec) else spec


@dataclass
class _Recording:
    """Samples (num_samples, num_channels) float32 of a whole file at its own rate."""

    samples: np.ndarray
    sample_rate: int


def _sf_reason(err: Exception) -> str:
    """libsndfile's own words, without the file name soundfile prepends."""
    return getattr(err, "error_string", None) or str(err)


def _run_pipe(command: str) -> bytes:
    logger.debug("running: %s", command)
    try:
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, check=False)
    except OSError as e:
        raise AudioError(command, f"could not run the command: {e}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", errors="replace").strip()[-_STDERR_TAIL:]
        raise AudioError(command, f"command failed with exit code {proc.returncode}: {tail or '(no stderr)'}")
    if not proc.stdout:
        raise AudioError(command, "command wrote no audio to its standard output")
    return proc.stdout


def _read_recording(spec: str) -> _Recording:
    """Read a whole wav.scp entry at its own sample rate."""
    path = spec_path(spec)
    try:
        if is_pipe(spec):
            data = _run_pipe(path)
            samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        else:
            if not Path(path).is_file():
                raise AudioError(path, "no such file")
            samples, sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.SoundFileError as e:
        raise AudioError(path, f"unreadable audio ({_sf_reason(e)})") from None
    return _Recording(samples, int(sr))


def _read_file_range(path: str, start: float, end: float) -> _Recording:
    """Read only [start, end) seconds of a file (no need to load a long recording whole)."""
    if not Path(path).is_file():
        raise AudioError(path, "no such file")
    try:
        with sf.SoundFile(path) as f:
            sr, total = int(f.samplerate), f.frames
            first, last = _segment_bounds(path, sr, total, start, end)
            f.seek(first)
            samples = f.read(last - first, dtype="float32", always_2d=True)
    except sf.SoundFileError as e:
        raise AudioError(path, f"unreadable audio ({_sf_reason(e)})") from None
    return _Recording(samples, sr)


def _segment_bounds(path: str, sample_rate: int, total: int, start: float, end: float) -> tuple[int, int]:
    """Sample range [first, last) of segment [start, end) seconds in a recording of ``total`` samples."""
    if not 0 <= start < end:
        raise AudioError(path, f"bad segment {start:g}-{end:g} s: need 0 <= start < end")
    duration = total / sample_rate
    if end > duration + MAX_OVERSHOOT:
        raise AudioError(path, f"segment {start:g}-{end:g} s ends past the recording ({duration:.3f} s)")
    first = round(start * sample_rate)
    last = min(round(end * sample_rate), total)
    if first >= last:
        raise AudioError(path, f"segment {start:g}-{end:g} s is empty in a {duration:.3f} s recording")
    return first, last


def mono_samples(path: str, samples: np.ndarray, sample_rate: int, target_sr: int) -> torch.Tensor:
    """(S, C) float samples -> (S',) mono float32 tensor at ``target_sr`` (channels averaged,
    resampled with torchaudio); AudioError naming ``path`` (what the samples are) if they are empty
    or not finite."""
    num_samples = samples.shape[0]
    if num_samples == 0:
        raise AudioError(path, "empty audio (0 samples)")
    wav = torch.from_numpy(np.ascontiguousarray(samples)).mean(dim=1).to(torch.float32)  # (S, C) -> (S,)
    if not torch.isfinite(wav).all():
        raise AudioError(path, "audio contains NaN or infinite samples")
    if sample_rate != target_sr:
        wav = torchaudio.functional.resample(wav, sample_rate, target_sr)
    return wav


def load_audio(
    spec: str, start: float | None = None, end: float | None = None, target_sr: int = 16000
) -> torch.Tensor:
    """Load one wav.scp entry as a (num_samples,) mono float32 tensor at ``target_sr``.

    Args:
        spec: a wav.scp value: a path, or a ``command |`` whose stdout is an audio file.
        start, end: cut [start, end) seconds (both or neither), e.g. from a ``segments`` line.
        target_sr: output sample rate; resampled with torchaudio.functional.resample if needed.

    Raises:
        AudioError: naming the path (or command) and the reason: missing file, unreadable or empty
            audio, a failing command (with its stderr tail), a segment outside the recording.
    """
    assert (start is None) == (end is None), f"give both start and end or neither, got {start}, {end}"
    path = spec_path(spec)
    if start is not None and not is_pipe(spec):
        rec = _read_file_range(path, start, end)
        return mono_samples(path, rec.samples, rec.sample_rate, target_sr)
    rec = _read_recording(spec)
    return _cut_and_finish(path, rec, start, end, target_sr)


def _cut_and_finish(
    path: str, rec: _Recording, start: float | None, end: float | None, target_sr: int
) -> torch.Tensor:
    samples = rec.samples
    if start is not None:
        first, last = _segment_bounds(path, rec.sample_rate, samples.shape[0], start, end)
        samples = samples[first:last]
    return mono_samples(path, samples, rec.sample_rate, target_sr)


def iter_utterances(
    data_dir: PathLike | DataDir,
    target_sr: int = 16000,
    on_error: Callable[[str, AudioError], None] | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(utt_id, waveform)`` for every utterance of a data directory, in utterance order.

    With ``segments``, each recording is read once per run of consecutive segments that use it.

    Args:
        data_dir: a data directory path or a loaded :class:`DataDir`.
        target_sr: output sample rate.
        on_error: called as ``on_error(utt_id, error)`` for an utterance that cannot be loaded,
            which is then skipped; when None the AudioError is raised.
    """
    data = data_dir if isinstance(data_dir, DataDir) else load_data_dir(data_dir)

    def fail(utt: str, err: AudioError) -> None:
        if on_error is None:
            raise err
        on_error(utt, err)

    if data.segments is None:
        for utt in data.utt_ids:
            try:
                wav = load_audio(data.wav_scp[utt], target_sr=target_sr)
            except AudioError as e:
                fail(utt, e)
                continue
            yield utt, wav
        return

    cached_rec_id: str | None = None
    cached: _Recording | AudioError | None = None
    for utt in data.utt_ids:
        seg = data.segments[utt]
        spec = data.wav_scp.get(seg.recording)
        if spec is None:
            fail(utt, AudioError(seg.recording, f"recording {seg.recording!r} of segment {utt!r} is not in wav.scp"))
            continue
        if seg.recording != cached_rec_id:
            cached_rec_id = seg.recording
            try:
                cached = _read_recording(spec)
            except AudioError as e:
                cached = e
        if isinstance(cached, AudioError):
            fail(utt, cached)
            continue
        try:
            wav = _cut_and_finish(spec_path(spec), cached, seg.start, seg.end, target_sr)
        except AudioError as e:
            fail(utt, e)
            continue
        yield utt, wav
