"""Train a model (pre-training or fine-tuning) from a YAML config; re-running the command resumes.

Usage:
    python -m audiossl.bin.train --config conf/x.yaml --output-dir exp/<tag> [--ngpu N | --nproc N] \\
        [--section.key value ...]

e.g.:
    python -m audiossl.bin.train --config conf/train_toy.yaml --output-dir exp/toy --optim.lr 1e-3
    python -m audiossl.bin.train --config conf/eat_pretrain.yaml --output-dir exp/eat_pretrain --ngpu 4
    utils/queue.pl --num-tasks 2 exp/x/log/train.log srun python -m audiossl.bin.train --config ... --output-dir exp/x

Writes exp/<tag>/{config.yaml, train.log, metrics.jsonl, tensorboard/, checkpoint_last.pt,
checkpoints/, model.pt}. One optimiser update sees batch_size x processes x accum_grad clips.

--ngpu N (N > 1) or --nproc N (N > 1, CPU gloo processes) starts N local workers through
torch.distributed.run; under torchrun or a multi-task srun the process joins that launch instead.
Exit codes: 0 done, 1 error, 75 stopped by SIGTERM/SIGUSR1 after saving (re-run to resume; queue.pl
--requeue resubmits on 75).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from audiossl.train.config import ConfigError, load_config
from audiossl.train.distributed import detect_dist_env, inside_launch
from audiossl.train.logging import setup_logging
from audiossl.train.trainer import (
    EXIT_REQUEUE,
    INTERRUPTED_MARKER,
    NonFiniteLossError,
    TrainingInterrupted,
    train,
)

logger = logging.getLogger("audiossl.bin.train")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audiossl.bin.train",
        allow_abbrev=False,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="training config YAML (task, model, data, optim, trainer)")
    parser.add_argument("--output-dir", required=True, help="experiment dir, e.g. exp/<tag>")
    parser.add_argument("--ngpu", type=int, default=None,
                        help="GPUs on this node: 0 = CPU, 1 = one GPU, N > 1 starts N processes (NCCL); default: "
                             "one GPU if there is one, else CPU")
    parser.add_argument("--nproc", type=int, default=1, help="CPU training processes (gloo DDP) when not using GPUs [1]")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="device of this process (set by the launcher for its workers; normally leave it)")
    return parser


def _worker_device(args: argparse.Namespace) -> str:
    if args.device is not None:
        return args.device
    if args.ngpu is None:
        return "auto"
    return "cpu" if args.ngpu == 0 else "cuda"


def _strip_launch_args(argv: list[str]) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--ngpu", "--nproc", "--device"):
            skip = "=" not in a
            continue
        out.append(a)
    return out


def launch_local(nproc: int, device: str, argv: list[str], output_dir: str) -> int:
    """Run ``nproc`` workers of this command through torch.distributed.run; returns the exit code.

    SIGTERM/SIGUSR1 are forwarded (as SIGTERM) to torchrun, which passes them to the workers; the
    result is 75 when the workers saved and stopped on it.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc-per-node", str(nproc), "-m", "audiossl.bin.train", *_strip_launch_args(argv), "--device", device]
    logger.info("launching %d local workers: %s", nproc, " ".join(cmd))
    marker = Path(output_dir) / INTERRUPTED_MARKER
    marker.unlink(missing_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.Popen(cmd, env=env)
    forwarded = []

    def forward(signum, frame):
        forwarded.append(signum)
        proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if marker.is_file():
        marker.unlink()
        return EXIT_REQUEUE
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = get_parser()
    args, rest = parser.parse_known_args(argv)
    if args.ngpu is not None and args.ngpu > 0 and args.nproc > 1:
        parser.error("give --ngpu N for GPU processes or --nproc N for CPU processes, not both")
    if args.nproc < 1 or (args.ngpu is not None and args.ngpu < 0):
        parser.error("--nproc must be >= 1 and --ngpu >= 0")

    info = detect_dist_env()
    out = Path(args.output_dir)
    setup_logging(out / "train.log" if info.rank == 0 else None, rank=info.rank)
    if info.rank == 0:
        logger.info("command: %s", " ".join([sys.executable, "-m", "audiossl.bin.train", *argv]))
    try:
        cfg = load_config(args.config, rest)
    except ConfigError as e:
        logger.error("%s", e)
        return 1

    nproc = args.ngpu if (args.ngpu or 0) > 1 else args.nproc
    if nproc > 1 and not inside_launch():
        return launch_local(nproc, "cuda" if (args.ngpu or 0) > 1 else "cpu", argv, args.output_dir)

    try:
        result = train(cfg, out, device=_worker_device(args), dist_info=info)
    except TrainingInterrupted as e:
        logger.warning("%s; exiting with code %d (re-run the same command to resume)", e, EXIT_REQUEUE)
        return EXIT_REQUEUE
    except (NonFiniteLossError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 1
    if result.model_path is not None:
        logger.info("done: %d updates, %s", result.num_updates, result.model_path)
    return 0


def exit_worker(code: int) -> None:
    """Exit a worker of a multi-process launch without running C++ static destructors.

    Everything is written and closed by now; what is left are communication threads that the
    interpreter's teardown can trip over when a peer has already gone ("terminate called without an
    active exception", exit 134 after a finished run). Flush, then leave at once.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    code = main()
    if inside_launch():
        exit_worker(code)
    sys.exit(code)
