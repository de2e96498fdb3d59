"""Throughput of the real training steps (EAT, BEATs, fine-tuning) against a bare ViT-B, and of the loader.

What is timed. A *real step* is one full training update, run by the trainer's own update step
(``audiossl.train.step.UpdateStep``) on what the trainer builds: the task's training model (``audiossl.tasks.abs_task.get_task(...).build_model``), AdamW from
``audiossl.train.optim`` (fused on CUDA, foreach on CPU) with the recipe's parameter groups and
schedule, then per update: forward under the trainer's autocast (EAT: teacher targets, masks,
student, decoder, losses; BEATs: tokenizer labels, masks, encoder, label predictor, cross-entropy;
fine-tuning: augmentations, encoder, head, loss), backward, the on-device stat sums, the gradient
norm and clipping, the optimiser step, the scheduler and ``after_optimizer_step`` (EAT's EMA
teacher). Inputs are synthetic batches already on the device, so data loading is not in it; the
*loader* case times that part alone. Model and optimiser settings follow the paper recipes
(``egs/audioset/conf/{eat_pretrain,beats_ssl,finetune_as20k_eat}.yaml``); ``tiny`` shrinks the
widths, depths and input length so that every case runs in a second on a CPU.

A *bare* step is a plain pre-LN ViT of the same width and depth (fused qkv, PyTorch SDPA, GELU MLP,
the same AdamW) fed random tokens at the real step's token shapes, with nothing else:

    bare_eat:       student fwd + bwd on (B x clones, 1 + K) tokens and a separate teacher fwd on
                    (B, 1 + N) tokens (EAT-base: 16 clones x 103 tokens, teacher 513 tokens)
    bare_beats:     fwd + bwd on (B, K) visible tokens (BEATs: 128 of 512)
    bare_finetune:  fwd + bwd on (B, 1 + N) tokens (EAT fine-tuning: 513)

The bare and the real step of a case run one after the other in the same process, and the real
line reports ``efficiency`` = its clips/s over the bare clips/s: the figure to watch on any device.

FLOPs are counted, not estimated: one step runs under ``torch.utils.flop_counter.FlopCounterMode``
(matmuls, convolutions, attention; backward included, attention backward with its score recompute as
PyTorch counts it; its table is corrected here for grouped-convolution backward and completed with
the CPU attention kernels). ``tflops`` is that count over
the measured step time; ``mfu`` divides it by the matmul peak measured in the same run (a square
matmul in bf16 with bf16 precision, else fp32; the best of a few repeats).

Host syncs: one step (forward, backward, clipping and the after-step hook; the optimiser is PyTorch's
own) runs under :class:`HostSyncDetector`, which records every operation that makes the host wait for
the device: ``.item()``/``float()``/``bool()`` of a tensor, ``nonzero``, boolean-mask indexing,
``unique``, ``bincount``, a copy to the CPU. On a CPU run nothing actually waits, so it reports what
*would* wait on an accelerator. On CUDA the same step also runs under
``torch.cuda.set_sync_debug_mode("warn")`` and ``cuda_sync_warnings`` counts what CUDA saw.

The data path. Without a given dump, the *loader* case writes the same synthetic speech-like clips
(:func:`speech_like`; 10 s, 998 frames; 1.275 s with ``tiny``) in the formats stage 2 writes: one
float32 fbank dump per front end (BEATs, EAT), and raw 16-bit FLAC and WAV in ark files. It reports
each format's bytes on disk per clip (*storage* lines, scaled to AudioSet-2M), then times the loader
per format and front end, cropping or padding to the input length (1024 frames, EAT's AudioSet input,
as the trainer does with data.target_frames 1024; 128 with ``tiny``):

    fbank:            fbank dump -> FeatsDataset -> Collator
    raw_flac:         raw FLAC -> FeatsDataset, the crop's features made in the loader worker
    raw_flac_device:  raw FLAC -> FeatsDataset(waveform=True) -> Collator in the worker; FbankOnDevice
                      then makes the features on the device, timed apart on one batch

Each worker runs one torch thread, so with one worker ``clips_per_s`` is what one loader core
delivers, and ``cores_for_8_gpus_*`` is the number of such cores a node needs to feed 8 GPUs at the
per-GPU targets ``GPU_TARGET_CLIPS_PER_S`` (EAT 290, BEATs 4,200 clips/s; README "Performance").
The dumps are small enough to stay in the page cache: the rates are the CPU's, not the disk's.

Every case gives one dict (the binary prints each as one JSON line):

    matmul:  case, kind "peak", device, device_name, torch, threads, dtype, size, tflops
    eat, beats, finetune, bare_eat, bare_beats, bare_finetune:
             case, kind ("real" | "bare"), task (null for bare), device, device_name, torch, threads,
             precision, compile, tiny, batch_size, clones, tokens (student tokens per sequence),
             teacher_tokens (null where there is no teacher), params_m (trainable, millions),
             steps, warmup, repeats, step_ms (median over repeats of the mean step time),
             step_ms_min, step_ms_max, clips_per_s, flops_per_step, tflops, peak_tflops, mfu,
             peak_mem_mb, mem_scope ("case": CUDA max allocated during the case; "process": the
             process's peak RSS so far, on CPU), host_syncs, host_sync_ops, cuda_sync_warnings
             (null off CUDA); real lines also bare_clips_per_s, bare_tflops and efficiency (null
             without a bare run): efficiency is the throughput ratio, tflops / bare_tflops tells how
             much of it is lost to slower kernels rather than to extra work (decoder, predictor)
    storage: case "storage", kind "storage", source "synthetic", signal (what the clips are), format
             ("fbank" | "raw_flac" | "raw_wav"), fbank_kind ("beats" | "eat" for an fbank dump, null
             for raw), clips, clip_s (seconds per clip), clip_frames, bytes_per_clip (the dump's ark
             bytes over its clips), as2m_clips, as2m_gb (as2m_clips of these clips, scaled to 10 s),
             as2m_gb_both_models (what BEATs and EAT together need: fbank, the two front ends' dumps;
             raw, its one dump), vs_fbank_both_models (that over the two fbank dumps')
    loader:  case, kind "loader", device, device_name, torch, threads (the main process's: the device
             front end's), source ("synthetic" or the given feats.scp / wav.scp), format ("fbank" |
             "raw_flac" | "raw_flac_device"; "raw_wav*" for a given WAV dump), fbank_kind (the front
             end; null for a given fbank dump), frames (the input length clips are cropped or padded
             to), clip_frames, bytes_per_clip (null for a given dump), batch_size, num_workers,
             batches, clips, step_ms (per batch), clips_per_s, clips_per_s_per_worker (clips_per_s /
             num_workers; a per-core rate while the workers have a core each), cores_for_8_gpus_eat,
             cores_for_8_gpus_beats (ceil(8 x the model's per-GPU target / clips_per_s_per_worker):
             the loader cores a node needs; given for the model of fbank_kind, null for the other),
             device_ms_per_batch, device_clips_per_s ("*_device" formats: FbankOnDevice on one
             loader batch on the benchmark device; null otherwise)
    a case that ran out of device memory: case, kind, batch_size, error
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import platform
import resource
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

from audiossl.models.beats.config import BEATsConfig
from audiossl.models.beats.ssl import SSLConfig
from audiossl.models.beats.tokenizer import TokenizerConfig
from audiossl.models.eat.masking import num_kept_patches
from audiossl.models.eat.pretrain import EATPretrainConfig
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.data.dataset import DataInfo
from audiossl.data.dump import num_frames_of
from audiossl.data.fbank import FBANK_KINDS, FRAME_SHIFT, compute_fbank
from audiossl.tasks.abs_task import get_task
from audiossl.tasks.finetune import FinetuneConfig
from audiossl.models.checkpoint import save_model
from audiossl.train.config import OptimConfig
from audiossl.train.optim import WarmupCosineScheduler, build_optimizer
from audiossl.train.step import LogInterval, UpdateStep, autocast
from audiossl.train.trainer import select_device

logger = logging.getLogger(__name__)

MODEL_CASES = ("eat", "beats", "finetune")
CASES = MODEL_CASES + ("bare", "loader")
BEATS_TOKENIZERS = ("random", "distilled")
NUM_MEL_BINS = 128
AUDIOSET_NORM = (-4.268, 4.569)  # EAT's AudioSet fbank mean / std (design notes section 2)


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
@dataclass
class BenchOptions:
    """What to run. ``None`` fields take the defaults of :func:`resolve_options` (device-dependent).

    Attributes:
        device: "auto" (CUDA when available), "cpu" or "cuda".
        cases: any of ``CASES``; "bare" runs the bare reference of every selected model case (of all
            three when none is selected).
        batch_sizes: clips per step, per case ("eat", "beats", "finetune", "loader"); missing cases
            take the defaults: paper batches on CUDA (EAT 12 and 48, BEATs 48 and 192, fine-tuning
            48, loader 48), 1 clip on CPU (loader 12), 2 with ``tiny`` (loader 4).
        steps, warmup, repeats: timed steps per repeat, untimed steps before them, timed repeats.
        tiny: tiny widths, depths and inputs (what the tests run).
        compile: ``torch.compile`` the training model and the bare ViTs.
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU, as the trainer), "bf16" or "fp32".
        beats_tokenizer: "random" (round 1, the default) or "distilled" (rounds >= 2: a full BEATs
            forward on every token labels the clip).
        feats_scp, wav_scp: an fbank dump's feats.scp and / or a raw dump's wav.scp for the loader
            case; with neither, it synthesises temporary dumps of both kinds (and reports their sizes).
        num_workers: loader worker processes.
        loader_batches: timed loader batches (after 2 untimed ones).
        check_syncs: run one step under the host-sync detector.
        seed: seeds the models, the synthetic inputs and the masks.
    """

    device: str = "auto"
    cases: tuple[str, ...] = CASES
    batch_sizes: dict[str, list[int]] = field(default_factory=dict)
    steps: int | None = None
    warmup: int | None = None
    repeats: int | None = None
    tiny: bool = False
    compile: bool = False
    precision: str = "auto"
    beats_tokenizer: str = "random"
    feats_scp: str | None = None
    wav_scp: str | None = None
    num_workers: int | None = None
    loader_batches: int | None = None
    check_syncs: bool = True
    seed: int = 0


def resolve_options(opts: BenchOptions, device: torch.device) -> BenchOptions:
    """``opts`` with every None replaced by its default for ``device``, validated."""
    unknown = [c for c in opts.cases if c not in CASES]
    assert not unknown, f"unknown case(s) {', '.join(unknown)}; known cases: {', '.join(CASES)}"
    assert opts.precision in ("auto", "bf16", "fp32"), f"precision must be auto, bf16 or fp32, got {opts.precision!r}"
    assert opts.beats_tokenizer in BEATS_TOKENIZERS, (
        f"beats_tokenizer must be one of {BEATS_TOKENIZERS}, got {opts.beats_tokenizer!r}"
    )
    bad = [k for k in opts.batch_sizes if k not in MODEL_CASES + ("loader",)]
    assert not bad, f"batch sizes given for unknown case(s) {', '.join(bad)}"
    cuda = device.type == "cuda"
    if opts.tiny:
        sizes = {"eat": [2], "beats": [2], "finetune": [2], "loader": [4]}
        steps, warmup, repeats, workers, loader_batches = 2, 1, 1, 1, 3
    elif cuda:
        sizes = {"eat": [12, 48], "beats": [48, 192], "finetune": [48], "loader": [48]}
        steps, warmup, repeats, workers, loader_batches = 20, 5, 3, 8, 40
    else:
        sizes = {"eat": [1], "beats": [1], "finetune": [1], "loader": [12]}
        steps, warmup, repeats, workers, loader_batches = 3, 1, 3, 2, 20
    sizes.update({k: list(v) for k, v in opts.batch_sizes.items()})
    for k, v in sizes.items():
        assert v and all(b >= 1 for b in v), f"batch sizes of {k} must be >= 1, got {v}"
    out = dataclasses.replace(
        opts,
        batch_sizes=sizes,
        steps=opts.steps if opts.steps is not None else steps,
        warmup=opts.warmup if opts.warmup is not None else warmup,
        repeats=opts.repeats if opts.repeats is not None else repeats,
        num_workers=opts.num_workers if opts.num_workers is not None else workers,
        loader_batches=opts.loader_batches if opts.loader_batches is not None else loader_batches,
    )
    assert out.steps >= 1 and out.repeats >= 1 and out.warmup >= 0, (
        f"need steps >= 1, repeats >= 1, warmup >= 0; got {out.steps}, {out.repeats}, {out.warmup}"
    )
    assert out.num_workers >= 0 and out.loader_batches >= 1, "need num_workers >= 0 and loader_batches >= 1"
    return out


# --------------------------------------------------------------------------------------------
# The cases' models and optimiser settings (paper recipes; tiny versions for tests)
# --------------------------------------------------------------------------------------------
def input_frames(tiny: bool) -> int:
    """Input length in frames: 1024 (10 s, every paper recipe here) or 128 with ``tiny``."""
    return 128 if tiny else 1024


def eat_config(tiny: bool) -> EATPretrainConfig:
    """EAT-base as egs/audioset/conf/eat_pretrain.yaml (the official values are the defaults)."""
    if not tiny:
        return EATPretrainConfig()
    return EATPretrainConfig(
        embed_dim=64, depth=2, num_heads=2, max_time_patches=8, clone_batch=4, average_top_k_layers=2,
        decoder_dim=64, decoder_layers=2,
    )


def eat_optim() -> OptimConfig:
    """egs/audioset/conf/eat_pretrain.yaml optim section."""
    return OptimConfig(lr=5e-4, betas=(0.9, 0.95), weight_decay=0.05, decay_norm_and_bias=True,
                       warmup_updates=53333, max_updates=400000, clip_norm=4.0)


def beats_encoder_config(tiny: bool) -> BEATsConfig:
    """The released BEATs backbone with egs/audioset/conf/beats_ssl.yaml's pre-training settings."""
    pretrain = dict(layer_wise_gradient_decay_ratio=1.0, dropout=0.1, attention_dropout=0.1, encoder_layerdrop=0.0)
    if not tiny:
        return BEATsConfig(**pretrain)
    return BEATsConfig(
        embed_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=256, encoder_attention_heads=2,
        conv_pos=16, conv_pos_groups=4, **pretrain,
    )


