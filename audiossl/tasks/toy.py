"""Task "toy_classifier": a tiny convolutional classifier over the batch's fbank frames.

It exists to exercise the training engine end to end (tests, the mini recipe's smoke stage) in
seconds on a CPU: a per-frame Linear projection, a few residual Conv1d blocks over time, a masked mean
over the non-padded frames and a Linear head. ``loss: bce`` trains multi-label targets with binary
cross-entropy (AudioSet style), ``loss: ce`` single-label targets with cross-entropy (ESC-50 style).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import AbsTask, register_task


@dataclass
class ToyModelConfig:
    hidden_dim: int = 32  # channels of the conv blocks
    num_layers: int = 2  # residual Conv1d blocks
    kernel_size: int = 3  # over time, odd
    loss: Literal["bce", "ce"] = "bce"  # bce: multi-label targets; ce: single-label (argmax of targets)
    dropout: float = 0.0  # on the pooled vector, before the head
    step_delay_s: float = 0.0  # sleep in each training forward: a slow model for signal-handling tests
    build_delay_s: float = 0.0  # sleep while the model is built: a slow start-up, for the same tests


class ConvBlock(nn.Module):
    """x + GELU(Conv1d(x)) over time, padded frames zeroed before the convolution."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        assert kernel_size % 2 == 1, f"kernel_size must be odd to keep the length, got {kernel_size}"
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D), keep: (B, T, 1) float, 0 on padded frames
        y = self.conv((x * keep).transpose(1, 2)).transpose(1, 2)  # (B, D, T) -> (B, T, D)
        return x + F.gelu(y)


class ToyEncoder(AbsEncoder):
    """(B, T, F) fbank -> (B, T, D) frame tokens; one token per frame, no CLS."""

    def __init__(self, cfg: ToyModelConfig, feat_dim: int):
        super().__init__()
        self.embed_dim = cfg.hidden_dim
        self.num_layers = cfg.num_layers
        self.proj = nn.Linear(feat_dim, cfg.hidden_dim)
        self.layers = nn.ModuleList(ConvBlock(cfg.hidden_dim, cfg.kernel_size) for _ in range(cfg.num_layers))

    def forward(self, feats, padding_mask=None, output_hidden_states=False) -> EncoderOutput:
        B, T, _ = feats.shape
        keep = torch.ones(B, T, 1, device=feats.device, dtype=feats.dtype)
        if padding_mask is not None:
            keep = (~padding_mask).unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
        x = self.proj(feats)  # (B, T, D)
        hidden = []
        for layer in self.layers:
            x = layer(x, keep)
            hidden.append(x)
        return EncoderOutput(tokens=x, padding_mask=padding_mask, hidden_states=hidden if output_hidden_states else None)

    def layer_id(self, param_name: str) -> int:
        if param_name.startswith("proj."):
            return 0
        if param_name.startswith("layers."):
            return int(param_name.split(".")[1]) + 1
        return self.num_layers + 1


class ToyClassifier(AbsTrainModel):
    """Encoder + masked mean pooling + Linear head; forward returns (loss, {loss, acc}, batch size)."""

    def __init__(self, cfg: ToyModelConfig, data_info: DataInfo):
        super().__init__()
        assert data_info.num_classes > 0, "toy_classifier needs labels: the train dump dir must have labels.txt and utt2label"
        self.cfg = cfg
        self.label_names = list(data_info.label_names)
        self.multi_label = cfg.loss == "bce"
        self.encoder = ToyEncoder(cfg, data_info.feat_dim)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.head = nn.Linear(cfg.hidden_dim, data_info.num_classes)
        self.num_layers = cfg.num_layers

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        feats, padding_mask = batch["feats"], batch["padding_mask"]
        out = self.encoder(feats, padding_mask)
        keep = (~padding_mask).unsqueeze(-1).to(out.tokens.dtype)  # (B, T, 1)
        pooled = (out.tokens * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, D)
        return self.head(self.dropout(pooled))  # (B, C)

    def forward(self, batch: dict[str, Any]):
        if self.training and self.cfg.step_delay_s > 0:
            time.sleep(self.cfg.step_delay_s)
        assert "targets" in batch, "toy_classifier needs targets: the dump dir has no utt2label"
        logits = self.logits(batch).float()
        targets = batch["targets"]
        if self.cfg.loss == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, targets)
        else:
            loss = F.cross_entropy(logits, targets.argmax(-1))
        hits = targets.gather(1, logits.argmax(-1, keepdim=True)).squeeze(1) > 0  # top-1 is a true label
        stats = {"loss": loss.detach(), "acc": hits.float().mean()}
        return loss, stats, logits.shape[0]

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        logits = self.logits(batch).float()
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def layer_id(self, param_name: str) -> int | None:
        if param_name.startswith("encoder."):
            return self.encoder.layer_id(param_name[len("encoder."):])
        return self.num_layers + 1

    def export(self) -> dict[str, Any]:
        return {"label_names": self.label_names, "multi_label": self.multi_label}


@register_task("toy_classifier")
class ToyClassifierTask(AbsTask):
    ModelConfig = ToyModelConfig

    @classmethod
    def build_model(cls, model_cfg: ToyModelConfig, data_info: DataInfo) -> ToyClassifier:
        # In slices: a stop signal delivered to another of the process's threads does not wake a main
        # thread in one long sleep (real building runs Python code, which checks for signals often).
        deadline = time.monotonic() + model_cfg.build_delay_s
        while time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))
        return ToyClassifier(model_cfg, data_info)

    @classmethod
    def build_encoder(cls, model_cfg: ToyModelConfig, feat_dim: int = 128) -> ToyEncoder:
        return ToyEncoder(model_cfg, feat_dim)
