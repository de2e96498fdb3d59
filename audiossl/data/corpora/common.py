"""What every corpus preparation shares: audio file discovery, header-only durations, and writing
one sorted data dir per set.

A data dir written here holds ``wav.scp`` (``<utt> <absolute path>``), ``utt2dur`` and, for labelled
sets, ``utt2label`` and ``labels.txt``; keys are unique and sorted as ``LC_ALL=C sort`` sorts them.
Two optional reports sit beside them: ``missing.txt`` (what the corpus lists but the disk lacks) and
``unreadable.txt`` (files whose header soundfile cannot read; they stay in ``wav.scp`` so that
feature extraction drops and lists them, and their ``utt2dur`` holds the corpus's nominal length).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import soundfile

from audiossl.data import datadir

logger = logging.getLogger(__name__)

# File extensions mapped to the soundfile (libsndfile) format that reads them.
_EXTENSION_FORMATS = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aiff": "AIFF",
    ".aif": "AIFF",
    ".au": "AU",
    ".caf": "CAF",
    ".w64": "W64",
    ".rf64": "RF64",
}
MISSING = "missing.txt"
UNREADABLE = "unreadable.txt"

AUDIO_EXTENSIONS = frozenset(
    ext for ext, fmt in _EXTENSION_FORMATS.items() if fmt in soundfile.available_formats()
)


@dataclass(frozen=True)
class Utterance:
    """One utterance of a data dir, before and after its duration is read."""

    utt_id: str
    path: Path
    labels: tuple[str, ...] = ()
    nominal_duration: float = 0.0  # the corpus's stated length, used when the header is unreadable
    duration: float | None = None  # seconds from the file header; None until probed
    problem: str = ""  # why the header could not be read ("" when it could)


@dataclass(frozen=True)
class SetSummary:
    """What was written for one set."""

    name: str
    data_dir: Path
    num_utts: int
    num_missing: int = 0
    num_unreadable: int = 0


def is_audio_file(path: Path) -> bool:
    """True when ``path``'s extension is one soundfile reads (see ``AUDIO_EXTENSIONS``)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


def find_audio_files(root: Path) -> list[Path]:
    """Every audio file under ``root`` (recursively, following symlinks once), sorted.

    Hidden entries (names starting with ".") are skipped; a symlink cycle is walked only once.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                if entry.is_dir():
                    stack.append(path)
                elif entry.is_file() and is_audio_file(path):
                    found.append(path)
    return sorted(found)


def probe_durations(utts: Sequence[Utterance], nj: int = 4) -> list[Utterance]:
    """Fill in each utterance's duration from its header (``soundfile.info``; nothing is decoded).

    A file whose header cannot be read keeps its nominal duration and says why in ``problem``.
    ``nj`` threads read headers in parallel (soundfile releases the GIL while libsndfile works).
    """
    assert nj >= 1, f"nj must be >= 1, got {nj}"

    def probe(utt: Utterance) -> Utterance:
        try:
            info = soundfile.info(str(utt.path))
        except (RuntimeError, OSError) as err:  # soundfile.LibsndfileError is a RuntimeError
            reason = " ".join(str(err).split()) or type(err).__name__
            return replace(utt, duration=utt.nominal_duration, problem=reason)
        if info.frames <= 0 or info.samplerate <= 0:
            return replace(utt, duration=utt.nominal_duration, problem="no samples")
        return replace(utt, duration=info.frames / info.samplerate)

    if nj == 1 or len(utts) < 64:
        return [probe(u) for u in utts]
    with ThreadPoolExecutor(max_workers=nj) as pool:
        return list(pool.map(probe, utts, chunksize=256))


def write_set(
    data_dir: Path,
    utts: Sequence[Utterance],
    labels: Sequence[str] | None,
    display_names: Sequence[str] | None = None,
    missing: Sequence[str] = (),
    name: str | None = None,
) -> SetSummary:
    """Write one data dir from probed utterances, then validate it (:mod:`audiossl.data.datadir`).

    Args:
        data_dir: the set's directory (created; existing files of the same names are replaced).
        utts: utterances with durations (see :func:`probe_durations`); ids unique, one token each.
        labels: the label inventory in index order, for ``utt2label`` / ``labels.txt``; None for an
            unlabelled set (then only ``wav.scp`` and ``utt2dur`` are written).
        display_names: display names parallel to ``labels`` (optional).
        missing: lines for ``missing.txt`` (what the corpus lists but the disk lacks); the file is
            written only when there are some, and a stale one is removed otherwise.
        name: the set's name in the summary (default: the directory's name).

    Returns:
        A :class:`SetSummary` of the set.

    Raises:
        ValueError: an utterance id used twice or not one token, or a file name with a line break.
        DataDirError: the written directory does not validate.
    """
    data_dir = Path(data_dir)
    seen: dict[str, Path] = {}
    for utt in utts:
        if utt.utt_id in seen:
            raise ValueError(f"{data_dir}: utterance id {utt.utt_id!r} used twice ({seen[utt.utt_id]} and {utt.path})")
        seen[utt.utt_id] = utt.path
        if not utt.utt_id or len(utt.utt_id.split()) != 1:
            raise ValueError(f"{data_dir}: utterance id {utt.utt_id!r} must be one token without spaces")
        if "\n" in str(utt.path) or "\r" in str(utt.path):
            raise ValueError(f"{data_dir}: a line break in the file name {str(utt.path)!r} cannot go in wav.scp")
        assert utt.duration is not None, f"{utt.utt_id}: call probe_durations before write_set"

    datadir.write_data_dir(
        datadir.DataDir(
            path=data_dir,
            wav_scp={u.utt_id: str(u.path) for u in utts},
            utt2label={u.utt_id: list(u.labels) for u in utts} if labels is not None else None,
            utt2dur={u.utt_id: u.duration for u in utts},
            labels=list(labels) if labels is not None else None,
            label_names=list(display_names) if display_names is not None else None,
        )
    )
    unreadable = sorted((u for u in utts if u.problem), key=lambda u: datadir.c_sort_key(u.utt_id))
    _write_report(data_dir / UNREADABLE, [f"{u.utt_id} {u.path} {u.problem}" for u in unreadable])
    _write_report(data_dir / MISSING, sorted(missing, key=datadir.c_sort_key))
    if unreadable:
        logger.warning(
            "%s: %d files have a header soundfile cannot read; kept for feature extraction to drop, "
            "listed in %s", data_dir, len(unreadable), data_dir / UNREADABLE,
        )
    if missing:
        logger.warning("%s: %d listed files are missing, listed in %s", data_dir, len(missing), data_dir / MISSING)
    logger.info("%s: %d utterances", data_dir, len(utts))
    return SetSummary(
        name=name or data_dir.name,
        data_dir=data_dir,
        num_utts=len(utts),
        num_missing=len(missing),
        num_unreadable=len(unreadable),
    )


def _write_report(path: Path, lines: Sequence[str]) -> None:
    """Write a report file, or remove a stale one when there is nothing to report."""
    if lines:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, path)
    elif path.exists():
        path.unlink()
