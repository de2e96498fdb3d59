"""AudioSet: the official label and segment CSVs plus the clips you fetched yourself, to data dirs.

Inputs (as published on the AudioSet site):

* ``class_labels_indices.csv``: a header ``index,mid,display_name``, then one row per class, index
  0..526 in order; display names are quoted when they hold commas (``"Male speech, man speaking"``).
* ``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``, ``eval_segments.csv``: comment
  lines starting with ``#``, then ``YTID, start_seconds, end_seconds, "mid1,mid2,..."``.
* an audio dir holding the 10 s clips in any layout, found by YouTube id (11 characters of
  ``[A-Za-z0-9_-]``) from the file name: ``Y<YTID>_<start>_<end>.<ext>``, ``<YTID>_<start>_<end>.<ext>``,
  ``Y<YTID>.<ext>`` or ``<YTID>.<ext>``, any extension soundfile reads. The files must be the segments
  themselves (no ``segments`` file is written).

Outputs: ``balanced_train`` (AS-20K), ``unbalanced_train``, ``train_as2m`` (balanced + unbalanced,
AS-2M) and ``eval``. Utterance ids are ``Y<YTID>``; labels are mids, and ``labels.txt`` maps them to
indices and display names in the order of ``class_labels_indices.csv``. Clips the CSVs list but the
audio dir lacks are counted and listed in ``<set>/missing.txt`` (``<YTID> <start> <end>``, ready for a
download script), never fatal. Malformed CSV rows are skipped and reported as ``<file>:<line>``.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audiossl.data import datadir
from audiossl.data.corpora.common import SetSummary, Utterance, find_audio_files, probe_durations, write_set

logger = logging.getLogger(__name__)

CLASS_LABELS_CSV = "class_labels_indices.csv"
SEGMENT_CSVS = {
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}
# Sets made of others: the union of their segments (officially disjoint).
COMBINED_SETS = {"train_as2m": ("balanced_train", "unbalanced_train")}
AUDIOSET_SETS = (*SEGMENT_CSVS, *COMBINED_SETS)
DEFAULT_SETS = ("balanced_train", "unbalanced_train", "train_as2m", "eval")
UNKNOWN_MID_POLICIES = ("error", "skip")

# A file stem naming a clip: optional "Y", the 11-character YouTube id, optional "_<start>_<end>".
_CLIP_STEM = re.compile(r"Y?([A-Za-z0-9_-]{11})(?:_\d+(?:\.\d*)?_\d+(?:\.\d*)?)?")
_MID = re.compile(r"/[a-z]+/[0-9a-z_]+")
_YTID = re.compile(r"[A-Za-z0-9_-]{11}")
_MAX_LOGGED_PROBLEMS = 20  # per CSV; all of them are returned in the report


@dataclass(frozen=True)
class AudioSetClass:
    """One row of ``class_labels_indices.csv``."""

    index: int
    mid: str
    display_name: str


@dataclass(frozen=True)
class AudioSetSegment:
    """One row of a segment CSV."""

    ytid: str
    start: float
    end: float
    mids: tuple[str, ...]
    csv_path: Path  # where the row is, for messages
    line: int

    @property
    def utt_id(self) -> str:
        return f"Y{self.ytid}"

    @property
    def where(self) -> str:
        return f"{self.csv_path}:{self.line}"


@dataclass
class SegmentsReport:
    """What reading segment CSVs skipped."""

    bad_rows: list[str] = field(default_factory=list)  # "<csv>:<line>: <why>", one per skipped row
    num_unknown_mids: int = 0  # labels dropped because the mid is not a class (unknown_mids="skip")
    num_rows_without_known_mid: int = 0  # rows dropped because no label was left

    @property
    def num_bad_rows(self) -> int:
        return len(self.bad_rows)


@dataclass
class AudioSetReport:
    """What :func:`prepare_audioset` wrote and skipped."""

    sets: dict[str, SetSummary]
    segments: SegmentsReport
    num_audio_files: int  # audio files found under the audio dir
    num_duplicate_files: int  # extra files for a YouTube id that already had one (the first sorted wins)


def read_class_labels(path: Path) -> list[AudioSetClass]:
    """Read ``class_labels_indices.csv`` (header ``index,mid,display_name``, indices 0..C-1 in order).

    Raises:
        FileNotFoundError: no such file.
        ValueError: "<file>:<line>: ..." for a bad header, a malformed row, an index out of order or a
            repeated mid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; download it from the AudioSet site")
    classes: list[AudioSetClass] = []
    seen: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, skipinitialspace=True, strict=True)
        try:
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != ["index", "mid", "display_name"]:
                raise ValueError(f"{path}:1: expected the header 'index,mid,display_name', got {header}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not row:
                    continue
                if len(row) != 3:
                    raise ValueError(f"{where}: expected 3 fields (index, mid, display_name), got {len(row)}: {row}")
                index, mid, name = (x.strip() for x in row)
                if index != str(len(classes)):
                    raise ValueError(f"{where}: index {index!r} where {len(classes)} was expected (indices 0..C-1 in order)")
                if not _MID.fullmatch(mid):
                    raise ValueError(f"{where}: {mid!r} is not a mid like /m/09x0r")
                if mid in seen:
                    raise ValueError(f"{where}: mid {mid} repeats line {seen[mid]}")
                seen[mid] = reader.line_num
                classes.append(AudioSetClass(int(index), mid, name or mid))
        except csv.Error as err:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None
    if not classes:
        raise ValueError(f"{path}: no classes after the header")
    return classes


def read_segments(
    path: Path,
    known_mids: set[str],
    unknown_mids: str = "error",
    report: SegmentsReport | None = None,
) -> list[AudioSetSegment]:
    """Read a segment CSV, skipping (and reporting) malformed rows.

    A row is skipped as bad when it does not have 4 fields, its YouTube id is not 11 characters of
    ``[A-Za-z0-9_-]``, its times are not numbers with 0 <= start < end, a label is not shaped like a
    mid, it has no label, or its YouTube id repeats an earlier row. Each skipped row is logged (the first few) and listed in
    ``report.bad_rows`` as "<file>:<line>: <why>".

    Args:
        path: the CSV.
        known_mids: the mids of ``class_labels_indices.csv``.
        unknown_mids: what to do with a well-formed mid that is not a class: "error" raises, "skip"
            drops that label (and the row when no label is left), counting both in ``report``.
        report: where skipped rows are recorded (a new one when None).

    Raises:
        FileNotFoundError: no such file.
        ValueError: "<file>:<line>: ..." for an unknown mid when ``unknown_mids`` is "error".
    """
    assert unknown_mids in UNKNOWN_MID_POLICIES, f"unknown_mids must be one of {UNKNOWN_MID_POLICIES}, got {unknown_mids!r}"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; download it from the AudioSet site")
    report = report if report is not None else SegmentsReport()
    first_bad = len(report.bad_rows)
    segments: list[AudioSetSegment] = []
    first_line: dict[str, int] = {}

    def bad(lineno: int, why: str) -> None:
        report.bad_rows.append(f"{path}:{lineno}: {why}")

    with open(path, newline="", encoding="utf-8") as f:
        # One line at a time, so that a stray quote cannot swallow the rows after it.
        for lineno, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = next(csv.reader([line], skipinitialspace=True, strict=True))
            except csv.Error as err:
                bad(lineno, f"malformed CSV ({err})")
                continue
            if len(row) != 4:
                bad(lineno, f"expected 4 fields (YTID, start_seconds, end_seconds, \"mids\"), got {len(row)}")
                continue
            ytid, start_text, end_text, label_text = (x.strip() for x in row)
            if not _YTID.fullmatch(ytid):
                bad(lineno, f"YouTube id {ytid!r} is not 11 characters of [A-Za-z0-9_-]")
                continue
            try:
                start, end = float(start_text), float(end_text)
            except ValueError:
                bad(lineno, f"start/end {start_text!r} {end_text!r} are not numbers")
                continue
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
                bad(lineno, f"needs 0 <= start < end, got {start_text} {end_text}")
                continue
            mids = [m.strip() for m in label_text.split(",") if m.strip()]
            if not mids:
                bad(lineno, "no labels")
                continue
            malformed = [m for m in mids if not _MID.fullmatch(m)]
            if malformed:
                bad(lineno, f"labels {malformed} are not mids like /m/09x0r")
                continue
            if ytid in first_line:
                bad(lineno, f"YouTube id {ytid} repeats line {first_line[ytid]}")
                continue
            unknown = [m for m in mids if m not in known_mids]
            if unknown:
                if unknown_mids == "error":
                    raise ValueError(
                        f"{path}:{lineno}: labels {unknown} are not in {CLASS_LABELS_CSV}; use the CSVs of the "
                        "same release, or --unknown-mids skip to drop such labels"
                    )
                report.num_unknown_mids += len(unknown)
                mids = [m for m in mids if m in known_mids]
                if not mids:
                    report.num_rows_without_known_mid += 1
                    continue
            first_line[ytid] = lineno
            segments.append(
                AudioSetSegment(ytid, start, end, tuple(dict.fromkeys(mids)), csv_path=path, line=lineno)
            )
    new_bad = report.bad_rows[first_bad:]
    for problem in new_bad[:_MAX_LOGGED_PROBLEMS]:
        logger.warning("skipped %s", problem)
    if len(new_bad) > _MAX_LOGGED_PROBLEMS:
        logger.warning("%s: ... and %d more bad rows skipped", path, len(new_bad) - _MAX_LOGGED_PROBLEMS)
    logger.info("%s: %d segments, %d bad rows skipped", path, len(segments), len(new_bad))
    return segments


def clip_ytid(path: Path) -> str | None:
    """The YouTube id a clip's file name names (see the module docstring), or None."""
    match = _CLIP_STEM.fullmatch(Path(path).stem)
    return match.group(1) if match else None


def index_audio(audio_dir: Path) -> tuple[dict[str, Path], int, int]:
    """Find every clip under ``audio_dir`` once and index it by YouTube id.

    Returns:
        (ytid -> path, number of audio files found, number of duplicates ignored); when several
        files name the same id, the first in sorted path order is used.
    """
    index: dict[str, Path] = {}
    files = find_audio_files(audio_dir)
    num_duplicates = 0
    for path in files:
        ytid = clip_ytid(path)
        if ytid is None:
            continue
        if ytid in index:
            num_duplicates += 1
            if num_duplicates <= _MAX_LOGGED_PROBLEMS:
                logger.warning("%s: another file for %s; using %s", path, ytid, index[ytid])
            continue
        index[ytid] = path
    unnamed = len(files) - len(index) - num_duplicates
    if unnamed:
        logger.warning("%s: %d audio files have names without a YouTube id; ignored", audio_dir, unnamed)
    return index, len(files), num_duplicates


def prepare_audioset(
    audioset_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    audio_dir: str | os.PathLike | None = None,
    sets: Sequence[str] = DEFAULT_SETS,
    unknown_mids: str = "error",
    nj: int = 4,
) -> AudioSetReport:
    """Write AudioSet data dirs ``<out_dir>/<set>`` and ``<out_dir>/labels.txt``.

    Args:
        audioset_root: the directory with ``class_labels_indices.csv`` and the segment CSVs.
        out_dir: where the data dirs go (e.g. ``data``).
        audio_dir: where the clips are (searched recursively); default ``<audioset_root>/audio``.
        sets: any of ``AUDIOSET_SETS``; ``train_as2m`` reads both training CSVs.
        unknown_mids: "error" or "skip", for labels not in ``class_labels_indices.csv``.
        nj: threads reading file headers for ``utt2dur``.

    Returns:
        An :class:`AudioSetReport`.

    Raises:
        FileNotFoundError: a CSV or the audio dir is absent.
        ValueError: an unknown set name, a malformed ``class_labels_indices.csv``, an unknown mid
            (with ``unknown_mids="error"``), or a set none of whose clips is in the audio dir (a wrong
            ``audio_dir`` more likely than a bad download); nothing is written then.
    """
    root = Path(os.path.abspath(audioset_root))
    out_dir = Path(out_dir)
    audio_dir = Path(os.path.abspath(audio_dir)) if audio_dir is not None else root / "audio"
    unknown = [s for s in sets if s not in AUDIOSET_SETS]
    if unknown or not sets:
        raise ValueError(f"unknown AudioSet sets {unknown or list(sets)}; choose from {', '.join(AUDIOSET_SETS)}")
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"{audio_dir}: no such audio directory; put your clips there or pass --audio-dir")

    classes = read_class_labels(root / CLASS_LABELS_CSV)
    known_mids = {c.mid for c in classes}
    needed = list(dict.fromkeys(part for s in sets for part in COMBINED_SETS.get(s, (s,))))
    seg_report = SegmentsReport()
    segments = {
        name: read_segments(root / SEGMENT_CSVS[name], known_mids, unknown_mids, seg_report) for name in needed
    }
    for name, parts in COMBINED_SETS.items():
        if name in sets:
            segments[name] = _combine(name, [segments[p] for p in parts])

    index, num_files, num_duplicates = index_audio(audio_dir)
    logger.info("%s: %d audio files, %d YouTube ids", audio_dir, num_files, len(index))
    found: dict[str, list[AudioSetSegment]] = {}
    missing: dict[str, list[str]] = {}
    for name in sets:
        found[name] = [s for s in segments[name] if s.ytid in index]
        missing[name] = [f"{s.ytid} {s.start:.3f} {s.end:.3f}" for s in segments[name] if s.ytid not in index]
        if not found[name]:
            raise ValueError(
                f"{audio_dir}: none of the {len(segments[name])} clips of {name} is there; expected files like "
                f"Y<YTID>_<start>_<end>.wav (or <YTID>.wav) anywhere below it; check the audio dir, or "
                f"leave {name} out of the sets"
            )

    # Read each clip's header once, however many sets it is in.
    clips = {s.ytid: s for name in sets for s in found[name]}
    probed = probe_durations(
        [
            Utterance(s.utt_id, index[s.ytid], labels=s.mids, nominal_duration=s.end - s.start)
            for s in clips.values()
        ],
        nj=nj,
    )
    by_id = {u.utt_id: u for u in probed}
    mids = [c.mid for c in classes]
    names = [c.display_name for c in classes]
    out_dir.mkdir(parents=True, exist_ok=True)
    datadir.write_labels(out_dir / "labels.txt", mids, names)
    summaries = {
        name: write_set(
            out_dir / name, [by_id[s.utt_id] for s in found[name]], mids, names, missing=missing[name], name=name
        )
        for name in sets
    }
    for s in summaries.values():
        logger.info(
            "%s: %d clips written, %d missing, %d unreadable", s.name, s.num_utts, s.num_missing, s.num_unreadable
        )
    return AudioSetReport(
        sets=summaries, segments=seg_report, num_audio_files=num_files, num_duplicate_files=num_duplicates
    )


def _combine(name: str, parts: Sequence[Sequence[AudioSetSegment]]) -> list[AudioSetSegment]:
    """The union of ``parts`` by YouTube id; a repeated id keeps the first part's row."""
    combined: dict[str, AudioSetSegment] = {}
    repeats = 0
    for part in parts:
        for seg in part:
            if seg.ytid in combined:
                repeats += 1
                if repeats <= _MAX_LOGGED_PROBLEMS:
                    logger.warning("%s: %s also at %s; keeping %s", name, seg.ytid, seg.where, combined[seg.ytid].where)
                continue
            combined[seg.ytid] = seg
    if repeats:
        logger.warning("%s: %d YouTube ids appear in more than one part; each kept once", name, repeats)
    return list(combined.values())
