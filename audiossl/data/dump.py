"""A dump dir: what training, scoring, probes and extraction read, as raw log-mel of one front end.

Stage 2 writes one of two kinds (``--feats-type``):

* fbank (``dump/fbank_<kind>/<set>/``): ``feats.scp`` of raw (T, 128) float32 log-mel of one front
  end, ``utt2num_frames`` and ``stats.json``; one dump per front end (BEATs and EAT differ);
* raw (``dump/raw/<set>/``): ``wav.scp`` of 16-kHz mono 16-bit audio (FLAC or WAV inside ark
  files), ``utt2num_samples`` and ``stats_<kind>.json`` per front end; one dump for both models,
  whose front end (:class:`audiossl.data.fbank.BatchFbank`) then runs as the data is read.

:class:`Dump` reads either as the same thing: utterance -> raw log-mel of the asked front end
(``fbank_kind``, needed for a raw dump; checked against nothing for an fbank dump, whose front end
was fixed when it was written). Features of a raw dump equal those its fbank dump would hold within
1e-4 (``BatchFbank`` against ``compute_fbank``); a crop in frames reads and transforms only the
samples those frames cover, and gives the frames of the whole clip (EAT's clip mean is the whole
clip's).

Shards: the dump's ark files (``make_raw.sh --shard-mb``: a few hundred MB each). On a network file
system a read per clip at a random offset costs a request and a seek each; with ``sequential`` reads
a :class:`Dump` reads each ark front to back instead: a record ahead of where the file was left is
reached by reading on, and the records passed over are kept (up to ``readahead_mb``) for when they
are asked for, as they are when the sampler goes through the shards in order
(:class:`audiossl.data.sampler.ShardedBatchSampler`). The values read are the same either way.
"""
from __future__ import annotations

import io
import json
import logging
import struct
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kaldiio
import numpy as np
import torch

from audiossl.data.datadir import read_kv
from audiossl.data.fbank import FBANK_KINDS, FRAME_LENGTH, FRAME_SHIFT, BatchFbank, FeatureNorm

logger = logging.getLogger(__name__)

FEATS_TYPES = ("fbank", "raw")


def num_frames_of(num_samples: int) -> int:
    """Frames of the front ends (25 ms windows every 10 ms, snip_edges) in ``num_samples`` samples."""
    return 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT if num_samples >= FRAME_LENGTH else 0


def feats_type_of(dump_dir: str | Path) -> str:
    """"fbank" (feats.scp) or "raw" (wav.scp) for a dump dir; FileNotFoundError naming both."""
    dump_dir = Path(dump_dir)
    if (dump_dir / "feats.scp").is_file():
        return "fbank"
    if (dump_dir / "wav.scp").is_file():
        return "raw"
    raise FileNotFoundError(
        f"{dump_dir}: neither feats.scp (an fbank dump) nor wav.scp (a raw audio dump); run the feature "
        "stage (stage 2) for this set first"
    )