def beats_ssl_config(tiny: bool, tokenizer_path: str) -> SSLConfig:
    """egs/audioset/conf/beats_ssl.yaml model section (75% mask, 3-layer predictor)."""
    return SSLConfig(
        encoder=beats_encoder_config(tiny), tokenizer=tokenizer_path, mask_ratio=0.75,
        predictor_layers=1 if tiny else 3, label_smoothing=0.1,
    )


def beats_optim() -> OptimConfig:
    """egs/audioset/conf/beats_ssl.yaml optim section."""
    return OptimConfig(lr=5e-4, betas=(0.9, 0.98), weight_decay=0.01, warmup_updates=32000, max_updates=400000,
                       min_lr=1e-6, clip_norm=1.0)


def finetune_config(tiny: bool) -> FinetuneConfig:
    """EAT fine-tuning on AS-20K as egs/audioset/conf/finetune_as20k_eat.yaml, from a fresh encoder."""
    mean, std = AUDIOSET_NORM
    return FinetuneConfig(
        init=None, encoder_task="eat_pretrain", encoder=dataclasses.asdict(eat_config(tiny)),
        drop_path=0.1, pooling="cls", head_norm=True, head_init_std=0.02, layer_decay_below_blocks=False,
        loss="bce", multi_label=True, bce_normalize_by_positives=True, mixup_alpha=0.8, mixup_prob=0.9,
        specaug_mask_ratio=0.2, roll=True, gain=True, aug_norm_mean=mean, aug_norm_std=std,
    )


