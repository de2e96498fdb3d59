"""Kaldi-style data directories: read, validate and write them.

A data directory describes a set of utterances with plain text files, one ``<key> <value>`` line
each, keys unique and sorted in ``LC_ALL=C`` (byte) order:

    wav.scp     <utt> <path>          or  <utt> <command> |     (a command whose stdout is audio)
    segments    <seg> <rec> <start_s> <end_s>   (optional; then wav.scp keys are recordings and the
                                                 utterances are the segments)
    utt2label   <utt> <label> [<label> ...]     (label tokens without spaces; multi-label allowed)
    utt2dur     <utt> <seconds>
    labels.txt  <index> <label> [display name ...]  (index 0..C-1 in order, one line per class)

Every reader reports a problem as ``<file>:<line>: <what is wrong>`` so the user can open the file at
the right place; :func:`validate_data_dir` collects every problem of a directory at once.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import torch

PathLike = Union[str, os.PathLike]

WAV_SCP = "wav.scp"
SEGMENTS = "segments"
UTT2LABEL = "utt2label"
UTT2DUR = "utt2dur"
LABELS = "labels.txt"


class DataDirError(Exception):
    """A data directory file is malformed or inconsistent; the message names the file and line."""


def c_sort_key(key: str) -> bytes:
    """Sort key of ``LC_ALL=C sort``: the raw UTF-8 bytes."""
    return key.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Key-value files
# --------------------------------------------------------------------------------------------
@dataclass
class _KVLines:
    """A parsed key-value file: values and the 1-based line number of every key."""

    path: Path
    values: dict[str, str]
    lines: dict[str, int]


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, without line ends (a final newline starts no extra line)."""
    if not path.is_file():
        raise DataDirError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataDirError(f"{path}: not UTF-8 text (byte {e.start}); write data files as UTF-8") from None
    rows = text.split("\n")
    if rows[-1] == "":
        rows.pop()
    return [row.rstrip("\r") for row in rows]


def _read_kv_lines(path: PathLike, check_sorted: bool = True) -> _KVLines:
    path = Path(path)
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    prev_key: str | None = None
    for lineno, line in enumerate(_read_lines(path), start=1):
        parts = line.split(maxsplit=1)
        what = (
            "empty line" if not line.strip()
            else "leading whitespace" if line[0].isspace()
            else "no value after the key" if len(parts) < 2
            else ""
        )
        if what:
            raise DataDirError(f"{path}:{lineno}: malformed line ({what}), expected '<key> <value>': {line!r}")
        key, value = parts[0], parts[1].rstrip()
        if key in values:
            raise DataDirError(
                f"{path}:{lineno}: duplicate key {key!r} (first on line {lines[key]}); keys must be unique"
            )
        if check_sorted and prev_key is not None and c_sort_key(key) < c_sort_key(prev_key):
            raise DataDirError(
                f"{path}:{lineno}: key {key!r} comes after {prev_key!r}; keys must be sorted in "
                f"LC_ALL=C byte order (fix with: LC_ALL=C sort -k1,1 -o {path} {path})"
            )
        values[key] = value
        lines[key] = lineno
        prev_key = key
    return _KVLines(path, values, lines)


def read_kv(path: PathLike, check_sorted: bool = True) -> dict[str, str]:
    """Read a ``<key> <value>`` file (the value is the rest of the line, spaces included).

    Raises:
        DataDirError: "<file>:<line>: ..." for a missing file, a malformed line, a duplicate key, or
            (when ``check_sorted``) a key out of LC_ALL=C byte order.
    """
    return _read_kv_lines(path, check_sorted).values


def _format_value(key: str, value: object) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, Iterable):
        text = " ".join(str(v) for v in value)
    else:
        text = str(value)
    assert text.strip() and "\n" not in text, f"value of key {key!r} must be one non-empty line, got {text!r}"
    return text


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write text to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_kv(path: PathLike, data: Mapping[str, object]) -> None:
    """Write ``<key> <value>`` lines sorted in LC_ALL=C byte order, atomically (temp file + rename).

    A value may be a string, a number, or a sequence of strings (joined with single spaces).
    """
    for key in data:
        assert key and len(key.split()) == 1 and key == key.strip(), f"key {key!r} must be one token without spaces"
    keys = sorted(data, key=c_sort_key)
    atomic_write_text(path, "".join(f"{k} {_format_value(k, data[k])}\n" for k in keys))