class Dump(Mapping):
    """The utterances of a dump dir, read as raw (T, 128) float32 log-mel (see module docstring).

    Args:
        dump_dir: an fbank dump (feats.scp) or a raw audio dump (wav.scp).
        fbank_kind: the front end ("beats" or "eat") that turns a raw dump's audio into features;
            required for a raw dump, ignored for an fbank dump.

    ``dump[utt]`` is the whole clip's features, ``dump.feats(utt, start, num)`` a crop of them;
    iteration follows the scp's order.
    """

    def __init__(self, dump_dir: str | Path, fbank_kind: str | None = None, sequential: bool = False,
                 readahead_mb: float = 256.0):
        self.dir = Path(dump_dir)
        self.type = feats_type_of(self.dir)
        self.kind = fbank_kind
        if self.type == "raw" and fbank_kind not in FBANK_KINDS:
            raise ValueError(
                f"{self.dir} is a raw audio dump (wav.scp): say which front end computes its features "
                f"(data.fbank_kind, or --fbank-kind: one of {', '.join(FBANK_KINDS)}; got {fbank_kind!r})"
            )
        self.scp = self.dir / ("feats.scp" if self.type == "fbank" else "wav.scp")
        self.entries = read_kv(self.scp, check_sorted=False)  # utt -> "<ark>:<offset>"
        self.utt_ids: list[str] = list(self.entries)
        if not self.utt_ids:
            raise ValueError(f"{self.scp}: no utterances")
        self._frontend = BatchFbank(fbank_kind) if self.type == "raw" else None
        self._arks = _ArkReader(int(readahead_mb * 2**20)) if sequential else None

    def __getstate__(self) -> dict:  # loader workers get their own open files
        state = dict(self.__dict__)
        if state["_arks"] is not None:
            state["_arks"] = _ArkReader(self._arks.limit)
        return state

    def shards(self) -> list[list[int]]:
        """Utterance indices of each ark file (shard), in file order; shards in order of first use."""
        by_ark: dict[str, list[tuple[int, int]]] = {}
        for i, utt in enumerate(self.utt_ids):
            ark, offset = _ark_offset(self.entries[utt])
            by_ark.setdefault(ark, []).append((offset, i))
        return [[i for _, i in sorted(recs)] for recs in by_ark.values()]

    def _load(self, utt: str) -> Any:
        """The stored value of ``utt``: (rate, samples) of a raw dump, the matrix of an fbank dump."""
        if self._arks is None:
            return kaldiio.load_mat(self.entries[utt])
        return self._arks.read(*_ark_offset(self.entries[utt]))

    # --- Mapping ----------------------------------------------------------------------------
    def __getitem__(self, utt: str) -> np.ndarray:
        return self.feats(utt)

    def __iter__(self) -> Iterator[str]:
        return iter(self.utt_ids)

    def __len__(self) -> int:
        return len(self.utt_ids)

    # --- reading ----------------------------------------------------------------------------
    def _where(self, utt: str) -> str:
        return f"{self.scp}: utterance {utt!r} ({self.entries.get(utt)})"

    def audio(self, utt: str) -> torch.Tensor:
        """(S,) float32 samples at 16 kHz of a raw dump's utterance."""
        assert self.type == "raw", f"{self.dir} is an fbank dump: it holds no audio"
        try:
            rate, samples = self._load(utt)
        except Exception as e:
            raise OSError(f"{self._where(utt)}: cannot read it: {e}") from e
        samples = np.asarray(samples)
        if samples.dtype.kind in "iu":  # 16-bit PCM as integers
            samples = samples.astype(np.float32) / 32768.0
        if samples.ndim != 1 or rate != 16000:
            raise ValueError(f"{self._where(utt)}: expected 16-kHz mono audio, got rate {rate}, shape {samples.shape}")
        return torch.from_numpy(samples.astype(np.float32, copy=False))

    def feats(self, utt: str, start: int = 0, num: int | None = None) -> np.ndarray:
        """Raw log-mel frames ``start .. start + num`` (all from ``start`` when None) of ``utt``."""
        if self.type == "fbank":
            try:
                mat = self._load(utt)
            except Exception as e:
                raise OSError(f"{self._where(utt)}: cannot read it: {e}") from e
            if mat.ndim != 2:
                raise ValueError(f"{self._where(utt)}: not a (frames, bins) matrix: shape {mat.shape}")
            bad = mat.size - int(np.isfinite(mat).sum())
            if bad:
                raise ValueError(f"{self._where(utt)}: {bad} of its {mat.size} feature values are NaN or infinite; "
                                 "recompute this set's features (stage 2), which lists such utterances as bad")
            return mat[start:] if num is None else mat[start:start + num]
        piece, mean = self.samples(utt, start, num)
        feats, _ = self._frontend(piece.unsqueeze(0), torch.tensor([piece.numel()]), means=mean.reshape(1))
        return feats[0].numpy()

    def samples(self, utt: str, start: int = 0, num: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A raw dump's samples that frames ``start .. start + num`` cover, and the whole clip's mean
        (EAT's front end removes it: give it as ``BatchFbank``'s ``means`` for the frames to be the
        whole clip's)."""
        wave = self.audio(utt)
        total = num_frames_of(wave.numel())
        if total == 0:
            raise ValueError(f"{self._where(utt)}: {wave.numel()} samples are fewer than one 25 ms window")
        end = total if num is None else min(start + num, total)
        assert 0 <= start < end, f"{self._where(utt)}: frames {start}..{end} of a {total}-frame clip"
        return wave[start * FRAME_SHIFT: (end - 1) * FRAME_SHIFT + FRAME_LENGTH], wave.mean()

    def num_frames(self) -> list[int]:
        """Frames of every utterance, in order: from utt2num_frames (fbank) or utt2num_samples (raw)
        when they list them all, else by reading every clip."""
        side = self.dir / ("utt2num_frames" if self.type == "fbank" else "utt2num_samples")
        if side.is_file():
            kv = read_kv(side, check_sorted=False)
            if all(u in kv for u in self.utt_ids):
                counts = [int(kv[u]) for u in self.utt_ids]
                return counts if self.type == "fbank" else [num_frames_of(n) for n in counts]
        logger.warning("%s: no complete %s; reading every clip to get its length", self.dir, side.name)
        return [int(self.feats(u).shape[0]) for u in self.utt_ids]


def stats_path(dump_dir: str | Path, fbank_kind: str | None = None) -> Path:
    """The statistics file of a dump's features: stats.json of an fbank dump, stats_<kind>.json of a
    raw one (a dir with wav.scp and no feats.scp)."""
    dump_dir = Path(dump_dir)
    raw = (dump_dir / "wav.scp").is_file() and not (dump_dir / "feats.scp").is_file()
    return dump_dir / (f"stats_{fbank_kind}.json" if raw else "stats.json")


def read_stats_norm(dump_dir: str | Path, fbank_kind: str | None = None) -> FeatureNorm:
    """The corpus's global mean/std of a dump's features (:func:`stats_path`) as a FeatureNorm."""
    path = stats_path(dump_dir, fbank_kind)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such statistics file; compute it (stage 2, or python -m audiossl.bin.compute_stats) "
            "or set data.norm_mean and data.norm_std"
        )
    stats = json.loads(path.read_text())
    try:
        return FeatureNorm(mean=float(stats["mean"]), std=float(stats["std"]))
    except KeyError as e:
        raise ValueError(f"{path}: missing key {e.args[0]!r}") from None


def _ark_offset(entry: str) -> tuple[str, int]:
    """``<ark>:<offset>`` -> (ark path, offset of the value)."""
    ark, _, offset = entry.rpartition(":")
    if not ark or not offset.isdigit():
        raise ValueError(f"{entry!r}: not an '<ark>:<offset>' entry (segments of an ark are not supported here)")
    return ark, int(offset)


class _ArkReader:
    """Values of Kaldi ark files by offset, reading each file front to back where it can.

    Per file it keeps one open handle and where it stopped. A value at or ahead of that point is
    reached by reading on: the records passed over are parsed (key, then one value) and kept, up to
    ``limit`` bytes over all files (the oldest dropped first), for a later request; a value behind it,
    or dropped, is read with a seek. Values: kaldiio's ``read_kaldi`` (matrices, and audio stored by
    its soundfile writer, ``AUDIO`` + length + the file's bytes, kept undecoded until asked for).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.files: dict[str, Any] = {}
        self.kept: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.kept_bytes = 0

    def read(self, ark: str, offset: int) -> Any:
        raw = self.kept.pop((ark, offset), None)
        if raw is not None:
            self.kept_bytes -= len(raw)
            return kaldiio.matio.read_kaldi(io.BytesIO(raw))
        fh = self.files.get(ark)
        if fh is None:
            fh = self.files[ark] = open(ark, "rb")
        pos = fh.tell()
        if pos > offset or offset - pos > self.limit:  # behind, or too far to read on: seek
            fh.seek(offset)
            return kaldiio.matio.read_kaldi(io.BytesIO(self._record(fh)))
        while fh.tell() < offset:  # read on, keeping what is passed over
            key_end = self._skip_key(fh)
            if key_end is None:
                break
            raw = self._record(fh)
            if key_end == offset:
                return kaldiio.matio.read_kaldi(io.BytesIO(raw))
            self._keep((ark, key_end), raw)
        if fh.tell() != offset:  # the offset is not where a record starts: read it where the scp says
            fh.seek(offset)
        return kaldiio.matio.read_kaldi(io.BytesIO(self._record(fh)))

    @staticmethod
    def _skip_key(fh) -> int | None:
        """Read ``<key> `` at the file position; returns the value's offset (None at the end)."""
        while True:
            c = fh.read(1)
            if not c:
                return None
            if c == b" ":
                return fh.tell()

    @staticmethod
    def _record(fh) -> bytes:
        """The bytes of one value at the file position, which is left after it."""
        start = fh.tell()
        head = fh.read(5)
        if head == b"AUDIO":  # kaldiio's soundfile writer: AUDIO, a length header, the audio file
            (width,) = struct.unpack("<B", fh.read(1))
            length = int.from_bytes(fh.read(width), "little")
            return head + bytes([width]) + length.to_bytes(width, "little") + fh.read(length)
        fh.seek(start)
        kaldiio.matio.read_kaldi(fh)  # a matrix: let kaldiio find its end
        end = fh.tell()
        fh.seek(start)
        return fh.read(end - start)

    def _keep(self, key: tuple[str, int], raw: bytes) -> None:
        if key in self.kept:
            self.kept_bytes -= len(self.kept.pop(key))
        self.kept[key] = raw
        self.kept_bytes += len(raw)
        while self.kept_bytes > self.limit and self.kept:
            _, old = self.kept.popitem(last=False)
            self.kept_bytes -= len(old)