def finetune_optim() -> OptimConfig:
    """egs/audioset/conf/finetune_as20k_eat.yaml optim section."""
    return OptimConfig(lr=5e-5, betas=(0.9, 0.95), weight_decay=0.05, warmup_updates=4000, max_updates=40000,
                       min_lr=1e-6, layer_decay=0.65, clip_norm=0.0)


def finetune_classes(tiny: bool) -> int:
    return 10 if tiny else 527  # AudioSet's 527 classes


def write_beats_tokenizer(path: Path, tiny: bool, kind: str, seed: int) -> Path:
    """A ``beats_tokenizer`` model.pt of ``kind`` for the SSL case (what stage 3 hands to the SSL
    model). The distilled one is untrained but marked initialised, like a trained tokenizer."""
    task = get_task("beats_tokenizer")
    cfg = TokenizerConfig(
        kind=kind, codebook_size=64 if tiny else 1024, codebook_dim=16 if tiny else 256, patch_size=16, seed=seed,
        encoder=dataclasses.replace(beats_encoder_config(tiny), dropout=0.0, attention_dropout=0.0),
    )
    if kind == "random":
        state = task.build_model(cfg, DataInfo()).state_dict()
    else:
        tokenizer = task.build_tokenizer(cfg)
        tokenizer.quantize.embedding.initted.fill_(1.0)
        state = tokenizer.state_dict()
    save_model(path, "beats_tokenizer", {"task": "beats_tokenizer", "model": dataclasses.asdict(cfg)}, state)
    return path


@dataclass
class ModelCase:
    """A real training model and what its bare reference must match."""

    task: str
    model: AbsTrainModel
    optim: OptimConfig
    batch: dict[str, Any]
    clones: int  # student sequences per clip
    tokens: int  # student tokens per sequence
    teacher_tokens: int | None  # tokens per clip of a no-grad teacher forward, if any
    dims: tuple[int, int, int, float]  # (width, depth, heads, mlp_ratio) of the student encoder


def synthetic_batch(batch_size: int, frames: int, num_classes: int, seed: int) -> dict[str, Any]:
    """A collated batch as ``audiossl.data.dataset.Collator`` makes it, from random features."""
    g = torch.Generator().manual_seed(seed)
    batch: dict[str, Any] = {
        "feats": torch.randn(batch_size, frames, NUM_MEL_BINS, generator=g),
        "padding_mask": torch.zeros(batch_size, frames, dtype=torch.bool),
        "utt_ids": [f"synthetic-{i:05d}" for i in range(batch_size)],
    }
    if num_classes > 0:
        targets = (torch.rand(batch_size, num_classes, generator=g) < 2.0 / num_classes).float()
        targets[torch.arange(batch_size), torch.randint(0, num_classes, (batch_size,), generator=g)] = 1.0
        batch["targets"] = targets  # (B, C) multi-hot, at least one label per clip
    return batch