# --------------------------------------------------------------------------------------------
# labels.txt
# --------------------------------------------------------------------------------------------
def read_labels(path: PathLike) -> tuple[list[str], list[str]]:
    """Read ``labels.txt``: ``<index> <label> [display name ...]`` with indices 0..C-1 in order.

    Returns:
        (labels, display_names): label tokens in index order, and display names (the label token
        itself where a line has none).
    """
    path = Path(path)
    labels: list[str] = []
    names: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        parts = line.split(maxsplit=2)
        if len(parts) < 2:
            raise DataDirError(f"{path}:{lineno}: malformed line, expected '<index> <label> [display name]': {line!r}")
        if parts[0] != str(len(labels)):
            raise DataDirError(
                f"{path}:{lineno}: index {parts[0]!r} where {len(labels)} was expected; "
                "indices must be 0..C-1, one line per class, in order"
            )
        label = parts[1]
        if label in first_line:
            raise DataDirError(f"{path}:{lineno}: duplicate label {label!r} (first on line {first_line[label]})")
        first_line[label] = lineno
        labels.append(label)
        names.append(parts[2].strip() if len(parts) == 3 and parts[2].strip() else label)
    if not labels:
        raise DataDirError(f"{path}: no classes; expected one '<index> <label> [display name]' line per class")
    return labels, names


def write_labels(path: PathLike, labels: Sequence[str], display_names: Sequence[str] | None = None) -> None:
    """Write ``labels.txt`` (index = position in ``labels``), atomically."""
    assert display_names is None or len(display_names) == len(labels), (
        f"{len(labels)} labels but {len(display_names or [])} display names"
    )
    assert len(set(labels)) == len(labels), "labels must be unique"
    out = []
    for i, label in enumerate(labels):
        assert label and len(label.split()) == 1, f"label {label!r} must be one token without spaces"
        name = display_names[i].strip() if display_names is not None else ""
        assert "\n" not in name, f"display name of {label!r} must be one line"
        out.append(f"{i} {label} {name}\n" if name and name != label else f"{i} {label}\n")
    atomic_write_text(path, "".join(out))


def labels_to_multi_hot(labels: Iterable[str], vocab: Sequence[str] | Mapping[str, int]) -> torch.Tensor:
    """(C,) float32 multi-hot vector of ``labels`` over ``vocab`` (the labels.txt token list, or a
    token -> index map)."""
    import torch  # here, so that shell-facing checks (validate_data_dir) start without torch

    index = vocab if isinstance(vocab, Mapping) else {label: i for i, label in enumerate(vocab)}
    target = torch.zeros(len(index), dtype=torch.float32)
    for label in labels:
        if label not in index:
            raise KeyError(f"label {label!r} is not in labels.txt ({len(index)} classes)")
        target[index[label]] = 1.0
    return target


# --------------------------------------------------------------------------------------------
# The data directory
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """One ``segments`` line: the utterance is ``recording`` from ``start`` to ``end`` seconds."""

    recording: str
    start: float
    end: float


