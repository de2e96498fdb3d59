"""Compute log-mel fbank features of a data directory into a Kaldi ark/scp pair.

Usage:
    python -m audiossl.bin.compute_fbank --kind beats|eat [--skip-bad true|false] \\
        <data-dir> <feats-ark> <feats-scp> <bad-list>

e.g.:
    python -m audiossl.bin.compute_fbank --kind beats data/train/split4/1 \\
        dump/fbank_beats/train/data/feats.1.ark dump/fbank_beats/train/data/feats.1.scp \\
        dump/fbank_beats/train/data/bad.1

Each utterance is loaded (16 kHz mono), turned into raw (T, 128) float32 log-mel features by the
official front end of ``--kind`` (audiossl.data.fbank) and written with kaldiio. An utterance that
cannot be used (missing, corrupt, empty or too short audio, a failing pipe, audio whose features are
NaN or infinite) is listed in <bad-list>
as ``<utt> <path> <reason>`` (the path shell-quoted; a pipe's command) and skipped; the program then exits 1 unless ``--skip-bad true``.
``<utt> <num_frames>`` lines go to ``--utt2num-frames`` (default: next to <feats-scp>, ``feats.N.scp``
-> ``utt2num_frames.N``). Normally run by utils/make_fbank.sh, one job per split.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import kaldiio
import torch

from audiossl.data.audio import AudioError, iter_utterances, spec_path
from audiossl.data.datadir import DataDirError, load_data_dir
from audiossl.data.fbank import FBANK_KINDS, MIN_SAMPLES, SAMPLE_RATE, compute_fbank
from audiossl.bin.common import str2bool, setup_logging

logger = logging.getLogger("audiossl.bin.compute_fbank")



def default_utt2num_frames(feats_scp: str) -> str:
    """``.../feats.N.scp`` -> ``.../utt2num_frames.N``; ``.../x.scp`` -> ``.../x.utt2num_frames``."""
    path = Path(feats_scp)
    name = path.name[: -len(".scp")] if path.name.endswith(".scp") else path.name
    if name == "feats" or name.startswith("feats."):
        return str(path.with_name("utt2num_frames" + name[len("feats"):]))
    return str(path.with_name(name + ".utt2num_frames"))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", required=True, choices=FBANK_KINDS, help="whose front end to use")
    parser.add_argument("--skip-bad", type=str2bool, default=False,
                        help="true: exit 0 even if some utterances were bad (they are still listed)")
    parser.add_argument("--utt2num-frames", default=None, help="where to write '<utt> <num_frames>' lines")
    parser.add_argument("--log-interval", type=int, default=1000, help="log progress every N utterances")
    parser.add_argument("--num-threads", type=int, default=1,
                        help="torch threads per job (jobs run side by side: keep it 1)")
    parser.add_argument("data_dir", help="Kaldi-style data directory (wav.scp, optional segments)")
    parser.add_argument("feats_ark", help="output ark file")
    parser.add_argument("feats_scp", help="output scp file")
    parser.add_argument("bad_list", help="output list of skipped utterances: '<utt> <path> <reason>'")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    logger.info("%s", " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])))
    torch.set_num_threads(args.num_threads)
    try:
        data = load_data_dir(args.data_dir)
    except DataDirError as e:
        logger.error("%s", e)
        return 1
    utt2num_frames = args.utt2num_frames or default_utt2num_frames(args.feats_scp)
    for out in (args.feats_ark, args.feats_scp, args.bad_list, utt2num_frames):
        Path(out).parent.mkdir(parents=True, exist_ok=True)

    total = len(data.utt_ids)
    num_done = num_bad = num_frames_total = 0
    t0 = time.perf_counter()
    with open(args.bad_list, "w", encoding="utf-8") as bad, \
            open(utt2num_frames, "w", encoding="utf-8") as frames_out, \
            kaldiio.WriteHelper(f"ark,scp:{args.feats_ark},{args.feats_scp}") as writer:

        def report_bad(utt: str, err: AudioError) -> None:
            nonlocal num_bad
            num_bad += 1
            logger.warning("bad utterance %s: %s", utt, err)
            reason = " ".join(err.reason.split())  # one line, even for a multi-line stderr tail
            bad.write(f"{utt} {shlex.quote(err.path)} {reason}\n")

        for utt, wav in iter_utterances(data, target_sr=SAMPLE_RATE, on_error=report_bad):
            if wav.numel() < MIN_SAMPLES:
                report_bad(utt, AudioError(spec_path(data.audio_spec(utt)[0]),
                                           f"too short: {wav.numel()} samples give no 25 ms frame"))
                continue
            feats = compute_fbank(wav, args.kind)  # (T, 128)
            bad_values = feats.numel() - int(torch.isfinite(feats).sum())
            if bad_values:
                bad_samples = wav.numel() - int(torch.isfinite(wav).sum())
                report_bad(utt, AudioError(spec_path(data.audio_spec(utt)[0]),
                                           f"non-finite features: {bad_values} NaN/inf values "
                                           f"({bad_samples} non-finite audio samples)"))
                continue
            writer(utt, feats.numpy())
            frames_out.write(f"{utt} {feats.shape[0]}\n")
            num_done += 1
            num_frames_total += feats.shape[0]
            if (num_done + num_bad) % args.log_interval == 0:
                rate = (num_done + num_bad) / max(time.perf_counter() - t0, 1e-9)
                logger.info("%d / %d utterances (%d bad), %.1f utts/s", num_done + num_bad, total, num_bad, rate)

    elapsed = time.perf_counter() - t0
    logger.info(
        "wrote %d utterances (%d frames) to %s in %.1f s (%.1f utts/s); %d bad listed in %s",
        num_done, num_frames_total, args.feats_scp, elapsed, (num_done + num_bad) / max(elapsed, 1e-9),
        num_bad, args.bad_list,
    )
    if num_bad and not args.skip_bad:
        logger.error(
            "%d of %d utterances could not be used; they are listed in %s. Fix or remove them from %s, "
            "or rerun with --skip-bad true to leave them out.", num_bad, total, args.bad_list, args.data_dir,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
