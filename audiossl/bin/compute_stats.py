"""Global and per-bin mean/std of the features in a Kaldi scp, streamed in float64.

Usage:
    python -m audiossl.bin.compute_stats [--skip-bad true|false] <feats-scp> <stats.json>

e.g.:
    python -m audiossl.bin.compute_stats dump/fbank_beats/train/feats.scp dump/fbank_beats/train/stats.json

Writes {"mean", "std", "num_frames", "mean_per_bin", "std_per_bin", "num_silent_frames"}:
"mean"/"std" over every frame and bin (what a model's ``(x - mean) / (2 * std)`` normalisation
takes), the per-bin ones over frames. Frames of digital silence (zero-padded audio) are left out
and counted in "num_silent_frames". Standard deviations are population ones (ddof=0).
An utterance with NaN or infinite values is named and makes the program exit 1 without writing
stats.json, unless ``--skip-bad true``: then it is left out of the statistics (and still named).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kaldiio
import numpy as np

from audiossl.data.fbank import StatsAccumulator, write_stats
from audiossl.bin.common import setup_logging, str2bool

logger = logging.getLogger("audiossl.bin.compute_stats")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-bad", type=str2bool, default=False,
                        help="true: leave utterances with NaN/inf values out of the statistics instead of failing")
    parser.add_argument("feats_scp", help="Kaldi scp of (T, F) feature matrices")
    parser.add_argument("stats_json", help="output stats.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    if not Path(args.feats_scp).is_file():
        logger.error("%s: no such file; run the feature extraction first", args.feats_scp)
        return 1
    acc = StatsAccumulator()
    num_utts, bad = 0, []
    for utt, feats in kaldiio.load_scp_sequential(args.feats_scp):
        values = feats.size - int(np.isfinite(feats).sum())
        if values:
            logger.warning("%s: utterance %s has %d NaN/inf values of %d%s", args.feats_scp, utt, values,
                           feats.size, ": left out" if args.skip_bad else "")
            bad.append(utt)
            continue
        acc.add(feats)
        num_utts += 1
    if bad and not args.skip_bad:
        logger.error("%s: %d utterance(s) with NaN/inf features (%s%s); no statistics written. Recompute the "
                     "features (compute_fbank lists such audio as bad), or rerun with --skip-bad true to leave "
                     "them out", args.feats_scp, len(bad), ", ".join(bad[:5]), ", ..." if len(bad) > 5 else "")
        return 1
    if acc.count == 0:
        logger.error("%s: no frames to compute statistics from (%d frames of digital silence left out)",
                     args.feats_scp, acc.num_silent)
        return 1
    stats = acc.result()
    write_stats(stats, args.stats_json)
    logger.info(
        "%s: %d utterances (%d with NaN/inf left out), %d frames (%d of digital silence left out), "
        "mean %.5f, std %.5f -> %s", args.feats_scp, num_utts, len(bad), stats.num_frames, stats.num_silent_frames, stats.mean, stats.std, args.stats_json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
