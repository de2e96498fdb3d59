"""The training loop shared by pre-training and fine-tuning.

The trainer knows nothing of BEATs or EAT: a task (``audiossl/tasks/``) builds a training model whose
``forward(batch)`` returns ``(loss, stats, weight)``, and the trainer does the rest:

* data: :class:`~audiossl.data.dataset.FeatsDataset` + :class:`~audiossl.data.sampler.DistributedBatchSampler`
  (deterministic per epoch, partitioned over ranks, resumable mid-epoch), DataLoader workers with
  pinned memory on CUDA; validation on :class:`~audiossl.data.dataset.FeatsWindows` (every window
  scoring cuts a clip into, ``predict`` scores averaged per clip) unless ``data.valid_crop: start``;
* updates: AdamW with warm-up + cosine (``audiossl.train.optim``), gradient accumulation over the
  forward/backward passes of one update (no DDP all-reduce but on the last), gradient-norm clipping, bf16 autocast on
  CUDA, optional ``torch.compile``, optional weight EMA;
* hooks on the training model (all optional but forward, see ``audiossl/models/abs_train_model.py``):
  ``no_weight_decay()``, ``layer_id(name)`` and ``num_layers`` (parameter groups),
  ``after_optimizer_step(num_updates)`` after every update, ``predict(batch)`` (validation scores
  for ``audiossl.score.metrics.compute_metrics``), ``export()`` (``model.pt``'s extra), and the
  attributes ``multi_label`` (metrics) and ``find_unused_parameters`` (DDP);
* bookkeeping: progress lines, TensorBoard and metrics.jsonl, validation every ``valid_interval``
  updates, best-k models, checkpoints every ``save_interval`` updates, exact resume from
  ``checkpoint_last.pt``, a clean stop on SIGTERM/SIGUSR1 (:class:`TrainingInterrupted`, exit code 75
  in ``bin/train.py``; ``audiossl.train.signals``), a stop on NaN/inf loss that never saves the bad
  state, one training per exp dir (``audiossl.train.lock``), a failed save that names what is
  intact, and ``model.pt``.

Global batch: one update sees ``data.batch_size`` clips over all processes, cut by
``audiossl.data.sampler.split_global_batch`` into passes of at most ``data.max_batch_per_device``
clips per process; the same clips, in the same updates, whatever the split.

Host syncs: the loop keeps losses, stats, gradient norms and the NaN flag on the device and reads
them (``.item()``) only at log intervals, validations and saves. One tiny host-side collective per
update (gloo) lets every rank agree on stopping after a signal.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from audiossl.data.dataset import Collator, FbankOnDevice, FeatsDataset, FeatsWindows, read_labels_txt, resolve_norm
from audiossl.data.sampler import DistributedBatchSampler, ShardedBatchSampler, label_balanced_weights, split_global_batch
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.tasks.abs_task import get_task
from audiossl.models.checkpoint import WriteError, atomic_save, save_model
from audiossl.train.checkpoint import (
    atomic_link,
    load_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from audiossl.train.config import TrainConfig, config_to_dict, save_config
from audiossl.train.distributed import DistContext, DistInfo, detect_dist_env
from audiossl.models.ema import WeightEMA
from audiossl.train.lock import ExpDirLock
from audiossl.train.lock import inherited as lock_inherited
from audiossl.train.logging import MetricsWriter, format_duration
from audiossl.train.optim import WarmupCosineScheduler, build_optimizer, resolve_epoch_schedule
from audiossl.train import signals
from audiossl.train.signals import STOP_SIGNALS
from audiossl.train.step import LogInterval, UpdateStep, autocast

logger = logging.getLogger(__name__)



class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint_last.pt``; re-running resumes."""

    def __init__(self, num_updates: int, signum: int):
        super().__init__(f"stopped by signal {signal.Signals(signum).name} after update {num_updates}; checkpoint saved")
        self.num_updates = num_updates
        self.signum = signum


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; nothing was saved after the last good checkpoint."""


@dataclasses.dataclass
class TrainResult:
    num_updates: int
    model_path: Path | None  # exp/<tag>/model.pt (rank 0), None on other ranks
    best: list[dict[str, Any]]  # [{"update", "value", "path"}], best first
    last_valid: dict[str, float]  # the last validation's stats and metrics


def select_device(device: str, local_rank: int = 0) -> torch.device:
    """"auto": CUDA when available, else CPU; "cpu"; "cuda". The GPU is the one of this process's
    local rank, or the only one visible (a scheduler that gives each task its own GPU)."""
    assert device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {device!r}"
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device cuda asked for, but torch sees no GPU; use --ngpu 0 to train on CPU")
    count = torch.cuda.device_count()
    if count == 1:  # e.g. Slurm --gpus-per-task: each task sees only its own GPU
        return torch.device("cuda", 0)
    if local_rank >= count:
        raise RuntimeError(f"local rank {local_rank} has no GPU: only {count} visible; start at most {count} processes per node")
    return torch.device("cuda", local_rank)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _worker_init(worker_id: int) -> None:
    # A Slurm preemption signals every process of the step: workers must not die before the main
    # process has finished its update and saved; they exit with their parent.
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    torch.set_num_threads(1)


def _per_clip(
    scores: np.ndarray, targets: np.ndarray, clips: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(M, C) window scores and targets, (M,) clip indices and keep flags -> (N, C) per clip: the
    mean of the kept windows' scores (every clip has one, ``audiossl.data.windows.active_windows``)
    and the clip's targets, in clip order (the validation sampler gives every window once over all
    ranks)."""
    ids, first, where = np.unique(clips, return_index=True, return_inverse=True)  # where: (M,) row of each window
    sums = np.zeros((len(ids), scores.shape[1]), dtype=np.float64)
    counts = np.zeros(len(ids), dtype=np.int64)
    np.add.at(sums, where[keep], scores[keep])
    np.add.at(counts, where[keep], 1)
    assert (counts > 0).all(), "a validation clip without a kept window"
    return (sums / counts[:, None]).astype(np.float32), targets[first]


