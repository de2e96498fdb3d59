"""Prepare AudioSet data dirs from the official CSVs and the clips you fetched yourself.

Usage:
    python -m audiossl.bin.prepare_audioset --audioset-root DIR [--audio-dir DIR] [--sets A,B]
        [--unknown-mids error|skip] [--nj N] <out-dir>

e.g.:
    python -m audiossl.bin.prepare_audioset --audioset-root downloads/audioset --sets balanced_train,eval data

Writes <out-dir>/<set>/{wav.scp,utt2label,utt2dur,labels.txt} for each set (balanced_train = AS-20K,
unbalanced_train, train_as2m = both training sets = AS-2M, eval; all four by default), and
<out-dir>/labels.txt. Clips the CSVs list but the audio dir lacks are listed in
<out-dir>/<set>/missing.txt; malformed CSV rows are skipped and logged with their file and line.
"""
from __future__ import annotations

import argparse
import logging
import sys

from audiossl.data.corpora.audioset import AUDIOSET_SETS, DEFAULT_SETS, UNKNOWN_MID_POLICIES, prepare_audioset
from audiossl.data.datadir import DataDirError
from audiossl.bin.common import setup_logging

logger = logging.getLogger("audiossl.bin.prepare_audioset")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--audioset-root", required=True,
        help="directory with class_labels_indices.csv and the *_segments.csv files",
    )
    parser.add_argument(
        "--audio-dir", default=None, help="where the clips are, searched recursively (default: <audioset-root>/audio)"
    )
    parser.add_argument(
        "--sets", default=" ".join(DEFAULT_SETS),
        help=f"sets to write, separated by spaces or commas, from: {' '.join(AUDIOSET_SETS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--unknown-mids", default="error", choices=UNKNOWN_MID_POLICIES,
        help="a label not in class_labels_indices.csv: stop, or drop it and count (default: %(default)s)",
    )
    parser.add_argument("--nj", type=int, default=4, help="threads reading audio headers (default: %(default)s)")
    parser.add_argument("out_dir", help="output directory for the data dirs, e.g. data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        report = prepare_audioset(
            args.audioset_root, args.out_dir, audio_dir=args.audio_dir, sets=args.sets.replace(",", " ").split(),
            unknown_mids=args.unknown_mids, nj=args.nj,
        )
    except (FileNotFoundError, ValueError, DataDirError) as err:
        logger.error("%s", err)
        return 1
    seg = report.segments
    logger.info(
        "%d bad CSV rows skipped, %d unknown labels dropped (%d rows left without a label), "
        "%d audio files found (%d duplicates ignored)",
        seg.num_bad_rows, seg.num_unknown_mids, seg.num_rows_without_known_mid,
        report.num_audio_files, report.num_duplicate_files,
    )
    for s in report.sets.values():
        logger.info(
            "%s: %d clips, %d missing, %d unreadable headers", s.data_dir, s.num_utts, s.num_missing, s.num_unreadable
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