def build_case(case: str, batch_size: int, opts: BenchOptions) -> ModelCase:
    """The task's training model for ``case`` ("eat", "beats" or "finetune"), on the CPU."""
    tiny, frames = opts.tiny, input_frames(opts.tiny)
    patches = (frames // 16) * (NUM_MEL_BINS // 16)
    torch.manual_seed(opts.seed)
    if case == "eat":
        cfg = eat_config(tiny)
        model = get_task("eat_pretrain").build_model(cfg, DataInfo(feat_dim=NUM_MEL_BINS))
        kept = num_kept_patches(patches, cfg.mask_prob)
        return ModelCase("eat_pretrain", model, eat_optim(), synthetic_batch(batch_size, frames, 0, opts.seed),
                         cfg.clone_batch, 1 + kept, 1 + patches, (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio))
    if case == "beats":
        with tempfile.TemporaryDirectory(prefix="bench_beats_tok_") as tmp:
            tok = write_beats_tokenizer(Path(tmp) / "model.pt", tiny, opts.beats_tokenizer, opts.seed)
            cfg = beats_ssl_config(tiny, str(tok))
            model = get_task("beats_ssl").build_model(cfg, DataInfo(feat_dim=NUM_MEL_BINS))
        enc = cfg.encoder_config()
        visible = patches - int(patches * cfg.mask_ratio)
        return ModelCase("beats_ssl", model, beats_optim(), synthetic_batch(batch_size, frames, 0, opts.seed), 1,
                         visible, None,
                         (enc.encoder_embed_dim, enc.encoder_layers, enc.encoder_attention_heads,
                          enc.encoder_ffn_embed_dim / enc.encoder_embed_dim))
    if case == "finetune":
        cfg = finetune_config(tiny)
        classes = finetune_classes(tiny)
        info = DataInfo(num_classes=classes, feat_dim=NUM_MEL_BINS, label_names=[f"c{i}" for i in range(classes)])
        model = get_task("finetune").build_model(cfg, info)
        enc = eat_config(tiny)
        return ModelCase("finetune", model, finetune_optim(), synthetic_batch(batch_size, frames, classes, opts.seed),
                         1, 1 + patches, None, (enc.embed_dim, enc.depth, enc.num_heads, enc.mlp_ratio))
    raise ValueError(f"unknown model case {case!r}; known: {', '.join(MODEL_CASES)}")


# --------------------------------------------------------------------------------------------
# FLOP counting and host-sync detection
# --------------------------------------------------------------------------------------------
def _sdpa_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None) -> int:
    """Each gradient (input, weight) of a convolution costs what its forward costs. PyTorch's own
    formula counts the weight gradient of a grouped convolution ``groups`` times over (EAT's decoder
    has 16 groups, BEATs' positional convolution 16)."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _extra_flop_formulas() -> dict[Any, Callable]:
    """Corrections to PyTorch's FLOP table: grouped convolution backward, and its attention
    formulas for the CPU attention kernels it does not list."""
    aten = torch.ops.aten
    table: dict[Any, Callable] = {aten.convolution_backward: _conv_backward_flops}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_forward_flops),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward_flops),
    ):
        if hasattr(aten, name):
            table[getattr(aten, name)] = formula
    return table


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matmuls, convolutions and attention that ``fn()`` runs (see module docstring)."""
    with FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas()) as counter:
        fn()
    return int(counter.get_total_flops())


class HostSyncDetector(TorchDispatchMode):
    """Records the operations that make the host wait for the device (see module docstring).

    ``ops`` lists them in call order as ``aten`` names, e.g. ``aten::_local_scalar_dense`` for an
    ``.item()`` and ``aten::index.Tensor[bool]`` for indexing with a boolean mask.
    """

    _ALWAYS = {
        "aten::_local_scalar_dense",  # .item(), float(t), int(t), bool(t), assert t
        "aten::nonzero",
        "aten::masked_select",
        "aten::_unique",
        "aten::_unique2",
        "aten::unique_dim",
        "aten::unique_consecutive",
        "aten::bincount",
        "aten::equal",
        "aten::is_nonzero",
    }
    _INDEXING = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if name in self._ALWAYS:
            self.ops.append(name)
        elif name in self._INDEXING and _has_mask_index(args):
            self.ops.append(f"{name}.{func._overloadname}[bool]")
        elif name == "aten::repeat_interleave" and func._overloadname.startswith("Tensor") and kwargs.get("output_size") is None:
            self.ops.append(name)
        elif name in ("aten::_to_copy", "aten::copy_") and _copies_to_host(func, args, kwargs):
            self.ops.append(f"{name}[to cpu]")
        return func(*args, **kwargs)


def _has_mask_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else None
    if not isinstance(indices, (list, tuple)):
        return False
    return any(torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in indices)


def _copies_to_host(func, args: tuple, kwargs: dict) -> bool:
    if func._schema.name == "aten::_to_copy":
        src, dst = args[0], kwargs.get("device")
        return torch.is_tensor(src) and src.device.type != "cpu" and dst is not None and torch.device(dst).type == "cpu"
    dst, src = args[0], args[1]
    return torch.is_tensor(src) and src.device.type != "cpu" and dst.device.type == "cpu"


