"""Task "finetune": a classifier over a pre-trained encoder, with the official fine-tuning recipes.

Where the encoder comes from (``model.init``, a ``model.pt``):

* a pre-trained model of any task that implements ``build_encoder`` (``beats_ssl``, ``eat_pretrain``,
  ...): the encoder is built by ``get_task(<its task>).build_encoder(<its ModelConfig>)``, the
  ModelConfig rebuilt from the file's saved ``config["model"]``, and its ``encoder.*`` weights loaded
  strictly (a mismatch lists the missing, unexpected and mis-shaped keys);
* a ``finetune`` model.pt (ours, or a released fine-tuned BEATs/EAT checkpoint converted by
  ``audiossl.bin.import_checkpoint``): the encoder task and config come from its ``model`` section
  (``encoder_task``, ``encoder``), its ``encoder.*`` weights are loaded, and ``head_norm.*`` /
  ``head.*`` too when the class count matches (``load_head``).

A ``finetune`` model.pt (what the importers write, and what training saves) looks like::

    task: finetune
    config: {"model": {"encoder_task": "eat_pretrain", "encoder": {<that task's ModelConfig>},
                       "pooling": "cls", "head_norm": true, "num_classes": 527, ...}, ...}
    model: {"encoder.*": ..., "head_norm.*": ..., "head.*": ...}
    extra: {"label_names": [...], "pooling": "cls", "encoder_task": ..., "encoder": {...}, ...}

``load_finetuned(path)`` rebuilds such a model from the file alone (no init file needed), which is
what scoring does.

The training recipe follows EAT's fine-tuning code (design notes section 4): augmentations in the
order the official pipeline applies them (roll + gain on the clip, background noise, noise + shift,
mixup, SpecAugment), then the loss: ``ce`` (soft-target cross-entropy, label smoothing) or ``bce``
(optionally divided by the number of positive labels in the batch, EAT's AudioSet loss).
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.data import augment
from audiossl.data.dataset import DataInfo
from audiossl.models.abs_encoder import AbsEncoder
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.models.checkpoint import load_model, load_strict
from audiossl.models.classifier import AudioClassifier
from audiossl.tasks.abs_task import AbsTask, register_task
from audiossl.tasks.encoder import FINETUNE_TASK, build_encoder, encoder_config, encoder_source, sub_state
from audiossl.train.config import plain

logger = logging.getLogger(__name__)

TASK_NAME = FINETUNE_TASK


@dataclass
class FinetuneConfig:
    """The ``model:`` section of a fine-tuning config.

    Encoder source:
        init: a model.pt to start from (pre-trained, or a ``finetune`` one); None: a randomly
            initialised encoder from ``encoder_task`` + ``encoder`` (supervised from scratch).
        init_weights: load the weights of ``init``; false takes only its architecture (task and
            encoder config) and leaves the encoder randomly initialised: the from-scratch control of
            a pre-trained run, the same model and recipe without the pre-training.
        encoder_task: the task whose ``build_encoder`` makes the encoder; filled in from ``init``.
        encoder: that task's ModelConfig fields; filled in from ``init``.
        encoder_overrides: changes to ``encoder`` before the encoder is built, dotted keys into it
            (e.g. ``{"encoder.dropout": 0.1}``).
        drop_path: stochastic depth rate for encoders whose config has a ``drop_path_rate`` (or
            ``drop_path``) field (EAT: 0.1); None leaves the saved value; an error if no such field.
        load_head: from a ``finetune`` init, also load ``head.*`` (and ``head_norm.*``); None: when
            the class count matches.
        find_unused_parameters: tell DDP that some parameters may get no gradient in a step (layer
            drop); None: true when the encoder config has a layerdrop above 0.
    Head:
        num_classes: from the data (labels.txt); 0 = take the data's count.
        pooling: "mean" over unpadded tokens (BEATs) or "cls" (EAT).
        head_norm, head_norm_eps: LayerNorm before the head (EAT's fc_norm, eps 1e-6).
        head_dropout: dropout on the pooled vector.
        head_init_std: head weight init std (2e-5 as MAE; EAT's code 0.02).
        freeze_encoder: linear probe: encoder frozen and in eval mode, only head_norm/head train.
        layer_decay_below_blocks: whether layer-wise LR decay also scales the parameters below the
            first block (patch embedding, CLS, input norm). EAT decays the blocks only (false);
            BEiT-style decay includes them (true).
    Loss:
        loss: "bce" (sigmoid scores) or "ce" (softmax scores).
        multi_label: whether the data are multi-label (mAP) or single-label (accuracy); None: bce.
        label_smoothing: training targets y (1 - s) + s / C (timm's rule, as in EAT).
        bce_normalize_by_positives: BCE summed over the batch and divided by the number of positive
            labels (the sum of the training targets) instead of averaged over B x C: EAT's AudioSet
            loss (fairseq sample_size = labels.sum()).
    Augmentation (training only):
        mixup_alpha, mixup_prob: batch mixup with lam ~ Beta(alpha, alpha), applied with mixup_prob.
        specaug_mask_ratio: one frequency mask < F * r bins and one time mask < T * r frames.
        roll: circular roll of each clip's frames (EAT ``roll_aug``).
        gain: random gain Beta(10, 10) + 0.5 on the waveform, as a log-mel offset (needs aug_norm_std).
        noise_scale, time_shift: SPC-2 uniform noise * U[0,1) * noise_scale and a circular shift in
            [-time_shift, time_shift) frames (EAT ``noise``: 0.1 and 10).
        background_noise: a wav.scp of noise recordings mixed in at a random SNR (SPC-2
            ``_background_noise_``); background_noise_kind: their fbank front end (beats|eat);
            background_noise_snr_db: [low, high] dB; background_noise_prob: per-clip probability.
        aug_norm_mean, aug_norm_std: the data normalisation (data.norm_mean / norm_std) that gain and
            background noise need to work on raw log-mel power.
    """

    init: str | None = None
    init_weights: bool = True
    encoder_task: str | None = None
    encoder: dict[str, Any] | None = None
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    drop_path: float | None = None
    load_head: bool | None = None
    find_unused_parameters: bool | None = None

    num_classes: int = 0
    pooling: Literal["mean", "cls"] = "mean"
    head_norm: bool = False
    head_norm_eps: float = 1e-6
    head_dropout: float = 0.0
    head_init_std: float = 2e-5
    freeze_encoder: bool = False
    layer_decay_below_blocks: bool = True

    loss: Literal["bce", "ce"] = "bce"
    multi_label: bool | None = None
    label_smoothing: float = 0.0
    bce_normalize_by_positives: bool = False

    mixup_alpha: float = 0.0
    mixup_prob: float = 1.0
    specaug_mask_ratio: float = 0.0
    roll: bool = False
    gain: bool = False
    noise_scale: float = 0.0
    time_shift: int = 0
    background_noise: str | None = None
    background_noise_kind: Literal["beats", "eat"] = "eat"
    background_noise_snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])
    background_noise_prob: float = 0.5
    aug_norm_mean: float | None = None
    aug_norm_std: float | None = None

    @property
    def is_multi_label(self) -> bool:
        return self.loss == "bce" if self.multi_label is None else self.multi_label


# --------------------------------------------------------------------------------------------
# Encoder config overrides
# --------------------------------------------------------------------------------------------
def _set_dotted(d: dict[str, Any], key: str, value: Any, where: str) -> None:
    node = d
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise ValueError(f"{where}: {key!r}: {p!r} is not a section of the encoder config")
        node = node[p]
    node[parts[-1]] = value


def _find_fields(cfg_dict: dict[str, Any], names: tuple[str, ...], prefix: str = "") -> list[str]:
    """Dotted paths of every key in ``names`` inside a (nested) config dict."""
    found = []
    for k, v in cfg_dict.items():
        if k in names and not isinstance(v, dict):
            found.append(prefix + k)
        elif isinstance(v, dict):
            found += _find_fields(v, names, f"{prefix}{k}.")
    return found


def _has_layerdrop(cfg_dict: dict[str, Any]) -> bool:
    """Whether a (nested) encoder config skips whole layers at random (e.g. BEATs encoder_layerdrop)."""
    for k, v in cfg_dict.items():
        if isinstance(v, dict) and _has_layerdrop(v):
            return True
        if "layerdrop" in k and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return True
    return False


# --------------------------------------------------------------------------------------------
# The training model
# --------------------------------------------------------------------------------------------
class FinetuneModel(AudioClassifier, AbsTrainModel):
    """AudioClassifier + fine-tuning loss and augmentations; the trainer's training model.

    Its state dict is the classifier's (``encoder.*``, ``head_norm.*``, ``head.*``).
    forward(batch) -> (loss, {"loss", "acc"}, B); predict(batch) -> (B, C) sigmoid or softmax scores.
    """

    def __init__(
        self,
        cfg: FinetuneConfig,
        encoder: AbsEncoder,
        encoder_task: str,
        encoder_cfg: dict[str, Any],
        num_classes: int,
        label_names: list[str],
    ):
        super().__init__(
            encoder,
            num_classes,
            pooling=cfg.pooling,
            head_norm=cfg.head_norm,
            head_norm_eps=cfg.head_norm_eps,
            dropout=cfg.head_dropout,
            head_init_std=cfg.head_init_std,
        )
        self.cfg = cfg
        self.encoder_task = encoder_task
        self.encoder_cfg = encoder_cfg
        self.label_names = list(label_names)
        self.multi_label = cfg.is_multi_label
        self.find_unused_parameters = (
            _has_layerdrop(encoder_cfg) if cfg.find_unused_parameters is None else cfg.find_unused_parameters
        )
        if cfg.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        self.register_buffer("noise_bank", torch.zeros(0, 0, 0), persistent=False)  # (K, L, F)
        self.register_buffer("noise_lengths", torch.zeros(0, dtype=torch.long), persistent=False)  # (K,)
        if cfg.background_noise:
            self.noise_bank, self.noise_lengths = load_noise_bank(cfg)

    # --- modes ------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "FinetuneModel":
        super().train(mode)
        if self.cfg.freeze_encoder:
            self.encoder.eval()  # linear probe: no dropout / drop path / batch statistics in the encoder
        return self

    def features(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.freeze_encoder:
            with torch.no_grad():
                return super().features(feats, padding_mask).detach()
        return super().features(feats, padding_mask)

    # --- augmentation -------------------------------------------------------------------------------
    def augment(
        self, feats: torch.Tensor, padding_mask: torch.Tensor | None, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The training augmentations, in the official order (see the module docstring)."""
        c = self.cfg
        if c.roll or c.gain:
            feats = augment.roll_and_gain(feats, padding_mask, roll=c.roll, gain_norm_std=c.aug_norm_std if c.gain else None)
        if self.noise_bank.numel() > 0:
            feats = augment.mix_background_noise(
                feats,
                self.noise_crops(feats),
                norm_mean=c.aug_norm_mean,
                norm_std=c.aug_norm_std,
                snr_db=(c.background_noise_snr_db[0], c.background_noise_snr_db[1]),
                prob=c.background_noise_prob,
                padding_mask=padding_mask,
            )
        if c.noise_scale > 0 or c.time_shift > 0:
            feats, padding_mask = augment.noise_and_shift(feats, padding_mask, c.noise_scale, c.time_shift)
        targets = augment.smooth_targets(targets, c.label_smoothing)
        if c.mixup_alpha > 0:
            feats, targets, padding_mask, _ = augment.mixup(feats, targets, c.mixup_alpha, c.mixup_prob, padding_mask=padding_mask)
        if c.specaug_mask_ratio > 0:
            B, T, F_ = feats.shape
            feats = augment.spec_augment(feats, F_ * c.specaug_mask_ratio, T * c.specaug_mask_ratio)
        return feats, padding_mask, targets

    def noise_crops(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) noise: a random recording and a random start per clip, wrapping around."""
        B, T, F_ = feats.shape
        K = self.noise_bank.shape[0]
        dev = feats.device
        idx = (torch.rand(B, device=dev) * K).long()  # (B,)
        lengths = self.noise_lengths[idx]  # (B,)
        start = (torch.rand(B, device=dev) * lengths).long()  # (B,)
        t = torch.remainder(start[:, None] + torch.arange(T, device=dev)[None, :], lengths[:, None])  # (B, T)
        return self.noise_bank[idx[:, None], t].to(feats.dtype)  # (B, T, F)

    # --- loss ---------------------------------------------------------------------------------------
    def loss_from_logits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        targets = targets.float()
        if self.cfg.loss == "ce":
            # Soft-target cross-entropy; a multi-hot row is spread evenly over its labels.
            dist = targets / targets.sum(dim=-1, keepdim=True).clamp(min=1e-12)
            return -(dist * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        if self.cfg.bce_normalize_by_positives:
            total = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
            return total / targets.sum().clamp(min=1.0)
        return F.binary_cross_entropy_with_logits(logits, targets)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        assert "targets" in batch, "fine-tuning needs targets: the dump dir has no utt2label/labels.txt"
        feats, padding_mask, targets = batch["feats"], batch.get("padding_mask"), batch["targets"]
        B = feats.shape[0]
        assert targets.shape == (B, self.num_classes), (
            f"targets {tuple(targets.shape)} do not match (batch, num_classes) = {(B, self.num_classes)}"
        )
        train_targets = targets
        if self.training:
            feats, padding_mask, train_targets = self.augment(feats, padding_mask, targets)
        logits = self.logits(feats, padding_mask)
        loss = self.loss_from_logits(logits, train_targets)
        hits = targets.gather(1, logits.argmax(dim=-1, keepdim=True)).squeeze(1) > 0.5  # top-1 is a true label
        stats = {"loss": loss.detach(), "acc": hits.float().mean()}
        return loss, stats, B

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, C) float32 scores: sigmoid for bce, softmax for ce. No augmentation."""
        logits = self.logits(batch["feats"], batch.get("padding_mask")).float()
        return torch.sigmoid(logits) if self.cfg.loss == "bce" else torch.softmax(logits, dim=-1)

    # --- optimiser hooks ------------------------------------------------------------------------------
    def layer_id(self, param_name: str) -> int:
        lid = super().layer_id(param_name)
        if lid == 0 and not self.cfg.layer_decay_below_blocks:
            return self.num_layers + 1  # EAT: only the blocks are decayed
        return lid

    def export(self) -> dict[str, Any]:
        return {
            "label_names": self.label_names,
            "pooling": self.pooling,
            "num_classes": self.num_classes,
            "multi_label": self.multi_label,
            "loss": self.cfg.loss,
            "head_norm": self.cfg.head_norm,
            "encoder_task": self.encoder_task,
            "encoder": self.encoder_cfg,
        }


def load_noise_bank(cfg: FinetuneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised fbank of every recording in ``cfg.background_noise`` (a wav.scp), zero-padded into
    one (K, L, F) tensor, and their (K,) lengths in frames."""
    from audiossl.data.audio import load_audio
    from audiossl.data.datadir import read_kv
    from audiossl.data.fbank import FeatureNorm, compute_fbank, normalize

    if cfg.aug_norm_mean is None or cfg.aug_norm_std is None:
        raise ValueError(
            "model.background_noise needs model.aug_norm_mean and model.aug_norm_std "
            "(the data normalisation, as data.norm_mean / data.norm_std)"
        )
    norm = FeatureNorm(cfg.aug_norm_mean, cfg.aug_norm_std)
    specs = read_kv(cfg.background_noise, check_sorted=False)
    if not specs:
        raise ValueError(f"{cfg.background_noise}: no noise recordings listed")
    banks = [normalize(compute_fbank(load_audio(spec), cfg.background_noise_kind), norm) for spec in specs.values()]
    lengths = torch.tensor([b.shape[0] for b in banks], dtype=torch.long)
    bank = torch.zeros(len(banks), int(lengths.max()), banks[0].shape[1])
    for i, b in enumerate(banks):
        bank[i, : b.shape[0]] = b
    logger.info("background noise: %d recordings from %s (%d frames)", len(banks), cfg.background_noise, int(lengths.sum()))
    return bank, lengths


# --------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------
def _check_config(cfg: FinetuneConfig) -> None:
    def bad(key: str, msg: str) -> None:
        raise ValueError(f"model.{key} {msg} (got {getattr(cfg, key)!r})")

    if cfg.gain and cfg.aug_norm_std is None:
        bad("aug_norm_std", "is needed by model.gain (set it to the data normalisation std, data.norm_std)")
    if not 0 <= cfg.label_smoothing < 1:
        bad("label_smoothing", "must be in [0, 1)")
    if not 0 <= cfg.specaug_mask_ratio < 1:
        bad("specaug_mask_ratio", "must be in [0, 1)")
    if len(cfg.background_noise_snr_db) != 2:
        bad("background_noise_snr_db", "must be [low, high] in dB")
    if cfg.init is None and (cfg.encoder_task is None or cfg.encoder is None):
        bad("init", "is required (a model.pt), unless model.encoder_task and model.encoder describe an encoder to train from scratch")


def _init_description(cfg: FinetuneConfig) -> str:
    if cfg.init is None:
        return "random init"
    return cfg.init if cfg.init_weights else f"architecture of {cfg.init}, random init"


@register_task(TASK_NAME)
class FinetuneTask(AbsTask):
    ModelConfig = FinetuneConfig

    @classmethod
    def build_model(cls, model_cfg: FinetuneConfig, data_info: DataInfo) -> FinetuneModel:
        """The classifier over the init file's encoder (weights loaded), with a fresh head.

        Fills in ``model_cfg.encoder_task``, ``model_cfg.encoder`` and ``model_cfg.num_classes`` so
        that the saved config describes the model completely.
        """
        _check_config(model_cfg)
        num_classes = data_info.num_classes
        if num_classes <= 0:
            raise ValueError("fine-tuning needs labels: the train dump dir must have labels.txt and utt2label")
        if model_cfg.num_classes not in (0, num_classes):
            raise ValueError(f"model.num_classes is {model_cfg.num_classes} but the data have {num_classes} classes")
        label_names = list(data_info.label_names) or [str(i) for i in range(num_classes)]
        if data_info.multi_label_clips and not model_cfg.is_multi_label:
            raise ValueError(
                f"{data_info.source or 'the train set'}: {data_info.multi_label_clips} clips have more than one "
                f"label (utt2label), but this config is single-label (model.loss {model_cfg.loss!r}, model.multi_label "
                f"{model_cfg.multi_label}): a softmax would split each clip's target between its labels and "
                "accuracy would count any of them as right; use a multi-label config (model.loss bce, "
                "model.multi_label true, scored by mAP), or give each clip one label"
            )

        obj = None
        if model_cfg.init is not None:
            obj = load_model(model_cfg.init)
            task_name, enc_dict = encoder_source(obj, model_cfg.init)
            if model_cfg.encoder_task not in (None, task_name):
                raise ValueError(
                    f"model.encoder_task is {model_cfg.encoder_task!r} but {model_cfg.init} holds a "
                    f"{task_name!r} encoder; drop model.encoder_task"
                )
        else:
            task_name, enc_dict = model_cfg.encoder_task, copy.deepcopy(model_cfg.encoder)
        enc_dict = apply_encoder_overrides(task_name, enc_dict, model_cfg)
        encoder, enc_resolved = build_encoder(task_name, enc_dict, where=f"encoder config of {model_cfg.init or 'model.encoder'}")

        model_cfg.encoder_task, model_cfg.encoder, model_cfg.num_classes = task_name, enc_resolved, num_classes
        model = FinetuneModel(model_cfg, encoder, task_name, enc_resolved, num_classes, label_names)
        if obj is not None and model_cfg.init_weights:
            load_init_weights(model, obj, model_cfg)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        logger.info(
            "finetune: %s encoder (%s) + %s pooling -> %d classes; %.2fM parameters, %.2fM trainable",
            task_name, _init_description(model_cfg), model_cfg.pooling, num_classes, n_all / 1e6, n_train / 1e6,
        )
        return model

    @classmethod
    def build_encoder(cls, model_cfg: FinetuneConfig) -> AbsEncoder:
        """The encoder of a fine-tuned model (so a ``finetune`` model.pt can itself be an init)."""
        assert model_cfg.encoder_task and model_cfg.encoder is not None, (
            "a finetune model config needs encoder_task and encoder to rebuild its encoder"
        )
        return build_encoder(model_cfg.encoder_task, copy.deepcopy(model_cfg.encoder))[0]


def apply_encoder_overrides(task_name: str, enc_dict: dict[str, Any], cfg: FinetuneConfig) -> dict[str, Any]:
    """The encoder config, resolved through the task's ModelConfig (defaults filled in), with
    ``cfg.encoder_overrides`` and ``cfg.drop_path`` applied."""
    enc_dict = plain(encoder_config(task_name, enc_dict, "model.encoder"))
    for key, value in cfg.encoder_overrides.items():
        _set_dotted(enc_dict, key, value, "model.encoder_overrides")
    if cfg.drop_path is not None:
        paths = _find_fields(enc_dict, ("drop_path_rate", "drop_path"))
        if not paths:
            raise ValueError(
                f"model.drop_path is {cfg.drop_path} but the {task_name!r} encoder config has no drop_path_rate "
                "field (this encoder has no stochastic depth): set model.drop_path: null"
            )
        for p in paths:
            _set_dotted(enc_dict, p, cfg.drop_path, "model.drop_path")
    return enc_dict


def load_init_weights(model: FinetuneModel, obj: dict[str, Any], cfg: FinetuneConfig) -> None:
    """Load ``encoder.*`` (strict), and for a ``finetune`` init the head when it fits."""
    state = obj["model"]
    source = f"{cfg.init} (task {obj['task']})"
    load_strict(model.encoder, sub_state(state, "encoder."), source, prefix="encoder.")
    if obj["task"] != TASK_NAME:
        return
    head = sub_state(state, "head.")
    fits = "weight" in head and tuple(head["weight"].shape) == tuple(model.head.weight.shape)
    load_head = fits if cfg.load_head is None else cfg.load_head
    if load_head:
        if not fits:
            raise ValueError(
                f"{cfg.init}: model.load_head is true but its head has shape "
                f"{tuple(head['weight'].shape) if 'weight' in head else 'none'}, ours {tuple(model.head.weight.shape)}"
            )
        load_strict(model.head, head, source, prefix="head.")
        norm = sub_state(state, "head_norm.")
        if isinstance(model.head_norm, nn.LayerNorm) and norm:
            load_strict(model.head_norm, norm, source, prefix="head_norm.")
        logger.info("loaded the head of %s", cfg.init)
    else:
        logger.info("%s: head not loaded (%s); it starts fresh", cfg.init, "load_head false" if fits else "class count differs")


def load_finetuned(
    path: str | os.PathLike | dict[str, Any], map_location: str | torch.device = "cpu", source: str | None = None,
) -> FinetuneModel:
    """Rebuild a ``finetune`` model.pt (ours or imported) from the file alone, weights loaded strictly.

    The model comes back in eval mode. ``path`` may also be an already-loaded model.pt dict, with
    ``source`` naming it in messages.
    """
    from audiossl.train.config import dataclass_from_dict

    obj = path if isinstance(path, dict) else load_model(path)
    name = (source or "model.pt") if isinstance(path, dict) else str(path)
    if obj["task"] != TASK_NAME:
        raise ValueError(f"{name}: task {obj['task']!r} is not a fine-tuned classifier (task 'finetune'); fine-tune it first")
    model_section = copy.deepcopy((obj.get("config") or {}).get("model") or {})
    task_name, enc_dict = encoder_source(obj, name)
    extra = obj.get("extra") or {}
    head_w = obj["model"].get("head.weight")
    assert head_w is not None, f"{name}: no head.weight in the state dict"
    num_classes = int(head_w.shape[0])
    model_section.update(encoder_task=task_name, encoder=enc_dict, init=None, num_classes=num_classes)
    model_section.setdefault("pooling", extra.get("pooling", "mean"))
    model_section.setdefault("head_norm", any(k.startswith("head_norm.") for k in obj["model"]))
    cfg = dataclass_from_dict(FinetuneConfig, model_section, f"{name}: model")
    cfg.encoder_overrides, cfg.drop_path, cfg.background_noise = {}, None, None
    with torch.device("meta"):  # the file's weights replace these: no memory, no random init
        encoder, enc_resolved = build_encoder(task_name, enc_dict, where=f"{name}: encoder config")
    labels = extra.get("label_names") or [str(i) for i in range(num_classes)]
    model = FinetuneModel(cfg, encoder, task_name, enc_resolved, num_classes, labels)
    load_strict(model, obj["model"], name)
    return model.to(map_location).eval()
