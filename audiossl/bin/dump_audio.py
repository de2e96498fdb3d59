"""Dump the audio of a data directory, 16 kHz mono 16-bit, into a Kaldi ark/scp pair (FLAC or WAV).

Usage:
    python -m audiossl.bin.dump_audio [--audio-format flac|wav] [--skip-bad true|false] \\
        <data-dir> <wav-ark> <wav-scp> <bad-list>

e.g.:
    python -m audiossl.bin.dump_audio --audio-format flac data/train/split4/1 \\
        dump/raw/train/data/wav.1.ark dump/raw/train/data/wav.1.scp dump/raw/train/data/bad.1

Each utterance is loaded (audiossl.data.audio: segments and pipes, channels averaged, resampled once
to 16 kHz), quantised to 16-bit PCM (round(x * 32768)) and written with kaldiio's "soundfile" writer
as a FLAC (default) or WAV file inside the ark. ``kaldiio.load_scp(<wav-scp>)[utt]`` gives it back as
``(16000, samples)``, float64 samples k / 32768 for the stored 16-bit values k.

Samples outside [-1, 32767/32768] (float sources above full scale, resampling overshoot) cannot be
stored in 16 bits: they are clipped, never wrapped. Each clipped utterance is logged and listed in
``--clipped`` as ``<utt> <num_clipped_samples> <peak>`` (peak: the largest |sample| before clipping).

An utterance that cannot be used (missing, corrupt, empty audio, shorter than one 25 ms window, a
failing pipe, NaN or infinite samples) is listed in <bad-list> as ``<utt> <path> <reason>`` (the path
shell-quoted; a pipe's command) and skipped; the program then exits 1 unless ``--skip-bad true``.
``<utt> <num_samples>`` lines go to ``--utt2num-samples`` (default: ``wav.N.scp`` ->
``utt2num_samples.N`` next to <wav-scp>). Normally run by utils/make_raw.sh, one job per split.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch

from audiossl.bin.common import setup_logging, str2bool
from audiossl.data.audio import AudioError, iter_utterances, spec_path
from audiossl.data.datadir import DataDirError, load_data_dir
from audiossl.data.fbank import MIN_SAMPLES, SAMPLE_RATE

logger = logging.getLogger("audiossl.bin.dump_audio")

AUDIO_FORMATS = ("flac", "wav")
INT16_SCALE = 32768  # sample k of 16-bit PCM is k / 32768 in [-1, 1)


def to_int16(wav: torch.Tensor) -> tuple[np.ndarray, int, float]:
    """(S,) float samples in [-1, 1) -> (int16 samples, number of clipped samples, peak |x|)."""
    scaled = np.rint(wav.numpy().astype(np.float64) * INT16_SCALE)
    info = np.iinfo(np.int16)
    num_clipped = int(np.count_nonzero((scaled < info.min) | (scaled > info.max)))
    peak = float(np.abs(wav.numpy()).max()) if wav.numel() else 0.0
    return np.clip(scaled, info.min, info.max).astype(np.int16), num_clipped, peak


def default_side_file(wav_scp: str, stem: str) -> str:
    """``.../wav.N.scp`` -> ``.../<stem>.N``; ``.../x.scp`` -> ``.../x.<stem>``."""
    path = Path(wav_scp)
    name = path.name[: -len(".scp")] if path.name.endswith(".scp") else path.name
    if name == "wav" or name.startswith("wav."):
        return str(path.with_name(stem + name[len("wav"):]))
    return str(path.with_name(f"{name}.{stem}"))


class ShardedArk:
    """The ark files of one job: ``wav.N.ark``, then ``wav.N_1.ark``, ``wav.N_2.ark``, ... each begun
    once the previous one holds ``shard_mb`` MB (0: one file)."""

    def __init__(self, path: str, shard_mb: float):
        self.path, self.limit = Path(path), int(shard_mb * 2**20)
        self.count = 0
        self.fh = open(self.path, "wb")

    def file(self):
        """The ark to append the next utterance to."""
        if self.limit and self.fh.tell() >= self.limit:
            self.fh.close()
            self.count += 1
            self.fh = open(self.path.with_name(f"{self.path.stem}_{self.count}{self.path.suffix}"), "wb")
        return self.fh

    def __enter__(self) -> "ShardedArk":
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audio-format", default="flac", choices=AUDIO_FORMATS,
                        help="container of each utterance in the ark (both 16-bit PCM; FLAC is lossless and smaller)")
    parser.add_argument("--skip-bad", type=str2bool, default=False,
                        help="true: exit 0 even if some utterances were bad (they are still listed)")
    parser.add_argument("--utt2num-samples", default=None, help="where to write '<utt> <num_samples>' lines")
    parser.add_argument("--clipped", default=None,
                        help="where to list clipped utterances '<utt> <num_clipped> <peak>' (default: clipped.N)")
    parser.add_argument("--shard-mb", type=float, default=256.0,
                        help="start a new ark file once one holds this many MB: shards that training can read "
                             "front to back (data.reading sequential); 0: one ark [256]")
    parser.add_argument("--log-interval", type=int, default=1000, help="log progress every N utterances")
    parser.add_argument("--num-threads", type=int, default=1,
                        help="torch threads per job (jobs run side by side: keep it 1)")
    parser.add_argument("data_dir", help="Kaldi-style data directory (wav.scp, optional segments)")
    parser.add_argument("wav_ark", help="output ark file")
    parser.add_argument("wav_scp", help="output scp file ('<utt> <ark>:<offset>' lines)")
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
    utt2num_samples = args.utt2num_samples or default_side_file(args.wav_scp, "utt2num_samples")
    clipped_list = args.clipped or default_side_file(args.wav_scp, "clipped")
    for out in (args.wav_ark, args.wav_scp, args.bad_list, utt2num_samples, clipped_list):
        Path(out).parent.mkdir(parents=True, exist_ok=True)

    total = len(data.utt_ids)
    num_done = num_bad = num_clipped_utts = num_samples_total = 0
    t0 = time.perf_counter()
    with open(args.bad_list, "w", encoding="utf-8") as bad, \
            open(utt2num_samples, "w", encoding="utf-8") as samples_out, \
            open(clipped_list, "w", encoding="utf-8") as clipped_out, \
            open(args.wav_scp, "w", encoding="utf-8") as scp, ShardedArk(args.wav_ark, args.shard_mb) as arks:

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
            bad_samples = wav.numel() - int(torch.isfinite(wav).sum())
            if bad_samples:  # the loader refuses non-finite input; resampling huge values can overflow
                report_bad(utt, AudioError(spec_path(data.audio_spec(utt)[0]),
                                           f"non-finite audio: {bad_samples} NaN/inf samples after resampling"))
                continue
            pcm, num_clipped, peak = to_int16(wav)
            if num_clipped:
                num_clipped_utts += 1
                logger.warning("utterance %s: %d of %d samples outside [-1, 1) clipped (peak %.4f)",
                               utt, num_clipped, pcm.size, peak)
                clipped_out.write(f"{utt} {num_clipped} {peak:.6g}\n")
            # kaldiio mutates write_kwargs (it adds a default format): a fresh dict each time
            kaldiio.save_ark(arks.file(), {utt: (SAMPLE_RATE, pcm)}, scp=scp, write_function="soundfile",
                             write_kwargs={"format": args.audio_format, "subtype": "PCM_16"})
            samples_out.write(f"{utt} {pcm.size}\n")
            num_done += 1
            num_samples_total += pcm.size
            if (num_done + num_bad) % args.log_interval == 0:
                rate = (num_done + num_bad) / max(time.perf_counter() - t0, 1e-9)
                logger.info("%d / %d utterances (%d bad), %.1f utts/s", num_done + num_bad, total, num_bad, rate)

    elapsed = time.perf_counter() - t0
    logger.info(
        "wrote %d utterances (%.1f h of audio) as %s to %s in %.1f s (%.1f utts/s); %d clipped, listed in %s; "
        "%d bad listed in %s",
        num_done, num_samples_total / SAMPLE_RATE / 3600, args.audio_format, args.wav_scp, elapsed,
        (num_done + num_bad) / max(elapsed, 1e-9), num_clipped_utts, clipped_list, num_bad, args.bad_list,
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
