"""EAT pre-training model: student encoder + CNN decoder + EMA teacher, one loss per batch.

One step (official ``Data2VecMultiModel.forward`` with ``clone_batch`` 16):

    feats (B, T, 128) ---------------------------------------------- teacher (no grad, eval) ---
      |                                                                 all N patches + CLS
      | patch conv + positions, once per clip                           -> FFN outputs of the top K
      | C independent inverse block masks per clip (B * C, N)           -> targets y (B, N, D)
      | gather the K visible patches of each clone (B * C, K, D)
      v
    student blocks on CLS + K tokens -> CLS (B * C, D) vs mean_N(y)        (utterance term)
                                     -> visible outputs + noise on the grid
                                     -> CNN decoder (B * C, N, D) vs y at masked patches (frame term)

The training model keeps the student encoder at ``encoder`` (keys ``encoder.*``, what fine-tuning
loads), the decoder at ``decoder`` and the teacher at ``teacher``; the teacher's parameters never
require grad (the optimiser skips them), are saved in the state dict, and stay in float32 (under
autocast the teacher *computes* in the autocast dtype, like the official fp16 teacher, while its
weights and the EMA stay float32). ``after_optimizer_step`` runs the EMA update.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch

from audiossl.models.eat.decoder import EATDecoder, decoder_input
from audiossl.models.eat.encoder import EATEncoder, EATEncoderConfig
from audiossl.models.eat.masking import inverse_block_mask, kept_indices, masked_indices, num_kept_patches
from audiossl.models.eat.targets import LOSS_SCALES, eat_loss, ema_decay_at, make_targets, mean_channel_std
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.models.ema import ema_update_

logger = logging.getLogger(__name__)


@dataclass
class EATPretrainConfig:
    """The ``model:`` section of an ``eat_pretrain`` config. Defaults are the official EAT-base
    pre-training values; sources are cwx-worst-one/EAT ``config/pretraining_AS2M.yaml`` (yaml) and
    the data2vec 2.0 code it runs (``models/*.py``, code).
    """

    # encoder (yaml model.*; code D2vImageConfig / Data2VecMultiConfig)
    embed_dim: int = 768  # code Data2VecMultiConfig.embed_dim
    depth: int = 12  # yaml model.depth
    num_heads: int = 12  # code Data2VecMultiConfig.num_heads
    mlp_ratio: float = 4.0  # code Data2VecMultiConfig.mlp_ratio
    patch_size: int = 16  # code D2vImageConfig.patch_size
    num_mel_bins: int = 128  # code ImageEncoder: img_size (target_length, 128)
    max_time_patches: int = 768  # code D2vImageConfig.max_length (2 min of audio)
    norm_eps: float = 1e-6  # yaml model.norm_eps
    drop_path_rate: float = 0.0  # code start/end_drop_path_rate 0
    # masking (yaml model.modalities.image.*)
    mask_prob: float = 0.8  # mask_prob, with inverse_mask: true
    mask_prob_adjust: float = 0.07  # mask_prob_adjust
    mask_length: int = 5  # mask_length
    mask_noise_std: float = 0.01  # mask_noise_std, decoder input in masked slots
    clone_batch: int = 16  # yaml model.clone_batch
    # teacher and targets (yaml model.*)
    average_top_k_layers: int = 12  # average_top_k_layers
    ema_decay: float = 0.9998  # ema_decay
    ema_end_decay: float = 0.99999  # ema_end_decay
    ema_anneal_end_step: int = 100000  # ema_anneal_end_step
    # decoder (yaml model.modalities.image.decoder.*)
    decoder_dim: int = 768  # decoder_dim
    decoder_layers: int = 6  # decoder_layers
    decoder_kernel: int = 3  # decoder_kernel
    decoder_groups: int = 16  # decoder_groups
    # objective
    cls_loss: float = 1.0  # yaml model.cls_loss (lambda of the utterance term)
    loss_scale: Literal["official", "per_clip"] = "official"  # see audiossl.models.eat.targets
    # optional start point: a model.pt of this task (e.g. an imported official checkpoint)
    init: str | None = None

    def __post_init__(self):
        assert self.loss_scale in LOSS_SCALES, (
            f"model.loss_scale must be one of {LOSS_SCALES}, got {self.loss_scale!r}"
        )
        assert 1 <= self.average_top_k_layers <= self.depth, (
            f"model.average_top_k_layers {self.average_top_k_layers} must be in [1, depth={self.depth}]"
        )
        assert self.clone_batch >= 1, f"model.clone_batch must be >= 1, got {self.clone_batch}"

    def encoder_config(self) -> EATEncoderConfig:
        names = {f.name for f in fields(EATEncoderConfig)}
        return EATEncoderConfig(**{k: v for k, v in asdict(self).items() if k in names})


class EATPretrainModel(AbsTrainModel):
    """Student + decoder + EMA teacher; ``forward(batch) -> (loss, stats, num_clips)``."""

    def __init__(self, cfg: EATPretrainConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = EATEncoder(cfg.encoder_config())
        self.decoder = EATDecoder(
            cfg.embed_dim, cfg.decoder_dim, cfg.decoder_layers, cfg.decoder_kernel, cfg.decoder_groups
        )
        self.teacher = copy.deepcopy(self.encoder)  # the official teacher starts as a copy
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))  # last EMA update count
        self.num_layers = cfg.depth

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher always runs in eval mode
        return self

    # --- one step ---------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_targets(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) fbank -> (B, N, D) float32 targets from the teacher on every patch."""
        x = self.teacher.embed_patches(feats)
        _, _, ffns = self.teacher.forward_tokens(x, output_ffn=True)
        return make_targets([f[:, 1:] for f in ffns], self.cfg.average_top_k_layers)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """One pre-training step on ``batch["feats"]`` (B, T, F); returns (loss, stats, B).

        ``batch["padding_mask"]`` is not used: as in the official model (fixed-length inputs,
        zero-padded before normalisation), padded patches are encoded, masked and predicted like the
        others. Masks and decoder noise come from the default generator of the feature device.
        """
        feats = batch["feats"]
        B, T, F_ = feats.shape
        C = self.cfg.clone_batch
        grid = self.encoder.grid(T)
        N = grid[0] * grid[1]

        y = self.teacher_targets(feats)  # (B, N, D)

        mask = inverse_block_mask(
            B * C, grid, self.cfg.mask_prob, self.cfg.mask_prob_adjust, self.cfg.mask_length,
            device=feats.device,
        )  # (B * C, N), True = masked; clone c of clip b is row b * C + c
        K = num_kept_patches(N, self.cfg.mask_prob)
        keep_ids = kept_indices(mask, K)  # (B * C, K)
        mask_ids = masked_indices(mask, N - K)  # (B * C, M)
        clip = torch.arange(B, device=feats.device).repeat_interleave(C)[:, None]  # (B * C, 1)

        x = self.encoder.embed_patches(feats)  # (B, N, D), computed once per clip
        x, _, _ = self.encoder.forward_tokens(x[clip, keep_ids])  # (B * C, 1 + K, D)
        cls_pred, visible = x[:, 0], x[:, 1:]

        pred = self.decoder(decoder_input(visible, keep_ids, N, self.cfg.mask_noise_std), grid)  # (B * C, N, D)
        frame_pred = pred.gather(1, mask_ids[..., None].expand(-1, -1, pred.shape[-1]))  # (B * C, M, D)
        frame_target = y[clip, mask_ids]  # (B * C, M, D)
        cls_target = y.mean(dim=1)[clip[:, 0]]  # (B * C, D)

        loss, frame, utt = eat_loss(
            frame_pred, frame_target, cls_pred, cls_target, self.cfg.cls_loss, self.cfg.loss_scale
        )
        stats = {
            "loss": loss.detach(),
            "loss_frame": frame.detach(),
            "loss_utt": utt.detach(),
            "ema_decay": self._current_decay(),
            "target_var": mean_channel_std(frame_target),
            "pred_var": mean_channel_std(frame_pred.detach()),
        }
        return loss, stats, B

    def _current_decay(self) -> torch.Tensor:
        """ema_decay_at(num_updates) as a device tensor (no host sync in the training step)."""
        cfg = self.cfg
        done = (self.num_updates.float() / max(cfg.ema_anneal_end_step, 1)).clamp(max=1.0)
        return cfg.ema_end_decay - (cfg.ema_end_decay - cfg.ema_decay) * (1.0 - done)

    # --- trainer hooks ----------------------------------------------------------------------
    @torch.no_grad()
    def after_optimizer_step(self, num_updates: int) -> None:
        """One EMA step of the teacher towards the student, with the decay for ``num_updates``."""
        cfg = self.cfg
        decay = ema_decay_at(num_updates, cfg.ema_decay, cfg.ema_end_decay, cfg.ema_anneal_end_step)
        if decay < 1.0:
            ema_update_(self.teacher.parameters(), self.encoder.parameters(), decay)
        self.num_updates.fill_(num_updates)

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def layer_id(self, param_name: str) -> int | None:
        if param_name.startswith("encoder."):
            return self.encoder.layer_id(param_name[len("encoder."):])
        if param_name.startswith("decoder."):
            return self.num_layers + 1
        return None

    def export(self) -> dict[str, Any]:
        return {"fbank_kind": "eat", "embed_dim": self.cfg.embed_dim, "num_layers": self.cfg.depth}
