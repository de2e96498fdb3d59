"""ESC-50: the official metadata and clips to one data dir per cross-validation split.

Input: the ESC-50 repository archive, unpacked: ``meta/esc50.csv`` (columns ``filename, fold, target,
category, esc10, src_file, take``) and ``audio/<filename>`` (5 s clips at 44.1 kHz; resampling is
feature extraction's job).

Outputs, for each fold k of the metadata (1..5): ``fold<k>/test`` (the clips of fold k) and
``fold<k>/train`` (the clips of every other fold), plus ``all``. Train and test of a fold are cut from
one clip list by the fold number, so no clip is in both, and each clip is in exactly one test set.
The metadata's own promise, that all clips cut from one source recording (``src_file``) share a fold,
is checked too, since breaking it would leak a recording across train and test. Utterance ids are the
file stems (``1-100032-A-0``); the label of a clip is its category, and ``labels.txt`` lists the
categories in target order (index = target).
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from audiossl.data import datadir
from audiossl.data.corpora.common import SetSummary, Utterance, probe_durations, write_set

logger = logging.getLogger(__name__)

META_CSV = Path("meta") / "esc50.csv"
AUDIO_DIR = "audio"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
CLIP_SECONDS = 5.0  # nominal clip length, for utt2dur of a clip whose header cannot be read


@dataclass(frozen=True)
class Esc50Clip:
    """One row of ``meta/esc50.csv``."""

    filename: str
    fold: int
    target: int
    category: str
    esc10: bool
    src_file: str
    take: str
    where: str  # "<csv>:<line>", for messages

    @property
    def utt_id(self) -> str:
        return Path(self.filename).stem


@dataclass
class Esc50Report:
    """What :func:`prepare_esc50` wrote."""

    sets: dict[str, SetSummary]  # keyed "all", "fold1/train", "fold1/test", ...
    categories: list[str]  # in target order
    num_missing: int  # clips in the metadata without a file


def read_esc50_meta(path: Path) -> list[Esc50Clip]:
    """Read and check ``meta/esc50.csv``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: "<file>:<line>: ..." for a missing column, a malformed row, a repeated file name, a
            category with two targets (or the reverse), targets not covering 0..C-1, or clips of one
            source recording in different folds.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; unpack the ESC-50 archive so that it has meta/ and audio/")
    clips: list[Esc50Clip] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True, strict=True)
        try:
            absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise ValueError(f"{path}:1: columns {absent} are missing; expected {', '.join(COLUMNS)}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row or any(row[c] is None for c in COLUMNS):
                    raise ValueError(f"{where}: expected {len(reader.fieldnames)} fields")
                values = {c: row[c].strip() for c in COLUMNS}
                try:
                    fold, target = int(values["fold"]), int(values["target"])
                except ValueError:
                    raise ValueError(
                        f"{where}: fold {values['fold']!r} and target {values['target']!r} must be integers"
                    ) from None
                if fold < 1 or target < 0:
                    raise ValueError(f"{where}: fold must be >= 1 and target >= 0, got fold {fold} target {target}")
                if not values["category"] or len(values["category"].split()) != 1:
                    raise ValueError(f"{where}: category {values['category']!r} must be one token without spaces")
                if not values["filename"] or "/" in values["filename"] or len(Path(values["filename"]).stem.split()) != 1:
                    raise ValueError(f"{where}: file name {values['filename']!r} must be a plain name without spaces")
                clips.append(
                    Esc50Clip(
                        filename=values["filename"],
                        fold=fold,
                        target=target,
                        category=values["category"],
                        esc10=values["esc10"].lower() == "true",
                        src_file=values["src_file"],
                        take=values["take"],
                        where=where,
                    )
                )
        except csv.Error as err:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None
    if not clips:
        raise ValueError(f"{path}: no clips after the header")
    _check_consistency(path, clips)
    return clips


def _check_consistency(path: Path, clips: list[Esc50Clip]) -> None:
    first: dict[str, Esc50Clip] = {}
    by_target: dict[int, Esc50Clip] = {}
    by_category: dict[str, Esc50Clip] = {}
    src_fold: dict[str, Esc50Clip] = {}
    for clip in clips:
        if clip.utt_id in first:
            raise ValueError(f"{clip.where}: file {clip.filename} repeats {first[clip.utt_id].where}")
        first[clip.utt_id] = clip
        other = by_target.setdefault(clip.target, clip)
        if other.category != clip.category:
            raise ValueError(f"{clip.where}: target {clip.target} is {clip.category}, but {other.category} at {other.where}")
        other = by_category.setdefault(clip.category, clip)
        if other.target != clip.target:
            raise ValueError(
                f"{clip.where}: category {clip.category} has target {clip.target}, but {other.target} at {other.where}"
            )
        if clip.src_file:
            other = src_fold.setdefault(clip.src_file, clip)
            if other.fold != clip.fold:
                raise ValueError(
                    f"{clip.where}: source recording {clip.src_file} is in fold {clip.fold}, but in fold "
                    f"{other.fold} at {other.where}; a recording split across folds leaks into the test set"
                )
    targets = sorted(by_target)
    if targets != list(range(len(targets))):
        raise ValueError(f"{path}: targets must cover 0..C-1, got {targets}")


def prepare_esc50(esc50_root: str | os.PathLike, out_dir: str | os.PathLike, nj: int = 4) -> Esc50Report:
    """Write the ESC-50 data dirs ``<out_dir>/{all,fold<k>/train,fold<k>/test}`` and ``<out_dir>/labels.txt``.

    A clip the metadata lists but ``audio/`` lacks is left out of every set and listed in the
    ``missing.txt`` of each set it would be in.

    Args:
        esc50_root: the unpacked archive (with ``meta/esc50.csv`` and ``audio/``).
        out_dir: where the data dirs go (e.g. ``data``).
        nj: threads reading file headers for ``utt2dur``.

    Raises:
        FileNotFoundError: no metadata or no audio dir.
        ValueError: malformed metadata (see :func:`read_esc50_meta`), or no clip found at all.
    """
    root = Path(os.path.abspath(esc50_root))
    out_dir = Path(out_dir)
    clips = read_esc50_meta(root / META_CSV)
    audio_dir = root / AUDIO_DIR
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"{audio_dir}: no such directory; unpack the ESC-50 archive so that it has meta/ and audio/")
    categories = [c.category for c in sorted({c.target: c for c in clips}.values(), key=lambda c: c.target)]

    present = [c for c in clips if (audio_dir / c.filename).is_file()]
    absent = [c for c in clips if not (audio_dir / c.filename).is_file()]
    if not present:
        raise ValueError(f"{audio_dir}: none of the {len(clips)} clips of {root / META_CSV} is there")
    probed = probe_durations(
        [
            Utterance(c.utt_id, audio_dir / c.filename, labels=(c.category,), nominal_duration=CLIP_SECONDS)
            for c in present
        ],
        nj=nj,
    )
    utt_of = {u.utt_id: u for u in probed}

    def missing_lines(subset: list[Esc50Clip]) -> list[str]:
        return [f"{c.utt_id} {audio_dir / c.filename}" for c in subset]

    splits = {"all": (present, absent)}
    for fold in sorted({c.fold for c in clips}):
        # Both sides of a fold come from one clip list, split on the fold number alone.
        splits[f"fold{fold}/train"] = ([c for c in present if c.fold != fold], [c for c in absent if c.fold != fold])
        splits[f"fold{fold}/test"] = ([c for c in present if c.fold == fold], [c for c in absent if c.fold == fold])
    for name, (subset, lacking) in splits.items():
        if not subset:
            raise ValueError(f"{audio_dir}: no clip of set {name} is there (all {len(lacking)} missing)")

    out_dir.mkdir(parents=True, exist_ok=True)
    datadir.write_labels(out_dir / "labels.txt", categories)
    summaries = {}
    for name, (subset, lacking) in splits.items():
        summaries[name] = write_set(
            out_dir / name,
            [utt_of[c.utt_id] for c in subset],
            categories,
            missing=missing_lines(lacking),
            name=name,
        )
    logger.info("%s: %d clips, %d categories, %d missing", root, len(present), len(categories), len(absent))
    return Esc50Report(sets=summaries, categories=categories, num_missing=len(absent))