@contextlib.contextmanager
def cuda_sync_warnings(device: torch.device) -> Iterator[list[str]]:
    """On CUDA, collect the messages of ``torch.cuda.set_sync_debug_mode("warn")`` (filled in when
    the block ends); elsewhere nothing."""
    found: list[str] = []
    if device.type != "cuda":
        yield found
        return
    old = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(old)
    found.extend(str(w.message) for w in caught if "synchroniz" in str(w.message))


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], Any], device: torch.device, steps: int, repeats: int) -> list[float]:
    """Seconds per step, one mean per repeat of ``steps`` back-to-back steps (one sync at each end)."""
    out = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        out.append((time.perf_counter() - t0) / steps)
    return out


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, size: int, iters: int, repeats: int) -> float:
    """Best TFLOP/s of ``iters`` back-to-back (size x size) @ (size x size) matmuls over ``repeats``."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, dtype)
    b = torch.randn(size, size, generator=g).to(device, dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b, out=c)
    flops = 2.0 * size**3 * iters
    return max(flops / dt / 1e12 for dt in time_steps(lambda: torch.mm(a, b, out=c), device, iters, repeats))


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(MB, scope): CUDA max allocated since the last reset, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "case"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process"  # ru_maxrss is in KiB on Linux


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------------------------
# Steps: the real training update and the bare ViT reference
# --------------------------------------------------------------------------------------------
class RealStep:
    """One training update of a task's model: the trainer's own :class:`~audiossl.train.step.UpdateStep`
    with one micro-batch per update (no logging); ``step(eager=True)`` bypasses ``torch.compile``."""

    def __init__(self, model: AbsTrainModel, optim: OptimConfig, batch: dict[str, Any], device: torch.device,
                 precision: str, compile: bool):
        self.device = device
        raw_model = model.to(device)
        raw_model.train()
        optimizer = build_optimizer(raw_model, optim, device)
        self.update = UpdateStep(raw_model, torch.compile(raw_model) if compile else raw_model, optimizer,
                                 WarmupCosineScheduler(optimizer, optim), optim.clip_norm, device, precision)
        self.batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        self.num_updates = 0
        self.interval = LogInterval()  # the trainer's on-device sums, never read here
        self.params = self.update.params

    def forward_backward(self, eager: bool = False) -> None:
        self.update.forward_backward([self.batch], 1, self.interval, self.num_updates, eager=eager)

    def optimizer_step(self) -> None:
        self.update.optimizer_step(self.num_updates)
        self.num_updates += 1

    def after_step(self) -> None:
        self.update.after_step(self.num_updates)

    def step(self, eager: bool = False) -> None:
        self.forward_backward(eager)
        self.optimizer_step()
        self.after_step()

    def check_syncs(self) -> tuple[list[str], int | None]:
        """One update with everything but PyTorch's optimiser under the host-sync detectors."""
        detector = HostSyncDetector()
        with cuda_sync_warnings(self.device) as cuda_syncs:
            with detector:
                self.forward_backward(eager=True)
            self.optimizer_step()
            with detector:
                self.after_step()
        synchronize(self.device)
        return detector.ops, (len(cuda_syncs) if self.device.type == "cuda" else None)


