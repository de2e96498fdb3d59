"""The HEAR 2021 API over any model.pt with an encoder (BEATs or EAT, ours or imported), so that the
HEAR benchmark (hear-eval-kit, hear-validator) can evaluate our models:

    hear-validator audiossl.hear -m exp/eat_pretrain/model.pt

* ``load_model(model_file_path)``: a ``torch.nn.Module`` with ``sample_rate`` (16000),
  ``scene_embedding_size`` and ``timestamp_embedding_size`` (the encoder's width).
* ``get_scene_embeddings(audio, model)``: audio (n_sounds, n_samples) float32 in [-1, 1] at 16 kHz
  -> (n_sounds, D) float32: the mean of the last layer's patch tokens (``audiossl.api``).
* ``get_timestamp_embeddings(audio, model)`` -> ((n_sounds, n_timestamps, D) float32,
  (n_sounds, n_timestamps) centres in milliseconds). The encoders see 16-frame patches, one time
  step per 160 ms; HEAR asks for at most 50 ms between timestamps, so the clip is also encoded from
  ``hop_ms`` (default 40), 2 ``hop_ms``, ... later, and the steps of these shifted copies are
  interleaved: timestamps every ``hop_ms``, each the centre of the patch row it describes
  (the first at 87.5 ms), evenly spaced, up to the end of the audio and never past it.
"""
from __future__ import annotations

import itertools
import os

import torch
from torch import nn

from audiossl.api import FRAME_SHIFT_S, PATCH_FRAMES, AudioModel, load_model as load_audio_model
from audiossl.data.fbank import SAMPLE_RATE

STEP_MS = round(PATCH_FRAMES * FRAME_SHIFT_S * 1000)  # 160 ms per patch row


class HearModel(nn.Module):
    """What :func:`load_model` returns: the encoder as a submodule (``.to(device)`` moves it) and the
    attributes HEAR reads."""

    sample_rate = SAMPLE_RATE

    def __init__(self, audio_model: AudioModel, hop_ms: int):
        super().__init__()
        if hop_ms <= 0 or STEP_MS % hop_ms or hop_ms % round(FRAME_SHIFT_S * 1000):
            raise ValueError(f"hop_ms must divide {STEP_MS} ms into whole 10-ms frames (10, 20, 40, 80 or 160), got {hop_ms}")
        self.audio_model = audio_model
        self.encoder = audio_model._get_encoder()
        self.hop_ms = hop_ms
        self.scene_embedding_size = int(self.encoder.embed_dim)
        self.timestamp_embedding_size = int(self.encoder.embed_dim)

    def _embed(self, audio: torch.Tensor, cover_end: bool = False):
        if audio.dim() != 2:
            raise ValueError(f"HEAR audio is (n_sounds, n_samples), got shape {tuple(audio.shape)}")
        self.audio_model.device = next(self.encoder.parameters()).device
        return self.audio_model.embed(list(audio), sample_rate=self.sample_rate, cover_end=cover_end)


def load_model(model_file_path: str | os.PathLike, hop_ms: int = 40) -> HearModel:
    """A model.pt for the HEAR API; ``hop_ms``: the interval between timestamp embeddings."""
    return HearModel(load_audio_model(model_file_path), hop_ms).eval()


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) -> (n_sounds, scene_embedding_size) float32, on the audio's device."""
    return torch.stack([e.clip for e in model._embed(audio)]).float().to(audio.device)


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> (embeddings (n_sounds, n_timestamps, D), timestamps (n_sounds,
    n_timestamps) in ms), both float32 on the audio's device.

    Shifted copy j (the audio from j x hop_ms on) gives patch rows centred at j x hop_ms + 87.5 +
    160 k ms; its last row is completed with zeros of raw log-mel (``cover_end``), so the rows reach
    the end of the audio. Interleaved by time they are evenly spaced; the first centre past the end
    of the audio ends them (the later copies have at most one row fewer, which keeps the rest whole).
    """
    shifts = STEP_MS // model.hop_ms
    hop_samples = model.hop_ms * SAMPLE_RATE // 1000
    length_ms = audio.shape[1] * 1000 / SAMPLE_RATE
    rows = []  # per shift: (n_sounds, steps, D) frames and (steps,) centres in ms
    for j in range(shifts):
        out = model._embed(audio[:, j * hop_samples :], cover_end=True)
        rows.append((torch.stack([e.frames for e in out]), out[0].times * 1000 + j * model.hop_ms))
    interleaved = [(float(centres[k]), frames[:, k]) for k in range(rows[0][1].shape[0])
                   for frames, centres in rows if k < centres.shape[0]]
    kept = list(itertools.takewhile(lambda row: row[0] <= length_ms, interleaved))
    n = audio.shape[0]
    emb = torch.stack([e for _, e in kept], dim=1)  # (n, n_timestamps, D)
    ts = torch.tensor([t for t, _ in kept], dtype=torch.float32).expand(n, -1).contiguous()
    return emb.float().to(audio.device), ts.to(audio.device)