def _has_predict(model: nn.Module) -> bool:
    return getattr(type(model), "predict", AbsTrainModel.predict) is not AbsTrainModel.predict


class Trainer:
    """Train ``cfg`` into ``output_dir`` (see module docstring); :meth:`fit` runs or resumes it."""

    def __init__(
        self,
        cfg: TrainConfig,
        output_dir: str | Path,
        device: str = "auto",
        dist_info: DistInfo | None = None,
    ):
        self.cfg = cfg
        self.out = Path(output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.last_path = self.out / "checkpoint_last.pt"
        info = dist_info if dist_info is not None else detect_dist_env()
        self.device = select_device(device, info.local_rank)
        self.dist = DistContext(info, self.device)
        self.is_main = self.dist.is_main
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        t = cfg.trainer
        precision = t.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.num_updates = 0
        self.epoch = 0
        self.position = 0  # training batches of this epoch consumed (by this rank)
        self.best: list[dict[str, Any]] = []
        self.last_valid_update = -1
        self.last_valid: dict[str, float] = {}
        self.last_saved_update: int | None = None
        self._stop_signal: int | None = None
        self.writer: MetricsWriter | None = None
        self.interval = LogInterval()

    # ----------------------------------------------------------------------------------------
    # Setup
    # ----------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        d = self.cfg.data
        self.split = split_global_batch(d.batch_size, self.dist.world_size, d.max_batch_per_device)
        on_device, sequential = d.frontend == "device", d.reading == "sequential"
        if sequential and d.target_frames is None:
            raise ValueError("data.reading sequential needs data.target_frames (batches of clips of any length "
                             "are grouped by length, which reading in file order cannot do)")
        self.train_set = FeatsDataset(d.train, target_frames=d.target_frames, crop=d.crop, fbank_kind=d.fbank_kind,
                                      waveform=on_device, sequential=sequential)
        self.norm = resolve_norm(d.train, d.norm_mean, d.norm_std, d.fbank_kind)
        # a raw dump's training features made on the device, batched (validation's in the loader)
        self.frontend = FbankOnDevice(d.fbank_kind, self.norm, d.target_frames).to(self.device) if on_device else None
        self.data_info = self.train_set.data_info()
        weights = None
        if d.weighted_sampler:
            if self.train_set.labels is None:
                raise ValueError(f"{d.train}: data.weighted_sampler needs utt2label and labels.txt")
            weights = label_balanced_weights(self.train_set.labels, self.train_set.num_classes)
        lengths = self.train_set.lengths() if d.target_frames is None else None
        if sequential:
            self.sampler = ShardedBatchSampler(
                self.train_set.dump.shards(), self.split.micro, num_replicas=self.dist.world_size,
                rank=self.dist.rank, seed=self.cfg.trainer.seed, num_workers=d.num_workers, buffer=d.shuffle_buffer,
                weights=weights, samples_per_epoch=d.samples_per_epoch, replacement=d.sample_with_replacement,
                accum_grad=self.split.accum,
            )
        else:
            self.sampler = DistributedBatchSampler(
                len(self.train_set),
                self.split.micro,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                seed=self.cfg.trainer.seed,
                shuffle=True,
                weights=weights,
                samples_per_epoch=d.samples_per_epoch,
                lengths=lengths,
                accum_grad=self.split.accum,
                replacement=d.sample_with_replacement,
            )
        resolve_epoch_schedule(self.cfg.optim, self.sampler.updates_per_epoch)
        self.train_loader = self._loader(self.train_set, self.sampler)
        self.valid_loader = None
        if d.valid is not None:
            labels = self.train_set.label_names or None
            if d.valid_crop == "windows" and d.target_frames is not None:
                self.valid_set = FeatsWindows(d.valid, d.target_frames, hop=d.valid_hop, label_names=labels,
                                              fbank_kind=d.fbank_kind)
            else:
                self.valid_set = FeatsDataset(d.valid, target_frames=d.target_frames, crop="start", label_names=labels,
                                              fbank_kind=d.fbank_kind)
            valid_labels = Path(d.valid) / "labels.txt"
            if self.train_set.label_names and valid_labels.is_file():
                if read_labels_txt(valid_labels) != self.train_set.label_names:
                    raise ValueError(f"{valid_labels} differs from {Path(d.train) / 'labels.txt'}: both sets must share one label list")
            vsampler = DistributedBatchSampler(
                len(self.valid_set), self.split.micro, num_replicas=self.dist.world_size, rank=self.dist.rank,
                shuffle=False, drop_last=False,
            )
            self.valid_loader = self._loader(self.valid_set, vsampler)
        logger.info(
            "train: %s, %d clips, %d classes, feat dim %d; norm mean %.4f std %.4f; %d updates per epoch",
            d.train, len(self.train_set), self.data_info.num_classes, self.data_info.feat_dim,
            self.norm.mean, self.norm.std, self.sampler.updates_per_epoch,
        )
        if self.train_set.dump.type == "raw":
            where = "features made on the device, batched" if on_device else "features made in the loader"
            logger.info("train: raw audio dump, %s front end: %s", d.fbank_kind, where)
        if self.valid_loader is not None and isinstance(self.valid_set, FeatsWindows):
            logger.info("valid: %s, %d clips in %d windows of %d frames (hop %d), scores averaged per clip",
                        d.valid, self.valid_set.num_clips, len(self.valid_set), d.target_frames, self.valid_set.hop)
        elif self.valid_loader is not None:
            logger.info("valid: %s, %d clips", d.valid, len(self.valid_set))

    def _loader(self, dataset: FeatsDataset, batch_sampler: DistributedBatchSampler) -> DataLoader:
        d = self.cfg.data
        workers = d.num_workers
        gen = torch.Generator()  # DataLoader draws its worker base seed here, not from the global RNG
        gen.manual_seed(self.cfg.trainer.seed + self.dist.rank)
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=workers,
            collate_fn=Collator(self.norm, d.target_frames),
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if workers > 0 else None,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            generator=gen,
        )

    def _build_model(self) -> None:
        cfg = self.cfg
        task = get_task(cfg.task)
        model = task.build_model(cfg.model, self.data_info)
        if not isinstance(model, AbsTrainModel):
            raise TypeError(f"task {cfg.task!r} built a {type(model).__name__}, which is not an AbsTrainModel")
        self.raw_model = model.to(self.device)
        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info("model: task %s, %s, %.3fM parameters (%.3fM trainable)", cfg.task, type(model).__name__, n_params / 1e6, n_train / 1e6)
        self.ema = WeightEMA(model, cfg.trainer.ema_decay) if cfg.trainer.ema_decay > 0 else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: WarmupCosineScheduler | None = None
        if self.params:
            self.optimizer = build_optimizer(model, cfg.optim, self.device)
            self.scheduler = WarmupCosineScheduler(self.optimizer, cfg.optim)
        elif cfg.optim.max_updates > 0:
            raise ValueError(
                f"task {cfg.task!r}: the model has no trainable parameters; set optim.max_updates 0 to only "
                "validate it and write model.pt"
            )

    def _wrap_model(self) -> None:
        self.ddp = None
        model: nn.Module = self.raw_model
        if self.dist.info.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(self.raw_model, "find_unused_parameters", False)),
            )
            model = self.ddp
        if self.cfg.trainer.compile:
            model = torch.compile(model)
        self.model = model
        self.step = None
        if self.optimizer is not None:
            self.step = UpdateStep(self.raw_model, model, self.optimizer, self.scheduler, self.cfg.optim.clip_norm,
                                   self.device, self.precision, ddp=self.ddp, ema=self.ema)

    # ----------------------------------------------------------------------------------------
    # Checkpoints
    # ----------------------------------------------------------------------------------------
    def _resume(self) -> None:
        if not self.last_path.is_file():
            return
        ckpt = load_checkpoint(self.last_path)
        try:
            self.raw_model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise RuntimeError(
                f"{self.last_path} does not fit the model built from this config ({e}); resume with the config "
                "it was trained with, or train into a new --output-dir"
            ) from None
        if self.optimizer is not None and ckpt.get("optimizer") is not None:
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict(ckpt["optimizer"])
            for g, settings in zip(self.optimizer.param_groups, fresh):
                g.update(settings)  # the config's weight decay / layer scales win over the saved ones
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            else:
                logger.warning("%s has no EMA weights: starting the EMA from the current weights", self.last_path)
                self.ema = WeightEMA(self.raw_model, self.cfg.trainer.ema_decay)
        self.num_updates = int(ckpt["num_updates"])
        self.epoch = int(ckpt["sampler"]["epoch"])
        self.position = int(ckpt["sampler"]["position"])
        clips = ckpt["sampler"].get("clips")
        if clips is not None and clips != self.position * self.sampler.global_batch:
            # another batch_size x world size: go on after the clips of the epoch already seen
            self.position = min(int(clips) // self.sampler.global_batch, self.sampler.batches_per_epoch)
        if ckpt.get("log_interval") is not None:
            self.interval = LogInterval.restore(ckpt["log_interval"], self.dist.rank, self.device)
        self.best = list(ckpt.get("best", []))
        self.last_valid_update = int(ckpt.get("last_valid_update", -1))
        self.last_valid = dict(ckpt.get("last_valid", {}))
        self.last_saved_update = self.num_updates
        old_ws, ws = int(ckpt.get("world_size", 1)), self.dist.world_size
        old_gb = int(ckpt.get("global_batch", 0))
        if old_ws == ws and len(ckpt.get("rng", [])) == ws:
            set_rng_state(ckpt["rng"][self.dist.rank])
        else:
            logger.warning("checkpoint was written by %d processes, now %d: random states are reseeded", old_ws, ws)
            seed_everything(self.cfg.trainer.seed + self.dist.rank + self.num_updates)
        gb = self._global_batch()
        if old_gb and old_gb != gb:
            logger.warning("global batch changed from %d to %d: the data order after resuming differs", old_gb, gb)
        if self.position > self.sampler.batches_per_epoch:
            logger.warning("sampler position %d beyond this epoch's %d batches: starting the next epoch",
                           self.position, self.sampler.batches_per_epoch)
            self.epoch, self.position = self.epoch + 1, 0
        diffs = _config_diffs(ckpt.get("config", {}), config_to_dict(self.cfg))
        for d in diffs:
            logger.warning("config differs from the checkpoint's: %s", d)
        if self.is_main:
            self._clean_orphans()
        logger.info("resumed from %s: update %d, epoch %d, batch %d of the epoch", self.last_path,
                    self.num_updates, self.epoch, self.position)

    def _clean_orphans(self) -> None:
        """Best-model files written after the checkpoint we resumed from are not in its bookkeeping."""
        keep = {Path(b["path"]).name for b in self.best}
        for p in self.ckpt_dir.glob("best_*.pt") if self.ckpt_dir.is_dir() else []:
            if p.name not in keep:
                p.unlink(missing_ok=True)

    def _global_batch(self) -> int:
        return self.split.global_batch

    def _save(self, numbered: bool) -> None:
        """checkpoint_last.pt (and checkpoints/checkpoint_<update>.pt); collective over ranks."""
        self._check_finite()
        rngs = self.dist.gather_objects(rng_state())
        intervals = self.dist.gather_objects(self.interval.state())
        if self.is_main:
            state = {
                "model": self.raw_model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": None,  # bf16 autocast needs no gradient scaler
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "sampler": {"epoch": self.epoch, "position": self.position,
                            "clips": self.position * self.sampler.global_batch},
                "rng": rngs,
                "num_updates": self.num_updates,
                "epoch": self.epoch,
                "best": self.best,
                "last_valid_update": self.last_valid_update,
                "last_valid": self.last_valid,
                "config": config_to_dict(self.cfg),
                "world_size": self.dist.world_size,
                "global_batch": self._global_batch(),
                "log_interval": {"ranks": intervals, "updates": self.interval.updates,
                                 "gnorm": float(self.interval.gnorm)},
            }
            if numbered:
                path = self.ckpt_dir / f"checkpoint_{self.num_updates}.pt"
                save_checkpoint(path, state)
                atomic_link(path, self.last_path)
                prune_checkpoints(self.ckpt_dir, self.cfg.trainer.keep_last)
            else:
                save_checkpoint(self.last_path, state)
            logger.info("saved %s (update %d)", path if numbered else self.last_path, self.num_updates)
        self.last_saved_update = self.num_updates
        self.dist.barrier()  # nobody exits (or goes on) while rank 0 is still writing

    def _check_finite(self) -> None:
        """Raise NonFiniteLossError on every rank if any rank saw a NaN/inf loss or gradient norm."""
        if self.step is None:  # nothing trained (optim.max_updates 0, no trainable parameters)
            return
        bad = self.step.nonfinite_update.clone()
        if self.dist.info.distributed:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        first = int(bad.item())
        if first < 0:
            return
        last = (f"{self.last_path} (update {self.last_saved_update})" if self.last_saved_update is not None
                else "none: no checkpoint was saved yet")
        raise NonFiniteLossError(
            f"the loss or the gradient norm became NaN/inf at update {first}; stopped at update {self.num_updates} "
            f"without saving. Last good checkpoint: {last}. Lower optim.lr, set optim.clip_norm or check the "
            f"data, then re-run the same command to resume from it."
        )

    # ----------------------------------------------------------------------------------------
    # The loop
    # ----------------------------------------------------------------------------------------
    def _micro_batches(self) -> Iterator[dict[str, Any]]:
        while True:
            self.sampler.set_epoch(self.epoch, self.position)
            for batch in self.train_loader:
                self.position += 1
                yield batch
            self.epoch += 1
            self.position = 0

    def _on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A training batch on the device, with its features made there when data.frontend is device."""
        batch = _to_device(batch, self.device)
        return self.frontend(batch) if self.frontend is not None else batch

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is None:
            logger.warning("got %s: finishing this update, saving, then exiting", signal.Signals(signum).name)
        self._stop_signal = signum

    def fit(self) -> TrainResult:
        """Train (or resume) up to ``optim.max_updates``, write model.pt and return a summary.

        Raises TrainingInterrupted after a signal-triggered save, NonFiniteLossError on NaN/inf,
        ExpDirBusy when another live training holds the exp dir (``audiossl.train.lock``) and
        WriteError when a save fails (the message says which checkpoint is intact).
        """
        lock = ExpDirLock(self.out).acquire() if self.is_main and not lock_inherited(self.out) else None
        try:
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        seed_everything(cfg.trainer.seed)
        self._build_data()
        self._build_model()
        seed_everything(cfg.trainer.seed + 1000 * self.dist.rank + 1)  # model built: per-rank streams from here
        if self.is_main:
            self._remove_stale_temporaries()
        self._resume()
        self._wrap_model()
        signals.take_over()  # the start-up is over: a stop that came inside one of its imports ends it here
        if self.is_main:
            save_config(cfg, self.out / "config.yaml")
            self.writer = MetricsWriter(self.out, resume_update=self.num_updates)
        logger.info("device %s, precision %s, world size %d, %s (config: %d)", self.device, self.precision,
                    self.dist.world_size, self.split.describe(), cfg.data.batch_size)
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            old_handlers = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            self._loop()
            if self.valid_loader is not None and self.last_valid_update != self.num_updates:
                self._validate()
            if self.last_saved_update != self.num_updates:
                self._save(numbered=False)
            model_path = self._write_model() if self.is_main else None
            self.dist.barrier()
        except WriteError as e:
            raise self._write_failed(e) from None
        finally:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            # Tear the process group down before exit: a gloo group left to the interpreter's
            # shutdown can abort the process ("terminate called without an active exception").
            self.dist.close()
            for s, h in old_handlers.items():  # last: the caller's handlers may stop the process at once
                signal.signal(s, h)
        return TrainResult(self.num_updates, model_path, list(self.best), dict(self.last_valid))

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of saves that a SIGKILL cut short (the lock says no live trainer writes here)."""
        stale = remove_stale_temporaries(self.out) + remove_stale_temporaries(self.ckpt_dir)
        if stale:
            logger.info("removed %d temporary file(s) left by an interrupted save: %s",
                        len(stale), ", ".join(p.name for p in stale))

    def _write_failed(self, e: WriteError) -> WriteError:
        """The error of a failed save, saying what is intact and what to do."""
        if self.last_saved_update is not None and self.last_path.is_file():
            intact = f"the previous checkpoint {self.last_path} (update {self.last_saved_update}) is intact"
        else:
            intact = "no checkpoint was saved before it: a re-run starts from update 0"
        return WriteError(e.errno, f"{e.strerror}; {intact}; make room on that file system (or lower "
                                   "trainer.keep_last) and re-run the same command to resume")

    def _loop(self) -> None:
        cfg, t = self.cfg, self.cfg.trainer
        accum, max_updates = self.split.accum, cfg.optim.max_updates
        batches = self._micro_batches()
        self.raw_model.train()
        iv = self.interval  # this log interval's sums so far (carried over a resume)
        clips = 0  # since t0, for the throughput
        t0, u0 = time.perf_counter(), self.num_updates
        if self.num_updates < max_updates:
            logger.info("training from update %d to %d", self.num_updates, max_updates)
        while self.num_updates < max_updates:
            micro = (self._on_device(next(batches)) for _ in range(accum))
            n_clips, lr = self.step.update(micro, accum, iv, self.num_updates)
            clips += n_clips
            self.num_updates += 1

            n = self.num_updates
            if n % t.log_interval == 0 or n == max_updates:
                self._check_finite()
                dt = time.perf_counter() - t0
                self._log_train(iv.sums, iv.counts, iv.gnorm / iv.updates, lr, n - u0, clips, dt)
                iv = self.interval = LogInterval()
                clips = 0
                t0, u0 = time.perf_counter(), n
            if self.valid_loader is not None and n % t.valid_interval == 0:
                self._validate()
            if n % t.save_interval == 0:
                self._save(numbered=True)
            if self.dist.any_true(self._stop_signal is not None):
                if self.last_saved_update != n:
                    self._save(numbered=False)
                raise TrainingInterrupted(n, self._stop_signal or signal.SIGTERM)

    def _log_train(self, sums, counts, gnorm, lr, n_updates, clips, dt) -> None:
        # Stats are averaged over micro-batches and ranks; a stat some rank did not report this
        # interval counts only where it was reported (the name sets are exchanged host-side).
        names = sorted(set().union(*self.dist.all_gather_objects(sorted(sums))))
        zero = torch.zeros((), device=self.device)
        vec = torch.stack(
            [sums.get(k, zero) for k in names]
            + [torch.tensor(float(counts.get(k, 0)), device=self.device) for k in names]
            + [gnorm.float()]
        )
        self.dist.all_reduce_sum(vec)
        vals = vec.tolist()
        k = len(names)
        stats = {name: vals[i] / max(vals[k + i], 1.0) for i, name in enumerate(names)}
        grad_norm = vals[-1] / self.dist.world_size
        ups = n_updates / dt if dt > 0 else float("nan")
        cps = clips * self.dist.world_size / dt if dt > 0 else float("nan")
        eta = (self.cfg.optim.max_updates - self.num_updates) / ups if ups > 0 else float("inf")
        logger.info(
            "update %d/%d epoch %d | %s | lr %.3e gnorm %.3f | %.2f updates/s %.1f clips/s | eta %s",
            self.num_updates, self.cfg.optim.max_updates, self.epoch + 1,
            " ".join(f"{k} {v:.4f}" for k, v in stats.items()), lr, grad_norm, ups, cps, format_duration(eta),
        )
        if self.writer is not None:
            self.writer.write("train", self.num_updates, self.epoch + 1,
                              {**stats, "lr": lr, "grad_norm": grad_norm, "updates_per_s": ups, "clips_per_s": cps})

    # ----------------------------------------------------------------------------------------
    # Validation
    # ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        model = self.ema.module if self.ema is not None else self.raw_model
        was_training = model.training
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        wsum = torch.zeros((), device=self.device, dtype=torch.float64)
        scores, targets, clips, keeps = [], [], [], []
        predict = _has_predict(model)
        for batch in self.valid_loader:
            batch = _to_device(batch, self.device)
            with autocast(self.device, self.precision):
                loss, stats, weight = model(batch)
                pred = model.predict(batch) if predict and "targets" in batch else None
            stats = dict(stats)
            stats.setdefault("loss", loss.detach())
            w = torch.as_tensor(weight, device=self.device, dtype=torch.float64)
            for name, v in stats.items():
                v = torch.as_tensor(v, device=self.device).detach().double() * w
                sums[name] = sums[name] + v if name in sums else v
            wsum += w
            if pred is not None:
                scores.append(pred.float().cpu())
                targets.append(batch["targets"].float().cpu())
                if "clip" in batch:
                    clips.append(batch["clip"].cpu())
                    keeps.append(batch["keep"].cpu())
        model.train(was_training)
        local = {
            "sums": {k: float(v) for k, v in sums.items()},
            "weight": float(wsum),
            "scores": torch.cat(scores) if scores else None,
            "targets": torch.cat(targets) if targets else None,
            "clips": torch.cat(clips) if clips else None,
            "keep": torch.cat(keeps) if keeps else None,
        }
        parts = self.dist.gather_objects(local)
        outcome: tuple[dict[str, float], str | None] = ({}, None)
        if self.is_main:
            try:
                outcome = (self._valid_results(parts, model), None)
            except KeyError as e:  # a bad best_metric: every rank must stop, not only rank 0
                outcome = ({}, str(e.args[0]))
        result, error = self.dist.broadcast_object(outcome)
        if error is not None:
            raise KeyError(error)
        self.last_valid_update = self.num_updates
        self.last_valid = result
        return result

    def _valid_results(self, parts: list[dict[str, Any]], model: nn.Module) -> dict[str, float]:
        total_w = sum(p["weight"] for p in parts)
        names = sorted({k for p in parts for k in p["sums"]})
        result = {k: sum(p["sums"].get(k, 0.0) for p in parts) / max(total_w, 1e-12) for k in names}
        sc = [p["scores"] for p in parts if p["scores"] is not None]
        if sc and importlib.util.find_spec("audiossl.score.metrics") is not None:
            from audiossl.score.metrics import compute_metrics

            scores = torch.cat(sc).numpy()
            targets = torch.cat([p["targets"] for p in parts if p["targets"] is not None]).numpy()
            if any(p.get("clips") is not None for p in parts):  # windows: one score per clip, as scoring
                scores, targets = _per_clip(
                    scores, targets, torch.cat([p["clips"] for p in parts if p["clips"] is not None]).numpy(),
                    torch.cat([p["keep"] for p in parts if p["keep"] is not None]).numpy(),
                )
            multi_label = getattr(model, "multi_label", None)
            if multi_label is None:
                multi_label = not bool(np.all(targets.sum(1) == 1))
            metrics = compute_metrics(scores, targets, multi_label)
            result.update({k: float(v) for k, v in metrics.items()})
        t = self.cfg.trainer
        if t.best_metric not in result:
            raise KeyError(
                f"trainer.best_metric {t.best_metric!r} is not among the validation results "
                f"({', '.join(sorted(result))}); set it to one of them"
            )
        value = result[t.best_metric]
        self._update_best(value, model)
        best = self.best[0] if self.best else None
        logger.info(
            "valid update %d | %s | best %s %.4f (update %s)", self.num_updates,
            " ".join(f"{k} {v:.4f}" for k, v in result.items()), t.best_metric,
            best["value"] if best else float("nan"), best["update"] if best else "-",
        )
        if self.writer is not None:
            self.writer.write("valid", self.num_updates, self.epoch + 1, result)
        return result

    def _update_best(self, value: float, model: nn.Module) -> None:
        t = self.cfg.trainer
        if t.keep_best == 0 or not math.isfinite(value):
            return
        sign = 1.0 if t.best_mode == "min" else -1.0
        if len(self.best) >= t.keep_best and sign * value >= sign * self.best[-1]["value"]:
            return
        path = self.ckpt_dir / f"best_{self.num_updates}.pt"
        atomic_save({"format": "audiossl-best", "update": self.num_updates, "metric": t.best_metric,
                     "value": value, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)
        self.best = [b for b in self.best if b["update"] != self.num_updates]
        self.best.append({"update": self.num_updates, "value": value, "path": str(path)})
        self.best.sort(key=lambda b: (sign * b["value"], b["update"]))
        for b in self.best[t.keep_best:]:
            Path(b["path"]).unlink(missing_ok=True)
        self.best = self.best[: t.keep_best]

    # ----------------------------------------------------------------------------------------
    # The hand-off file
    # ----------------------------------------------------------------------------------------
    def _write_model(self) -> Path:
        t = self.cfg.trainer
        source = self.ema.module if self.ema is not None else self.raw_model
        what = "EMA weights" if self.ema is not None else "weights"
        state = source.state_dict()
        if t.final_model == "best":
            if not self.best:
                logger.warning("final_model best, but no finite validation result was recorded: writing the last %s", what)
            else:
                state = torch.load(self.best[0]["path"], map_location="cpu", weights_only=False)["model"]
                what = f"best {what} ({t.best_metric} {self.best[0]['value']:.4f} at update {self.best[0]['update']})"
        path = self.out / "model.pt"
        config = config_to_dict(self.cfg)
        # the normalisation it was trained with, also when it came from the train dump's stats.json,
        # so that the file alone says how to feed the model (audiossl.api, scoring, extraction)
        config["data"].update(norm_mean=self.norm.mean, norm_std=self.norm.std)
        save_model(path, self.cfg.task, config, state, source.export())
        logger.info("wrote %s: %s after %d updates", path, what, self.num_updates)
        return path


def _config_diffs(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_config_diffs(a, b, f"{prefix}{k}."))
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def train(cfg: TrainConfig, output_dir: str | Path, device: str = "auto", dist_info: DistInfo | None = None) -> TrainResult:
    """Run (or resume) one training; the process group is torn down afterwards."""
    trainer = Trainer(cfg, output_dir, device=device, dist_info=dist_info)
    try:
        return trainer.fit()
    finally:
        trainer.dist.close()
