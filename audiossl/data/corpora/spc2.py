"""Speech Commands V2 (v0.02): one folder per word and the official split lists, to data dirs.

Input: the v0.02 tarball, unpacked: one folder per word (35 words) holding ``<speaker>_nohash_<n>.wav``
(1 s at 16 kHz), ``validation_list.txt`` and ``testing_list.txt`` (paths relative to the root, one a
line), and ``_background_noise_/`` (long noise recordings).

Outputs: ``train`` (every word clip on neither list), ``valid`` and ``test`` (exactly the clips on the
lists), and ``background_noise`` (``wav.scp`` and ``utt2dur`` of ``_background_noise_/``, for
augmentation; never in a labelled set). Utterance ids are ``<word>_<file stem>``
(``right_bb05582b_nohash_3``); the label is the word, and ``labels.txt`` lists the words sorted.
A list entry whose file is absent is reported with its list file and line, and written to the set's
``missing.txt``; an entry on both lists is an error.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from audiossl.data import datadir
from audiossl.data.corpora.common import SetSummary, Utterance, is_audio_file, probe_durations, write_set

logger = logging.getLogger(__name__)

VALID_LIST = "validation_list.txt"
TEST_LIST = "testing_list.txt"
BACKGROUND_DIR = "_background_noise_"
BACKGROUND_SET = "background_noise"
SPLITS = ("train", "valid", "test")
CLIP_SECONDS = 1.0  # nominal clip length, for utt2dur of a clip whose header cannot be read
NOISE_SECONDS = 60.0  # about the length of each background recording, likewise
_MAX_LOGGED_PROBLEMS = 20


@dataclass
class Spc2Report:
    """What :func:`prepare_spc2` wrote and found missing."""

    sets: dict[str, SetSummary]  # train, valid, test, and background_noise when the corpus has it
    words: list[str]  # the labels, in labels.txt order
    missing: list[str] = field(default_factory=list)  # "<list>:<line>: <entry>" for absent files


def read_split_list(path: Path) -> list[tuple[int, str]]:
    """Read a split list: ``(line number, "<word>/<file>")`` per non-empty line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: "<file>:<line>: ..." for an entry that is not ``<word>/<file>``, or a repeated entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; unpack the Speech Commands v0.02 tarball there")
    entries: list[tuple[int, str]] = []
    first: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            entry = line.strip()
            if not entry:
                continue
            parts = entry.split("/")
            if len(parts) != 2 or not all(parts) or entry.startswith("/") or len(entry.split()) != 1:
                raise ValueError(f"{path}:{lineno}: expected a relative path '<word>/<file>.wav', got {entry!r}")
            if entry in first:
                raise ValueError(f"{path}:{lineno}: {entry} repeats line {first[entry]}")
            first[entry] = lineno
            entries.append((lineno, entry))
    return entries


def find_words(root: Path) -> list[str]:
    """The word folders of the corpus, sorted (every folder whose name starts with neither "_" nor ".")."""
    return sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(("_", "."))
    )


def prepare_spc2(spc2_root: str | os.PathLike, out_dir: str | os.PathLike, nj: int = 4) -> Spc2Report:
    """Write the Speech Commands V2 data dirs ``<out_dir>/{train,valid,test,background_noise}`` and
    ``<out_dir>/labels.txt``.

    Args:
        spc2_root: the unpacked v0.02 tarball.
        out_dir: where the data dirs go (e.g. ``data``).
        nj: threads reading file headers for ``utt2dur``.

    Raises:
        FileNotFoundError: the root or a split list is absent.
        ValueError: a malformed list, an entry on both lists, no word folder, two files with one
            utterance id, or an empty split; nothing is written then.
    """
    root = Path(os.path.abspath(spc2_root))
    out_dir = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory; unpack the Speech Commands v0.02 tarball there")
    lists = {"valid": root / VALID_LIST, "test": root / TEST_LIST}
    listed = {split: read_split_list(path) for split, path in lists.items()}
    on_valid = {entry: lineno for lineno, entry in listed["valid"]}
    for lineno, entry in listed["test"]:
        if entry in on_valid:
            raise ValueError(f"{lists['test']}:{lineno}: {entry} is also on {lists['valid']}:{on_valid[entry]}")

    words = find_words(root)
    if not words:
        raise ValueError(f"{root}: no word folders; unpack the Speech Commands v0.02 tarball there")
    if len(words) != 35:
        logger.warning("%s: %d word folders where Speech Commands v0.02 has 35", root, len(words))
    clips: dict[str, Utterance] = {}  # "<word>/<file>" -> utterance
    owner: dict[str, str] = {}  # utterance id -> "<word>/<file>"
    for word in words:
        for entry in sorted(os.scandir(root / word), key=lambda e: e.name):
            path = Path(entry.path)
            if not entry.is_file() or entry.name.startswith(".") or not is_audio_file(path):
                continue
            rel = f"{word}/{entry.name}"
            utt_id = f"{word}_{path.stem}"
            if utt_id in owner or len(utt_id.split()) != 1:
                raise ValueError(f"{path}: utterance id {utt_id!r} is not one unique token (also {owner.get(utt_id)})")
            owner[utt_id] = rel
            clips[rel] = Utterance(utt_id, path, labels=(word,), nominal_duration=CLIP_SECONDS)

    members: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    report_missing: list[str] = []
    for split, entries in listed.items():
        members[split] = [entry for _, entry in entries if entry in clips]
        missing[split] = [f"{entry} {root / entry}" for _, entry in entries if entry not in clips]
        report_missing += [f"{lists[split]}:{lineno}: {entry}" for lineno, entry in entries if entry not in clips]
    on_lists = {entry for split in listed for _, entry in listed[split]}
    members["train"] = [rel for rel in clips if rel not in on_lists]
    missing["train"] = []
    for split in SPLITS:
        if not members[split]:
            raise ValueError(f"{root}: split {split} has no clips; check the word folders and {VALID_LIST}, {TEST_LIST}")
    for problem in report_missing[:_MAX_LOGGED_PROBLEMS]:
        logger.warning("listed file is missing: %s", problem)
    if len(report_missing) > _MAX_LOGGED_PROBLEMS:
        logger.warning("... and %d more listed files missing", len(report_missing) - _MAX_LOGGED_PROBLEMS)

    noise_dir = root / BACKGROUND_DIR
    noise = (
        [
            Utterance(p.stem, p, nominal_duration=NOISE_SECONDS)
            for p in sorted(noise_dir.iterdir())
            if p.is_file() and not p.name.startswith(".") and is_audio_file(p)
        ]
        if noise_dir.is_dir()
        else []
    )
    probed = probe_durations([*clips.values(), *noise], nj=nj)
    by_path = {u.path: u for u in probed}

    out_dir.mkdir(parents=True, exist_ok=True)
    datadir.write_labels(out_dir / "labels.txt", words)
    summaries = {
        split: write_set(
            out_dir / split,
            [by_path[clips[rel].path] for rel in members[split]],
            words,
            missing=missing[split],
            name=split,
        )
        for split in SPLITS
    }
    if noise:
        summaries[BACKGROUND_SET] = write_set(
            out_dir / BACKGROUND_SET, [by_path[u.path] for u in noise], labels=None, name=BACKGROUND_SET
        )
    else:
        logger.warning("%s: no background noise recordings; %s not written", noise_dir, out_dir / BACKGROUND_SET)
    return Spc2Report(sets=summaries, words=words, missing=report_missing)