class BareBlock(nn.Module):
    """Pre-LN ViT block: x + proj(SDPA(qkv(LN(x)))), then x + fc2(GELU(fc1(LN(x))))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        H = self.num_heads
        qkv = self.qkv(self.norm1(x)).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, L, D/H)
        q, k, v = qkv.unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, D)  # (B, H, L, D/H) -> (B, L, D)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class BareViT(nn.Module):
    """A plain ViT body on given tokens: ``depth`` pre-LN blocks and a final LayerNorm. PyTorch's
    default init (weights do not change the speed)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        assert dim % num_heads == 0, f"width {dim} must be a multiple of the head count {num_heads}"
        self.blocks = nn.ModuleList([BareBlock(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class BareStep:
    """A bare ViT update at a real case's token shapes (see module docstring): teacher forward
    without grad (if any), student forward and backward on a squared-output loss, AdamW."""

    def __init__(self, case: ModelCase, batch_size: int, device: torch.device, precision: str, compile: bool, seed: int):
        D, depth, heads, ratio = case.dims
        torch.manual_seed(seed)
        self.device = device
        self.precision = precision
        self.raw_student = BareViT(D, depth, heads, ratio).to(device).train()
        self.student = torch.compile(self.raw_student) if compile else self.raw_student
        self.raw_teacher = self.teacher = None
        if case.teacher_tokens is not None:
            self.raw_teacher = BareViT(D, depth, heads, ratio).to(device).eval().requires_grad_(False)
            self.teacher = torch.compile(self.raw_teacher) if compile else self.raw_teacher
        self.optimizer = build_optimizer(self.raw_student, OptimConfig(), device)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch_size * case.clones, case.tokens, D, generator=g).to(device)  # (B * C, L, D)
        self.x_teacher = None
        if case.teacher_tokens is not None:
            self.x_teacher = torch.randn(batch_size, case.teacher_tokens, D, generator=g).to(device)  # (B, N + 1, D)
        self.params = [p for p in self.raw_student.parameters() if p.requires_grad]

    def forward_backward(self, eager: bool = False) -> torch.Tensor:
        student = self.raw_student if eager else self.student
        teacher = self.raw_teacher if eager else self.teacher
        with autocast(self.device, self.precision):
            if teacher is not None:
                with torch.no_grad():
                    self.target = teacher(self.x_teacher)  # kept, so that nothing can skip the teacher
            loss = student(self.x).float().pow(2).mean()
        loss.backward()
        return loss.detach()

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, eager: bool = False) -> None:
        self.forward_backward(eager)
        self.optimizer_step()

    def check_syncs(self) -> tuple[list[str], int | None]:
        detector = HostSyncDetector()
        with cuda_sync_warnings(self.device) as cuda_syncs:
            with detector:
                self.forward_backward(eager=True)
            self.optimizer_step()
        synchronize(self.device)
        return detector.ops, (len(cuda_syncs) if self.device.type == "cuda" else None)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def _common(device: torch.device) -> dict[str, Any]:
    return {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure_step(
    name: str,
    kind: str,
    step: RealStep | BareStep,
    case: ModelCase,
    batch_size: int,
    opts: BenchOptions,
    device: torch.device,
    precision: str,
    peak_tflops: float,
) -> dict[str, Any]:
    """Count FLOPs on one eager step, check syncs on another, warm up, time; one result dict."""
    flops = count_flops(lambda: step.step(eager=True))
    sync_ops, cuda_warnings = step.check_syncs() if opts.check_syncs else ([], None)
    for _ in range(opts.warmup):
        step.step()
    times = time_steps(step.step, device, opts.steps, opts.repeats)
    step_s = statistics.median(times)
    mem, scope = peak_memory_mb(device)
    params = step.params
    return {
        "case": name, "kind": kind, "task": case.task if kind == "real" else None, **_common(device),
        "precision": precision, "compile": opts.compile, "tiny": opts.tiny, "batch_size": batch_size,
        "clones": case.clones, "tokens": case.tokens, "teacher_tokens": case.teacher_tokens,
        "params_m": sum(p.numel() for p in params) / 1e6,
        "steps": opts.steps, "warmup": opts.warmup, "repeats": opts.repeats,
        "step_ms": step_s * 1e3, "step_ms_min": min(times) * 1e3, "step_ms_max": max(times) * 1e3,
        "clips_per_s": batch_size / step_s, "flops_per_step": flops, "tflops": flops / step_s / 1e12,
        "peak_tflops": peak_tflops, "mfu": flops / step_s / 1e12 / peak_tflops if peak_tflops > 0 else None,
        "peak_mem_mb": mem, "mem_scope": scope,
        "host_syncs": len(sync_ops) if opts.check_syncs else None,
        "host_sync_ops": sorted(set(sync_ops)), "cuda_sync_warnings": cuda_warnings,
        "bare_clips_per_s": None, "bare_tflops": None, "efficiency": None,
    }


def run_model_case(
    case_name: str, batch_size: int, opts: BenchOptions, device: torch.device, precision: str, peak: float,
    with_bare: bool, with_real: bool,
) -> list[dict[str, Any]]:
    """The bare reference (if asked) then the real step of one case at one batch size."""
    out = []
    case = build_case(case_name, batch_size, opts)
    bare_result = None
    if with_bare:
        _release(device)
        bare = BareStep(case, batch_size, device, precision, opts.compile, opts.seed)
        bare_result = _guard_oom(f"bare_{case_name}", "bare", batch_size, device, lambda: measure_step(
            f"bare_{case_name}", "bare", bare, case, batch_size, opts, device, precision, peak))
        del bare
        out.append(bare_result)
    if with_real:
        _release(device)
        torch.manual_seed(opts.seed)
        real = RealStep(case.model, case.optim, case.batch, device, precision, opts.compile)
        result = _guard_oom(case_name, "real", batch_size, device, lambda: measure_step(
            case_name, "real", real, case, batch_size, opts, device, precision, peak))
        del real
        if bare_result is not None and "error" not in bare_result and "error" not in result:
            result["bare_clips_per_s"] = bare_result["clips_per_s"]
            result["bare_tflops"] = bare_result["tflops"]
            result["efficiency"] = result["clips_per_s"] / bare_result["clips_per_s"]
        out.append(result)
    del case
    _release(device)
    return out


def _guard_oom(name: str, kind: str, batch_size: int, device: torch.device, fn: Callable[[], dict]) -> dict:
    """Run a case; an out-of-memory error becomes a result line instead of ending the run."""
    try:
        return fn()
    except torch.OutOfMemoryError as e:
        logger.warning("%s at batch %d ran out of memory on %s: %s", name, batch_size, device, str(e).splitlines()[0])
        return {"case": name, "kind": kind, "batch_size": batch_size, "error": "out of memory"}


# --------------------------------------------------------------------------------------------
# The data path: bytes on disk per clip, and loader clips/s per format
# --------------------------------------------------------------------------------------------
SAMPLE_RATE = 16000
CLIP_SAMPLES = {False: 160000, True: 20400}  # 10-s clips (998 frames); tiny: 1.275 s (126 frames)
SYNTHETIC_SIGNAL = ("speech-like: harmonics of a 100-220 Hz gliding f0 through 3 formants, 4 syllables/s "
                    "with pauses, -24 dBFS; pink noise at -50 dBFS; 16-bit")
AS2M_CLIPS = 2_000_000  # AudioSet-2M, 10-s clips
GPUS_PER_NODE = 8
# Per-GPU clip rates that the loader must feed, from the GPU targets of README "Performance" (the
# design's performance targets): EAT pre-training at 85% of a compiled bf16 ViT-B on an H100 (about
# 344 clips/s bare), BEATs SSL at 80% of about 5,200 clips/s.
GPU_TARGET_CLIPS_PER_S = {"eat": 290.0, "beats": 4200.0}
LOADER_FORMATS = ("fbank", "raw_flac", "raw_flac_device")
LOADER_WARMUP_BATCHES = 2  # untimed batches before the timed ones


def speech_like(num_samples: int, seed: int) -> np.ndarray:
    """A deterministic speech-like clip, float64 in (-1, 1) at 16 kHz: voiced syllables (harmonics of a
    100-220 Hz fundamental gliding by +-17%, random phases, shaped by three formant peaks and a 1/k
    tilt), 0.12-0.3 s long with short gaps and an occasional pause (about 4 per second), scaled to
    -24 dBFS RMS, plus pink (1/f) background noise at -50 dBFS, never digital silence. FLAC's size
    depends on the signal: this one's 16-bit FLAC is about 60% of its PCM (music or loud noise
    compress less, silence more)."""
    rng = np.random.default_rng(seed)
    n, hop = num_samples, FRAME_SHIFT
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(100, 220) * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi))
                                  + 0.05 * np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        dur = int(rng.uniform(0.12, 0.3) * SAMPLE_RATE)
        m = min(dur, n - pos)
        envelope[pos:pos + m] = np.sin(np.pi * np.arange(m) / dur) ** 2 * rng.uniform(0.4, 1.0)
        pause = rng.uniform(0.3, 0.7) if rng.random() < 0.12 else 0.0
        pos += dur + int((rng.exponential(0.08) + pause) * SAMPLE_RATE)
    formants = [(rng.uniform(400, 800), 120.0), (rng.uniform(1000, 2000), 180.0), (rng.uniform(2300, 3000), 250.0)]
    f0_frames = f0[::hop]  # the gains follow f0 per 10 ms
    x = np.zeros(n)
    for k in range(1, int(7600 / f0.min()) + 1):
        fk = k * f0_frames
        gain = (sum(np.exp(-0.5 * ((fk - f) / bw) ** 2) for f, bw in formants) + 0.3 / k) * (fk < 7600)
        x += np.repeat(gain, hop)[:n] * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    x *= envelope
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.fft.rfftfreq(n, 1 / SAMPLE_RATE)[1:])
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (-24 / 20) + pink / pink.std() * 10 ** (-50 / 20)


