"""Throughput of the real EAT / BEATs / fine-tuning training steps, a bare ViT-B at the same token
shapes, and the feature loader; one JSON line per case on stdout.

Usage:
    python -m audiossl.bin.benchmark [--device auto|cpu|cuda] [--cases eat,beats,finetune,bare,loader]
        [--batch-sizes N[,N...] | CASE=N[,N...] ...] [--steps N] [--warmup N] [--repeats N] [--tiny]
        [--compile] [--precision auto|bf16|fp32] [--beats-tokenizer random|distilled]
        [--feats-scp dump/fbank_eat/train/feats.scp] [--wav-scp dump/raw/train/wav.scp]
        [--num-workers N] [--loader-batches N]
        [--num-threads N] [--no-sync-check] [--seed N] [--verbose]

e.g.:
    python -m audiossl.bin.benchmark --tiny --device cpu
    python -m audiossl.bin.benchmark --cases eat,bare --batch-sizes eat=12,48 --compile
    python -m audiossl.bin.benchmark --cases loader --feats-scp egs/audioset/dump/fbank_eat/eval/feats.scp
    python -m audiossl.bin.benchmark --cases loader --device cpu --num-workers 1 --num-threads 1

Defaults: on CUDA the paper batches (EAT 12 and 48 clips x 16 clones, BEATs 48 and 192, fine-tuning
48, loader 48), 20 timed steps after 5 warm-up steps, 3 repeats, bf16; on CPU 1 clip per step, 3
steps after 1, 3 repeats, fp32. Every real line reports its clips/s as a fraction of the bare ViT
("efficiency") timed just before it in the same run, its FLOP/s and the fraction of the matmul peak
measured at the start of the run ("mfu"). The loader case, without --feats-scp / --wav-scp, writes
synthetic 10-s clips as fbank, raw FLAC and raw WAV dumps, prints their sizes ("storage" lines) and
times the loader on each format and front end; with one worker (--num-workers 1) its clips/s is the
rate of one loader core, and each line gives the loader cores 8 GPUs need. The keys of each line
are listed in audiossl/train/benchmark.py. Logs go to stderr.
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from audiossl.train.benchmark import BEATS_TOKENIZERS, CASES, MODEL_CASES, BenchOptions, format_result, run_benchmark
from audiossl.train.logging import setup_logging

logger = logging.getLogger("audiossl.bin.benchmark")


def parse_cases(text: str) -> tuple[str, ...]:
    cases = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise argparse.ArgumentTypeError(f"unknown case(s) {', '.join(unknown) or '(none given)'}; choose from {','.join(CASES)}")
    return cases


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{what}: batch sizes must be positive integers, got {text!r}")
    return values


def parse_batch_sizes(items: list[str]) -> dict[str, list[int]]:
    """``["12,48"]`` (every model case) or ``["eat=12,48", "beats=48,192", "loader=32"]``."""
    out: dict[str, list[int]] = {}
    for item in items:
        if "=" in item:
            case, values = item.split("=", 1)
            if case not in MODEL_CASES + ("loader",):
                raise argparse.ArgumentTypeError(
                    f"--batch-sizes {item!r}: unknown case {case!r}; choose from {','.join(MODEL_CASES + ('loader',))}")
            out[case] = _int_list(values, f"--batch-sizes {item}")
        else:
            for case in MODEL_CASES:
                out[case] = _int_list(item, f"--batch-sizes {item}")
    return out


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.benchmark",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="[auto: CUDA when available]")
    parser.add_argument("--cases", type=parse_cases, default=CASES, help=f"comma-separated, any of {','.join(CASES)} [all]")
    parser.add_argument("--batch-sizes", nargs="+", default=[], metavar="[CASE=]N,N",
                        help="clips per step: N,N for every model case, or CASE=N,N per case (eat, beats, finetune, loader)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat [CUDA 20, CPU 3, tiny 2]")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first [CUDA 5, CPU 1, tiny 1]")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats; lines give the median [CUDA 3, CPU 3, tiny 1]")
    parser.add_argument("--tiny", action="store_true", help="tiny models and inputs (seconds on a CPU; what the tests run)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training models and the bare ViTs")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="[auto: bf16 on CUDA, fp32 on CPU]")
    parser.add_argument("--beats-tokenizer", choices=BEATS_TOKENIZERS, default="random",
                        help="tokenizer labelling the BEATs SSL step: round 1 random projection, or a distilled "
                             "BEATs tokenizer (rounds >= 2) [random]")
    parser.add_argument("--feats-scp", default=None, help="an fbank dump's feats.scp for the loader case "
                        "[temporary synthetic dumps]")
    parser.add_argument("--wav-scp", default=None, help="a raw dump's wav.scp for the loader case (both front ends, "
                        "in the worker and on the device) [temporary synthetic dumps]")
    parser.add_argument("--num-workers", type=int, default=None, help="loader worker processes [CUDA 8, CPU 2, tiny 1]")
    parser.add_argument("--loader-batches", type=int, default=None, help="timed loader batches [CUDA 40, CPU 20, tiny 3]")
    parser.add_argument("--num-threads", type=int, default=None, help="torch CPU threads [1 with --tiny, else torch's default]")
    parser.add_argument("--no-sync-check", action="store_true", help="skip the host-sync check step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="INFO logs on stderr (model and optimiser set-up)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        batch_sizes = parse_batch_sizes(args.batch_sizes)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    for name in ("steps", "repeats", "loader_batches"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("warmup", "num_workers"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    setup_logging(level=logging.INFO if args.verbose else logging.WARNING)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    elif args.tiny:  # tiny ops only lose to thread start-up and to other processes on the cores
        torch.set_num_threads(1)
    opts = BenchOptions(
        device=args.device, cases=args.cases, batch_sizes=batch_sizes, steps=args.steps, warmup=args.warmup,
        repeats=args.repeats, tiny=args.tiny, compile=args.compile, precision=args.precision,
        beats_tokenizer=args.beats_tokenizer, feats_scp=args.feats_scp, wav_scp=args.wav_scp,
        num_workers=args.num_workers, loader_batches=args.loader_batches, check_syncs=not args.no_sync_check,
        seed=args.seed,
    )

    def emit(result: dict) -> None:
        print(format_result(result), flush=True)

    try:
        run_benchmark(opts, emit)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
