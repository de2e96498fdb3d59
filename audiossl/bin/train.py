"""Train a model (pre-training or fine-tuning) from a YAML config; re-running the command resumes.

Usage:
    python -m audiossl.bin.train --config conf/x.yaml --output-dir exp/<tag> [--ngpu N | --nproc N] \\
        [--section.key value ...]

e.g.:
    python -m audiossl.bin.train --config conf/train_toy.yaml --output-dir exp/toy --optim.lr 1e-3
    python -m audiossl.bin.train --config conf/eat_pretrain.yaml --output-dir exp/eat_pretrain --ngpu 4
    utils/queue.pl --num-tasks 2 exp/x/log/train.log srun python -m audiossl.bin.train --config ... --output-dir exp/x

Writes exp/<tag>/{config.yaml, train.log, metrics.jsonl, tensorboard/, checkpoint_last.pt,
checkpoints/, model.pt}. One optimiser update sees data.batch_size clips over all processes (the
global batch; the trainer derives the per-process passes and accumulation, capped by
data.max_batch_per_device).

--ngpu N (N > 1) or --nproc N (N > 1, CPU gloo processes) starts N local workers (they stop when
this process dies: audiossl/train/launcher.py); under torchrun or a multi-task srun the process joins
that launch instead. One training at a time per exp dir: a second one is refused (exp/<tag>/.lock).
Exit codes: 0 done, 1 error, 75 stopped by SIGTERM/SIGUSR1: after saving in training, at once before
it (re-run the same command to resume; queue.pl --requeue resubmits on 75).
"""
from __future__ import annotations

# The stop signals' start-up handler goes in before anything heavy is imported: a preemption during
# the imports, data or model building exits 75 like one during training (audiossl/train/signals.py).
from audiossl.train import signals  # noqa: I001  (first, on purpose)

if __name__ == "__main__":
    signals.watch_startup()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

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
    parser.add_argument("--dry-run", action="store_true",
                        help="print the effective batch split and schedule (updates, epochs, warm-up, LR) and exit "
                             "without training or writing anything")
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
    """Run ``nproc`` workers of this command on this machine (audiossl/train/launcher.py), holding
    the exp dir's lock for them; returns the launch's exit code."""
    from audiossl.train import launcher, lock

    held = lock.ExpDirLock(output_dir).acquire()
    try:
        cmd = [sys.executable, "-m", "audiossl.bin.train", *_strip_launch_args(argv), "--device", device]
        logger.info("launching %d local workers: %s", nproc, " ".join(cmd))
        env = {**os.environ, lock.INHERITED_ENV: str(held.path)}
        return launcher.launch(cmd, nproc, env=env, pass_fds=[held.fd])
    finally:
        held.release()


def main(argv: list[str] | None = None) -> int:
    """The command (module docstring); returns its exit code. Stop signals that come before the
    training loop (or after it) end it with 75 at once."""
    handlers: dict = {}
    try:
        handlers = signals.stop_at_startup()
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BaseException as error:
        e = signals.stop_of(error)
        if e is None:
            raise
        if not logging.getLogger().handlers:
            logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s: %(message)s")
        logger.warning("%s: nothing to save; exiting with code %d (re-run the same command to resume)",
                       e, signals.EXIT_REQUEUE)
        return signals.EXIT_REQUEUE
    finally:
        signals.restore(handlers)


def _main(argv: list[str]) -> int:
    from audiossl.data.sampler import split_global_batch
    from audiossl.models.checkpoint import WriteError
    from audiossl.train.config import ConfigError, load_config
    from audiossl.train.distributed import detect_dist_env, inside_launch
    from audiossl.train.lock import ExpDirBusy
    from audiossl.train.logging import setup_logging
    from audiossl.train.trainer import NonFiniteLossError, TrainingInterrupted, train

    parser = get_parser()
    args, rest = parser.parse_known_args(argv)
    if args.ngpu is not None and args.ngpu > 0 and args.nproc > 1:
        parser.error("give --ngpu N for GPU processes or --nproc N for CPU processes, not both")
    if args.nproc < 1 or (args.ngpu is not None and args.ngpu < 0):
        parser.error("--nproc must be >= 1 and --ngpu >= 0")

    info = detect_dist_env()
    setup_logging(None, rank=info.rank)
    try:
        cfg = load_config(args.config, rest)
    except ConfigError as e:
        logger.error("%s", e)
        return 1
    nproc = args.ngpu if (args.ngpu or 0) > 1 else args.nproc
    launching = nproc > 1 and not inside_launch()
    world = nproc if launching else info.world_size
    try:  # the global batch must split over the processes: checked before any work
        split = split_global_batch(cfg.data.batch_size, world, cfg.data.max_batch_per_device)
    except ValueError as e:
        logger.error("%s: %s", args.config, e)
        return 1
    if args.dry_run:
        return _dry_run(cfg, split)
    out = Path(args.output_dir)  # made only now: a config that does not load leaves no exp dir behind
    setup_logging(out / "train.log" if info.rank == 0 else None, rank=info.rank)
    if info.rank == 0:
        logger.info("command: %s", " ".join([sys.executable, "-m", "audiossl.bin.train", *argv]))

    try:
        if launching:
            return launch_local(nproc, "cuda" if (args.ngpu or 0) > 1 else "cpu", argv, args.output_dir)
        result = train(cfg, out, device=_worker_device(args), dist_info=info)
    except TrainingInterrupted as e:
        logger.warning("%s; exiting with code %d (re-run the same command to resume)", e, signals.EXIT_REQUEUE)
        return signals.EXIT_REQUEUE
    except (NonFiniteLossError, FileNotFoundError, ExpDirBusy, WriteError) as e:
        logger.error("%s", e)
        return 1
    if result.model_path is not None:
        logger.info("done: %d updates, %s", result.num_updates, result.model_path)
    return 0


def _dry_run(cfg, split) -> int:
    """``--dry-run``: the batch split and the schedule (audiossl.train.optim.describe_schedule)."""
    from audiossl.train.optim import describe_schedule

    d = cfg.data
    clips = d.samples_per_epoch if d.weighted_sampler else None
    scp = Path(d.train) / "feats.scp"
    if not scp.is_file():
        scp = Path(d.train) / "wav.scp"  # a raw audio dump
    if clips is None and scp.is_file():
        with open(scp, encoding="utf-8") as f:
            clips = sum(1 for line in f if line.strip())
    print(f"task {cfg.task}: {split.describe()} (config: {d.batch_size})")
    try:
        for line in describe_schedule(cfg.optim, split.global_batch, clips):
            print(line)
    except ValueError as e:
        logger.error("%s", e)
        return 1
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
    signals.restore({s: signal.SIG_IGN for s in signals.STOP_SIGNALS})  # done: a late signal changes nothing
    launch = sys.modules.get("audiossl.train.distributed")  # not imported: stopped before any launch
    if launch is not None and launch.inside_launch():
        exit_worker(code)
    sys.exit(code)