def write_synthetic_dumps(root: Path, num_clips: int, num_samples: int, seed: int) -> dict[str, Path]:
    """The same ``num_clips`` speech-like clips (:func:`speech_like`) as the dumps stage 2 writes: raw
    FLAC and raw WAV in ark files (wav.scp, utt2num_samples; as audiossl.bin.dump_audio writes them)
    and one fbank dump per front end (feats.scp of compute_fbank's float32 log-mel, utt2num_frames).
    Returns {"raw_flac", "raw_wav", "fbank_beats", "fbank_eat"}: dump dir."""
    import kaldiio

    audio = {}
    for i in range(num_clips):
        x = np.rint(speech_like(num_samples, seed * 100003 + i) * 32768)
        audio[f"synthetic-{i:05d}"] = np.clip(x, -32768, 32767).astype(np.int16)
    dirs: dict[str, Path] = {}
    for container in ("flac", "wav"):
        d = dirs[f"raw_{container}"] = root / f"raw_{container}"
        d.mkdir(parents=True)
        kaldiio.save_ark(str(d / "wav.ark"), {u: (SAMPLE_RATE, x) for u, x in audio.items()}, scp=str(d / "wav.scp"),
                         write_function="soundfile", write_kwargs={"format": container, "subtype": "PCM_16"})
        (d / "utt2num_samples").write_text("".join(f"{u} {len(x)}\n" for u, x in audio.items()))
    for kind in FBANK_KINDS:
        d = dirs[f"fbank_{kind}"] = root / f"fbank_{kind}"
        d.mkdir(parents=True)
        frames = {}
        with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as writer:
            for u, x in audio.items():
                feats = compute_fbank(torch.from_numpy(x.astype(np.float32) / 32768), kind).numpy()
                writer(u, feats)
                frames[u] = feats.shape[0]
        (d / "utt2num_frames").write_text("".join(f"{u} {n}\n" for u, n in frames.items()))
    return dirs


def ark_bytes_per_clip(dump_dir: Path) -> float:
    """Bytes on disk per clip of a dump whose ark files hold its scp's clips and nothing else."""
    scp = dump_dir / ("feats.scp" if (dump_dir / "feats.scp").is_file() else "wav.scp")
    clips = sum(1 for line in scp.read_text().splitlines() if line.strip())
    return sum(p.stat().st_size for p in dump_dir.glob("*.ark")) / clips


def storage_results(dirs: dict[str, Path], num_clips: int, num_samples: int) -> list[dict[str, Any]]:
    """One ``storage`` line per format of :func:`write_synthetic_dumps`, scaled to AudioSet-2M."""
    clip_s = num_samples / SAMPLE_RATE
    per_clip = {name: ark_bytes_per_clip(d) for name, d in dirs.items()}
    as2m_gb = {name: AS2M_CLIPS * b * (10.0 / clip_s) / 1e9 for name, b in per_clip.items()}
    fbank_both = as2m_gb["fbank_beats"] + as2m_gb["fbank_eat"]  # one fbank dump per front end
    out = []
    for name in ("fbank_beats", "fbank_eat", "raw_flac", "raw_wav"):
        fmt, kind = ("fbank", name[len("fbank_"):]) if name.startswith("fbank_") else (name, None)
        both = fbank_both if fmt == "fbank" else as2m_gb[name]  # a raw dump serves both models
        out.append({
            "case": "storage", "kind": "storage", "source": "synthetic", "signal": SYNTHETIC_SIGNAL, "format": fmt,
            "fbank_kind": kind, "clips": num_clips, "clip_s": clip_s, "clip_frames": num_frames_of(num_samples),
            "bytes_per_clip": per_clip[name], "as2m_clips": AS2M_CLIPS, "as2m_gb": as2m_gb[name],
            "as2m_gb_both_models": both, "vs_fbank_both_models": both / fbank_both,
        })
    return out


def cores_for_gpus(per_core_clips_per_s: float, model: str, gpus: int = GPUS_PER_NODE) -> int:
    """Loader cores that feed ``gpus`` GPUs of ``model`` at its per-GPU target, at a per-core rate."""
    return math.ceil(gpus * GPU_TARGET_CLIPS_PER_S[model] / per_core_clips_per_s)


def _raw_container(dump_dir: Path) -> str:
    """"flac" or "wav": the container of the first clip of a raw dump's wav.scp."""
    from audiossl.data.datadir import read_kv

    entry = next(iter(read_kv(dump_dir / "wav.scp", check_sorted=False).values()))
    path, _, offset = entry.rpartition(":")
    with open(path, "rb") as f:
        f.seek(int(offset))
        head = f.read(32)  # kaldiio's "AUDIO" marker and length, then the file
    return next((name for magic, name in ((b"fLaC", "flac"), (b"RIFF", "wav")) if magic in head), "unknown")


def _linked_dump(scp: Path, tmp: Path, name: str, sides: tuple[str, ...]) -> Path:
    """A dump dir holding ``scp`` as ``name`` (and its side files, if named as the dump writes them)."""
    if scp.name == name:
        return scp.parent
    d = tmp / f"given_{name.split('.')[0]}"
    d.mkdir()
    (d / name).symlink_to(scp.resolve())
    for side in sides:
        if (scp.parent / side).is_file():
            (d / side).symlink_to((scp.parent / side).resolve())
    return d


def run_loader_cases(opts: BenchOptions, device: torch.device) -> Iterator[dict[str, Any]]:
    """The ``storage`` lines, then the ``loader`` lines of every format, front end and batch size, as
    each is measured: of the synthetic dumps of :func:`write_synthetic_dumps`, or of the given
    feats.scp / wav.scp."""
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        # (format, fbank_kind, dump dir, source, clip frames, bytes per clip)
        runs: list[tuple[str, str | None, Path, str, int | None, float | None]] = []
        if opts.feats_scp or opts.wav_scp:
            if opts.feats_scp:
                scp = Path(opts.feats_scp)
                if not scp.is_file():
                    raise FileNotFoundError(f"{scp}: no such feats.scp (--feats-scp)")
                d = _linked_dump(scp, Path(tmp), "feats.scp", ("utt2num_frames",))
                runs.append(("fbank", None, d, str(scp), None, None))
            if opts.wav_scp:
                scp = Path(opts.wav_scp)
                if not scp.is_file():
                    raise FileNotFoundError(f"{scp}: no such wav.scp (--wav-scp)")
                d = _linked_dump(scp, Path(tmp), "wav.scp", ("utt2num_samples",))
                raw = f"raw_{_raw_container(d)}"
                runs += [(fmt, kind, d, str(scp), None, None) for fmt in (raw, f"{raw}_device") for kind in FBANK_KINDS]
        else:
            num_samples = CLIP_SAMPLES[opts.tiny]
            biggest = max(opts.batch_sizes["loader"])
            num_clips = min(biggest * (LOADER_WARMUP_BATCHES + opts.loader_batches), max(biggest, 32))
            dirs = write_synthetic_dumps(Path(tmp) / "dumps", num_clips, num_samples, opts.seed)
            yield from storage_results(dirs, num_clips, num_samples)
            per_clip = {name: ark_bytes_per_clip(d) for name, d in dirs.items()}
            clip_frames = num_frames_of(num_samples)
            for fmt in LOADER_FORMATS:
                for kind in FBANK_KINDS:
                    name = f"fbank_{kind}" if fmt == "fbank" else "raw_flac"
                    runs.append((fmt, kind, dirs[name], "synthetic", clip_frames, per_clip[name]))
        for bs in opts.batch_sizes["loader"]:
            for fmt, kind, dump_dir, source, clip_frames, per_clip_bytes in runs:
                r = run_loader_case(bs, opts, device, fmt, kind, dump_dir, source)
                r.update(clip_frames=clip_frames, bytes_per_clip=per_clip_bytes)
                yield r



