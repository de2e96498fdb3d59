"""Prepare ESC-50 data dirs, one per cross-validation split, from the official archive.

Usage:
    python -m audiossl.bin.prepare_esc50 --esc50-root DIR [--nj N] <out-dir>

e.g.:
    python -m audiossl.bin.prepare_esc50 --esc50-root downloads/ESC-50-master data

Writes <out-dir>/fold<k>/train (the other four folds) and <out-dir>/fold<k>/test (fold k) for
k = 1..5, and <out-dir>/all, each with wav.scp, utt2label, utt2dur and labels.txt (the categories in
target order), plus <out-dir>/labels.txt.
"""
from __future__ import annotations

import argparse
import logging
import sys

from audiossl.data.corpora.esc50 import prepare_esc50
from audiossl.data.datadir import DataDirError
from audiossl.bin.common import setup_logging

logger = logging.getLogger("audiossl.bin.prepare_esc50")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--esc50-root", required=True, help="the unpacked archive, with meta/esc50.csv and audio/")
    parser.add_argument("--nj", type=int, default=4, help="threads reading audio headers (default: %(default)s)")
    parser.add_argument("out_dir", help="output directory for the data dirs, e.g. data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        report = prepare_esc50(args.esc50_root, args.out_dir, nj=args.nj)
    except (FileNotFoundError, ValueError, DataDirError) as err:
        logger.error("%s", err)
        return 1
    logger.info("%d categories, %d clips missing", len(report.categories), report.num_missing)
    for name, s in report.sets.items():
        logger.info("%s: %d clips, %d missing, %d unreadable headers", name, s.num_utts, s.num_missing, s.num_unreadable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
