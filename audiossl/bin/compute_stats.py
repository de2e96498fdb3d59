"""Global and per-bin mean/std of the features in a Kaldi scp, streamed in float64.

Usage:
    python -m audiossl.bin.compute_stats <feats-scp> <stats.json>

e.g.:
    python -m audiossl.bin.compute_stats dump/fbank_beats/train/feats.scp dump/fbank_beats/train/stats.json

Writes {"mean", "std", "num_frames", "mean_per_bin", "std_per_bin", "num_silent_frames"}:
"mean"/"std" over every frame and bin (what a model's ``(x - mean) / (2 * std)`` normalisation
takes), the per-bin ones over frames. Frames of digital silence (zero-padded audio) are left out
and counted in "num_silent_frames". Standard deviations are population ones (ddof=0).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kaldiio

from audiossl.data.fbank import StatsAccumulator, write_stats
from audiossl.bin.common import setup_logging

logger = logging.getLogger("audiossl.bin.compute_stats")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    num_utts = 0
    for _, feats in kaldiio.load_scp_sequential(args.feats_scp):
        acc.add(feats)
        num_utts += 1
    if acc.count == 0:
        logger.error("%s: no frames to compute statistics from (%d frames of digital silence left out)",
                     args.feats_scp, acc.num_silent)
        return 1
    stats = acc.result()
    write_stats(stats, args.stats_json)
    logger.info(
        "%s: %d utterances, %d frames (%d of digital silence left out), mean %.5f, std %.5f -> %s",
        args.feats_scp, num_utts, stats.num_frames, stats.num_silent_frames, stats.mean, stats.std, args.stats_json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
