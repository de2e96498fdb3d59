"""Prepare Speech Commands V2 data dirs from the official v0.02 tarball.

Usage:
    python -m audiossl.bin.prepare_spc2 --spc2-root DIR [--nj N] <out-dir>

e.g.:
    python -m audiossl.bin.prepare_spc2 --spc2-root downloads/speech_commands_v0.02 data

Writes <out-dir>/{train,valid,test} (splits exactly as validation_list.txt and testing_list.txt say;
the rest is train), each with wav.scp, utt2label, utt2dur and labels.txt (the 35 words sorted),
<out-dir>/background_noise/{wav.scp,utt2dur} from _background_noise_/, and <out-dir>/labels.txt.
"""
from __future__ import annotations

import argparse
import logging
import sys

from audiossl.data.corpora.spc2 import prepare_spc2
from audiossl.data.datadir import DataDirError
from audiossl.bin.common import setup_logging

logger = logging.getLogger("audiossl.bin.prepare_spc2")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spc2-root", required=True, help="the unpacked tarball: word folders and the split lists")
    parser.add_argument("--nj", type=int, default=4, help="threads reading audio headers (default: %(default)s)")
    parser.add_argument("out_dir", help="output directory for the data dirs, e.g. data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        report = prepare_spc2(args.spc2_root, args.out_dir, nj=args.nj)
    except (FileNotFoundError, ValueError, DataDirError) as err:
        logger.error("%s", err)
        return 1
    logger.info("%d words, %d listed files missing", len(report.words), len(report.missing))
    for name, s in report.sets.items():
        logger.info("%s: %d clips, %d missing, %d unreadable headers", name, s.num_utts, s.num_missing, s.num_unreadable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