@dataclass
class DataDir:
    """A loaded data directory. Optional files that are absent are None.

    Attributes:
        path: the directory.
        wav_scp: utterance (or, with segments, recording) id -> path or ``command |``.
        segments: utterance id -> Segment, or None.
        utt2label: utterance id -> label tokens, or None.
        utt2dur: utterance id -> duration in seconds, or None.
        labels: label tokens in labels.txt index order, or None.
        label_names: display names, parallel to ``labels``, or None.
    """

    path: Path
    wav_scp: dict[str, str]
    segments: dict[str, Segment] | None = None
    utt2label: dict[str, list[str]] | None = None
    utt2dur: dict[str, float] | None = None
    labels: list[str] | None = None
    label_names: list[str] | None = None
    _label_index: dict[str, int] | None = field(default=None, repr=False, compare=False)

    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids in LC_ALL=C order (segment ids where there are segments)."""
        keys = self.segments if self.segments is not None else self.wav_scp
        return sorted(keys, key=c_sort_key)

    @property
    def num_classes(self) -> int:
        return len(self.labels) if self.labels is not None else 0

    def audio_spec(self, utt: str) -> tuple[str, float | None, float | None]:
        """(wav.scp value, start, end) of an utterance; start/end are None without segments."""
        if self.segments is None:
            return self.wav_scp[utt], None, None
        seg = self.segments[utt]
        return self.wav_scp[seg.recording], seg.start, seg.end

    def multi_hot(self, utt: str) -> torch.Tensor:
        """(C,) float32 multi-hot target of an utterance."""
        assert self.utt2label is not None and self.labels is not None, f"{self.path} has no utt2label/labels.txt"
        if self._label_index is None:
            self._label_index = {label: i for i, label in enumerate(self.labels)}
        return labels_to_multi_hot(self.utt2label[utt], self._label_index)


def _parse_segments(kv: _KVLines) -> dict[str, Segment]:
    segments = {}
    for seg, value in kv.values.items():
        where = f"{kv.path}:{kv.lines[seg]}"
        parts = value.split()
        if len(parts) != 3:
            raise DataDirError(f"{where}: malformed line, expected '<seg> <rec> <start_s> <end_s>': {seg} {value}")
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise DataDirError(f"{where}: start/end {parts[1]!r} {parts[2]!r} are not numbers (seconds)") from None
        segments[seg] = Segment(parts[0], start, end)
    return segments


def _parse_utt2dur(kv: _KVLines) -> dict[str, float]:
    out = {}
    for utt, value in kv.values.items():
        try:
            out[utt] = float(value)
        except ValueError:
            raise DataDirError(f"{kv.path}:{kv.lines[utt]}: duration {value!r} of {utt!r} is not a number (seconds)") from None
    return out


def load_data_dir(path: PathLike) -> DataDir:
    """Load a data directory: wav.scp (required), and segments, utt2label, utt2dur, labels.txt where
    present. Parses and checks each file's format; cross-file checks are :func:`validate_data_dir`'s.

    Raises:
        DataDirError: naming the file and line of the first problem.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: no such data directory")
    data = DataDir(path=path, wav_scp=read_kv(path / WAV_SCP))
    if (path / SEGMENTS).exists():
        data.segments = _parse_segments(_read_kv_lines(path / SEGMENTS))
    if (path / UTT2LABEL).exists():
        data.utt2label = {k: v.split() for k, v in read_kv(path / UTT2LABEL).items()}
    if (path / UTT2DUR).exists():
        data.utt2dur = _parse_utt2dur(_read_kv_lines(path / UTT2DUR))
    if (path / LABELS).exists():
        data.labels, data.label_names = read_labels(path / LABELS)
    return data


def _seconds(t: float) -> str:
    """Seconds to microsecond precision without trailing zeros: 10.0 -> '10', 0.0625 -> '0.0625'."""
    return f"{t:.6f}".rstrip("0").rstrip(".")


def write_data_dir(data: DataDir, path: PathLike | None = None) -> Path:
    """Write every present part of ``data`` to ``path`` (default ``data.path``), then validate it.

    Returns the directory written. Raises DataDirError if the result does not validate.
    """
    out = Path(path) if path is not None else data.path
    out.mkdir(parents=True, exist_ok=True)
    write_kv(out / WAV_SCP, data.wav_scp)
    if data.segments is not None:
        write_kv(out / SEGMENTS, {k: f"{s.recording} {_seconds(s.start)} {_seconds(s.end)}" for k, s in data.segments.items()})
    if data.utt2label is not None:
        write_kv(out / UTT2LABEL, data.utt2label)
    if data.utt2dur is not None:
        write_kv(out / UTT2DUR, {k: _seconds(v) for k, v in data.utt2dur.items()})
    if data.labels is not None:
        write_labels(out / LABELS, data.labels, data.label_names)
    validate_data_dir(out, labels=data.utt2label is not None, durations=data.utt2dur is not None)
    return out


