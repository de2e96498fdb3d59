"""Global and per-bin mean/std of the features in a Kaldi scp, streamed in float64.

Usage:
    python -m audiossl.bin.compute_stats [--kind beats|eat] [--skip-bad true|false] <scp> <stats.json>
    python -m audiossl.bin.compute_stats [--kind beats|eat] --partial true <scp> <part.json>
    python -m audiossl.bin.compute_stats --merge true <part.json> [<part.json> ...] <stats.json>

e.g.:
    python -m audiossl.bin.compute_stats dump/fbank_beats/train/feats.scp dump/fbank_beats/train/stats.json
    python -m audiossl.bin.compute_stats --kind eat dump/raw/train/wav.scp dump/raw/train/stats_eat.json

Writes {"mean", "std", "num_frames", "mean_per_bin", "std_per_bin", "num_silent_frames"}:
"mean"/"std" over every frame and bin (what a model's ``(x - mean) / (2 * std)`` normalisation
takes), the per-bin ones over frames. Frames of digital silence (zero-padded audio) are left out
and counted in "num_silent_frames". Standard deviations are population ones (ddof=0).
An utterance with NaN or infinite values is named and makes the program exit 1 without writing
stats.json, unless ``--skip-bad true``: then it is left out of the statistics (and still named).

<scp> is a feature scp (a dump's feats.scp) or, with ``--kind``, an audio scp (a raw dump's wav.scp,
``(16000, samples)`` per utterance): the fbank of the ``kind`` front end (audiossl.data.fbank) is then
computed on the fly. A corpus can be done in parts: ``--partial true`` writes a part's accumulator
instead of the statistics, and ``--merge true`` combines such parts into stats.json (utils/make_raw.sh
does this, one part per job).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch

from audiossl.data.datadir import atomic_write_text
from audiossl.data.fbank import FBANK_KINDS, SAMPLE_RATE, StatsAccumulator, compute_fbank, write_stats
from audiossl.bin.common import setup_logging, str2bool

logger = logging.getLogger("audiossl.bin.compute_stats")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", default=None, choices=FBANK_KINDS,
                        help="<scp> holds audio: compute this front end's fbank from it (default: <scp> holds features)")
    parser.add_argument("--skip-bad", type=str2bool, default=False,
                        help="true: leave utterances with NaN/inf values out of the statistics instead of failing")
    parser.add_argument("--partial", type=str2bool, default=False,
                        help="true: write the accumulator of this part (for --merge true) instead of stats.json")
    parser.add_argument("--merge", type=str2bool, default=False,
                        help="true: the inputs are --partial outputs; combine them into stats.json")
    parser.add_argument("--log-interval", type=int, default=1000, help="with --kind: log progress every N utterances")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (with --kind)")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="<scp> <stats.json>; with --merge true: <part.json> ... <stats.json>")
    return parser


def iter_features(scp: str, kind: str | None, log_interval: int):
    """Yield (utt, (T, F) features) of a feature scp, or of an audio scp through ``kind``'s fbank."""
    t0 = time.perf_counter()
    for i, (utt, value) in enumerate(kaldiio.load_scp_sequential(scp), start=1):
        is_audio = isinstance(value, tuple)
        if kind is None and is_audio:
            raise ValueError(f"{scp}: utterance {utt} is audio, not features; pass --kind beats|eat")
        if kind is None:
            yield utt, value
            continue
        if not is_audio:
            raise ValueError(f"{scp}: utterance {utt} is a feature matrix, not audio; drop --kind")
        rate, samples = value
        if rate != SAMPLE_RATE or samples.ndim != 1:
            raise ValueError(f"{scp}: utterance {utt} is {samples.ndim}-D audio at {rate} Hz; "
                             f"expected mono at {SAMPLE_RATE} Hz (utils/make_raw.sh writes that)")
        yield utt, compute_fbank(torch.from_numpy(samples.astype(np.float32)), kind)
        if i % log_interval == 0:
            logger.info("%s: %d utterances, %.1f utts/s", scp, i, i / max(time.perf_counter() - t0, 1e-9))


def merge_parts(parts: list[str]) -> StatsAccumulator:
    acc = StatsAccumulator()
    for part in parts:
        acc.merge(StatsAccumulator.from_state_dict(json.loads(Path(part).read_text(encoding="utf-8"))))
    return acc


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.num_threads)
    *inputs, out = args.paths
    if not inputs or (len(inputs) > 1 and not args.merge):
        get_parser().print_usage(sys.stderr)
        logger.error("expected one <scp> and one output%s, got %d paths",
                     "" if args.merge else " (several inputs only with --merge true)", len(args.paths))
        return 1
    missing = [p for p in inputs if not Path(p).is_file()]
    if missing:
        logger.error("%s: no such file; run the %s first", ", ".join(missing),
                     "parts (--partial true)" if args.merge else "feature extraction")
        return 1
    if args.merge:
        acc, num_utts, bad = merge_parts(inputs), None, []
        source = f"{len(inputs)} parts"
    else:
        source = inputs[0]
        acc = StatsAccumulator()
        num_utts, bad = 0, []
        try:
            for utt, feats in iter_features(source, args.kind, args.log_interval):
                feats = np.asarray(feats)
                values = feats.size - int(np.isfinite(feats).sum())
                if values:
                    logger.warning("%s: utterance %s has %d NaN/inf values of %d%s", source, utt, values,
                                   feats.size, ": left out" if args.skip_bad else "")
                    bad.append(utt)
                    continue
                acc.add(feats)
                num_utts += 1
        except ValueError as e:
            logger.error("%s", e)
            return 1
    if bad and not args.skip_bad:
        logger.error("%s: %d utterance(s) with NaN/inf features (%s%s); no statistics written. Recompute the "
                     "features (compute_fbank lists such audio as bad), or rerun with --skip-bad true to leave "
                     "them out", source, len(bad), ", ".join(bad[:5]), ", ..." if len(bad) > 5 else "")
        return 1
    if args.partial:
        atomic_write_text(out, json.dumps(acc.state_dict()) + "\n")
        logger.info("%s: %d utterances (%d with NaN/inf left out), %d frames (%d of digital silence left out) "
                    "-> accumulator %s", source, num_utts, len(bad), acc.count, acc.num_silent, out)
        return 0
    if acc.count == 0:
        logger.error("%s: no frames to compute statistics from (%d frames of digital silence left out)",
                     source, acc.num_silent)
        return 1
    stats = acc.result()
    write_stats(stats, out)
    utts = "" if num_utts is None else f"{num_utts} utterances ({len(bad)} with NaN/inf left out), "
    logger.info(
        "%s: %s%d frames (%d of digital silence left out), mean %.5f, std %.5f -> %s",
        source, utts, stats.num_frames, stats.num_silent_frames, stats.mean, stats.std, out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