def run_loader_case(
    batch_size: int, opts: BenchOptions, device: torch.device, fmt: str, kind: str | None, dump_dir: Path, source: str,
) -> dict[str, Any]:
    """Clips/s of one dump through FeatsDataset -> Collator in a DataLoader with ``num_workers`` (each
    on one torch thread), set up as the trainer does (batch sampler with crop seeds, pinned memory on
    CUDA), cropping or padding to the input length. ``fmt`` "*_device": the loader hands waveforms
    and :class:`FbankOnDevice` makes the features on ``device``, timed apart on the last batch."""
    from torch.utils.data import DataLoader

    from audiossl.data.dataset import Collator, FbankOnDevice, FeatsDataset
    from audiossl.data.fbank import FeatureNorm
    from audiossl.data.sampler import DistributedBatchSampler

    frames = input_frames(opts.tiny)
    on_device = fmt.endswith("_device")
    norm = FeatureNorm(*AUDIOSET_NORM)
    dataset = FeatsDataset(dump_dir, target_frames=frames, crop="random", label_names=None, fbank_kind=kind,
                           waveform=on_device)
    if len(dataset) < batch_size:
        raise ValueError(f"{source}: {len(dataset)} clips, fewer than one batch of {batch_size}")
    sampler = DistributedBatchSampler(len(dataset), batch_size, seed=opts.seed, shuffle=True)
    workers = opts.num_workers
    loader = DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers,
        collate_fn=Collator(norm, frames), pin_memory=device.type == "cuda",
        worker_init_fn=_loader_worker_init if workers > 0 else None,
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
    )

    def batches() -> Iterator[dict[str, Any]]:
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    it = batches()
    for _ in range(LOADER_WARMUP_BATCHES):
        next(it)
    clips = 0
    t0 = time.perf_counter()
    for _ in range(opts.loader_batches):
        batch = next(it)
        clips += len(batch["utt_ids"])
    dt = time.perf_counter() - t0
    del it, loader
    device_ms = None
    if on_device:
        device_ms = time_device_frontend(FbankOnDevice(kind, norm, frames).to(device), batch, device, opts)
    clips_per_s = clips / dt
    per_worker = clips_per_s / max(workers, 1)
    models = (kind,) if kind is not None else tuple(GPU_TARGET_CLIPS_PER_S)
    return {
        "case": "loader", "kind": "loader", **_common(device), "source": source, "format": fmt, "fbank_kind": kind,
        "frames": frames, "clip_frames": None, "bytes_per_clip": None, "batch_size": batch_size, "num_workers": workers,
        "batches": opts.loader_batches, "clips": clips, "step_ms": dt / opts.loader_batches * 1e3,
        "clips_per_s": clips_per_s, "clips_per_s_per_worker": per_worker,
        **{f"cores_for_{GPUS_PER_NODE}_gpus_{m}": cores_for_gpus(per_worker, m) if m in models else None
           for m in GPU_TARGET_CLIPS_PER_S},
        "device_ms_per_batch": device_ms,
        "device_clips_per_s": None if device_ms is None else batch_size / device_ms * 1e3,
    }


def time_device_frontend(frontend: nn.Module, batch: dict[str, Any], device: torch.device, opts: BenchOptions) -> float:
    """Mean ms of ``frontend`` on a collated waveform batch already on ``device`` (after one untimed call)."""
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    reps = 1 if opts.tiny else (20 if device.type == "cuda" else 3)
    with torch.no_grad():
        frontend(batch)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            frontend(batch)
        synchronize(device)
    return (time.perf_counter() - t0) / reps * 1e3


def _loader_worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)


def run_benchmark(opts: BenchOptions, emit: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the selected cases; ``emit`` receives each result dict as soon as it is ready."""
    device = select_device(opts.device)
    opts = resolve_options(opts, device)
    precision = opts.precision if opts.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    results: list[dict[str, Any]] = []

    def add(r: dict[str, Any]) -> None:
        results.append(r)
        if emit is not None:
            emit(r)

    real_cases = [c for c in MODEL_CASES if c in opts.cases]
    with_bare = "bare" in opts.cases
    model_cases = real_cases or (list(MODEL_CASES) if with_bare else [])
    logger.info("device %s (%s), precision %s, %d threads, cases %s", device, device_name(device), precision,
                torch.get_num_threads(), ", ".join(opts.cases))
    if model_cases:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        size, iters, repeats = (256, 5, 2) if opts.tiny else ((8192, 20, 5) if device.type == "cuda" else (2048, 3, 3))
        peak = matmul_peak_tflops(device, dtype, size, iters, repeats)
        add({"case": "matmul", "kind": "peak", **_common(device), "dtype": str(dtype).replace("torch.", ""),
             "size": size, "tflops": peak})
        for case_name in model_cases:
            for bs in opts.batch_sizes[case_name]:
                for r in run_model_case(case_name, bs, opts, device, precision, peak, with_bare, case_name in real_cases):
                    add(r)
    if "loader" in opts.cases:
        for r in run_loader_cases(opts, device):
            add(r)
    return results


def format_result(result: dict[str, Any]) -> str:
    """One JSON line; floats rounded to 4 significant digits, NaN/inf as null."""
    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.4g}") if math.isfinite(v) else None
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps({k: clean(v) for k, v in result.items()})