def _key_mismatch(kv: _KVLines, utts: Sequence[str], reference: str) -> list[str]:
    """Problems for keys of ``kv`` not in ``utts`` and utterances missing from ``kv``."""
    problems = []
    wanted = set(utts)
    for key, lineno in kv.lines.items():
        if key not in wanted:
            problems.append(f"{kv.path}:{lineno}: utterance {key!r} is not in {reference}")
    missing = [u for u in utts if u not in kv.values]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        problems.append(f"{kv.path}: {len(missing)} utterances of {reference} are missing: {shown}")
    return problems


def validate_data_dir(
    path: PathLike, labels: bool = True, durations: bool = True, strict: bool = True
) -> list[str]:
    """Check a data directory: raise DataDirError listing every problem found, or with
    ``strict=False`` return them (an empty list when the directory is valid).

    Checks: each file's format (sorted unique keys, well-formed lines); segments refer to wav.scp
    recordings with 0 <= start < end; with ``labels``, utt2label and labels.txt exist, labels.txt
    indices are 0..C-1 and every utt2label label is in labels.txt; with ``durations``, utt2dur exists
    with positive finite durations; utt2label/utt2dur keys (when present) match the utterance list.

    Args:
        path: the data directory.
        labels: require utt2label and labels.txt.
        durations: require utt2dur.
        strict: raise DataDirError listing every problem (the default); False: return them.
    """
    path = Path(path)
    problems: list[str] = []

    def load(name: str, required: bool) -> _KVLines | None:
        if not (path / name).exists():
            if required:
                problems.append(f"{path / name}: no such file")
            return None
        try:
            return _read_kv_lines(path / name)
        except DataDirError as e:
            problems.append(str(e))
            return None

    if not path.is_dir():
        problems.append(f"{path}: no such data directory")
    else:
        wav = load(WAV_SCP, required=True)
        seg_kv = load(SEGMENTS, required=False)
        utts: list[str] | None = None
        reference = WAV_SCP
        if wav is not None and not wav.values:
            problems.append(f"{path / WAV_SCP}: empty")
        if seg_kv is not None:
            reference = SEGMENTS
            try:
                segments = _parse_segments(seg_kv)
            except DataDirError as e:
                problems.append(str(e))
            else:
                utts = list(segments)
                for seg, s in segments.items():
                    where = f"{seg_kv.path}:{seg_kv.lines[seg]}"
                    if wav is not None and s.recording not in wav.values:
                        problems.append(f"{where}: recording {s.recording!r} of segment {seg!r} is not in {WAV_SCP}")
                    if not (0 <= s.start < s.end):
                        problems.append(f"{where}: segment {seg!r} needs 0 <= start < end, got start {s.start:g} end {s.end:g}")
        elif wav is not None:
            utts = list(wav.values)

        label_kv = load(UTT2LABEL, required=labels)
        vocab: set[str] | None = None
        if (path / LABELS).exists():
            try:
                vocab = set(read_labels(path / LABELS)[0])
            except DataDirError as e:
                problems.append(str(e))
        elif labels or label_kv is not None:
            problems.append(f"{path / LABELS}: no such file (needed to check {path / UTT2LABEL})")
        if label_kv is not None:
            if utts is not None:
                problems += _key_mismatch(label_kv, utts, reference)
            if vocab is not None:
                for utt, value in label_kv.values.items():
                    for label in value.split():
                        if label not in vocab:
                            problems.append(
                                f"{label_kv.path}:{label_kv.lines[utt]}: label {label!r} of {utt!r} is not in {path / LABELS}"
                            )

        dur_kv = load(UTT2DUR, required=durations)
        if dur_kv is not None:
            if utts is not None:
                problems += _key_mismatch(dur_kv, utts, reference)
            for utt, value in dur_kv.values.items():
                try:
                    ok = math.isfinite(float(value)) and float(value) > 0
                except ValueError:
                    ok = False
                if not ok:
                    problems.append(f"{dur_kv.path}:{dur_kv.lines[utt]}: duration {value!r} of {utt!r} is not a positive number")

    if problems and strict:
        raise DataDirError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems))
    return problems
