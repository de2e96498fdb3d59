"""EAT pre-training model and task: one step end to end, training lowers the loss, task contract,
official defaults, recipe configs."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from audiossl.models.eat.encoder import EATEncoder
from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import get_task
from audiossl.models.checkpoint import save_model
from audiossl.train.config import load_config

torch.set_num_threads(1)

TINY = dict(embed_dim=32, depth=2, num_heads=4, decoder_dim=32, decoder_layers=2, clone_batch=3,
            average_top_k_layers=2, max_time_patches=64)


def _model(seed: int = 0, **kw) -> EATPretrainModel:
    torch.manual_seed(seed)
    return EATPretrainModel(EATPretrainConfig(**{**TINY, **kw}))


def test_one_step_shapes_stats_and_gradients():
    model = _model()
    seen = {}
    model.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.__setitem__("student", inp[0].shape))
    model.decoder.register_forward_hook(lambda m, inp, out: seen.__setitem__("decoder", out.shape))
    feats = torch.randn(2, 1024, 128)  # the paper's 64 x 8 grid
    loss, stats, weight = model({"feats": feats, "padding_mask": torch.zeros(2, 1024, dtype=torch.bool)})
    assert seen["student"] == (6, 103, 32)  # 2 clips x 3 clones, 102 kept patches + CLS
    assert seen["decoder"] == (6, 512, 32)
    assert weight == 2
    assert set(stats) == {"loss", "loss_frame", "loss_utt", "ema_decay", "target_var", "pred_var"}
    assert all(s.dim() == 0 and not s.requires_grad for s in stats.values())
    torch.testing.assert_close(stats["loss"], stats["loss_frame"] + model.cfg.cls_loss * stats["loss_utt"])
    assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert stats["target_var"].item() == pytest.approx(1.0, abs=0.1)  # layer-normed targets


def test_loss_scales_differ_only_in_the_utterance_reduction():
    feats = torch.randn(2, 64, 128)
    out = {}
    for scale in ("official", "per_clip"):
        model = _model(loss_scale=scale)
        torch.manual_seed(5)  # same masks and decoder noise
        out[scale] = model({"feats": feats})[1]
    torch.testing.assert_close(out["official"]["loss_frame"], out["per_clip"]["loss_frame"])
    torch.testing.assert_close(out["official"]["loss_utt"], 6 * out["per_clip"]["loss_utt"])  # 2 clips x 3 clones


def test_a_few_optimizer_steps_lower_the_loss():
    model = _model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-3, betas=(0.9, 0.95), weight_decay=0.05)
    feats = torch.randn(4, 64, 128)

    def evaluate() -> float:
        torch.manual_seed(123)  # the same masks and noise each time
        with torch.no_grad():
            return model({"feats": feats})[0].item()

    before = evaluate()
    for step in range(1, 16):
        loss, _, _ = model({"feats": feats})
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_optimizer_step(step)
    after = evaluate()
    assert after < 0.8 * before, (before, after)


def test_task_contract():
    task = get_task("eat_pretrain")
    cfg = task.ModelConfig(**TINY)
    model = task.build_model(cfg, DataInfo())
    assert isinstance(model, EATPretrainModel)
    encoder = task.build_encoder(cfg)
    assert isinstance(encoder, EATEncoder)
    encoder_keys = {f"encoder.{k}" for k in encoder.state_dict()}
    assert encoder_keys == {k for k in model.state_dict() if k.startswith("encoder.")}
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")})
    assert model.layer_id("encoder.blocks.1.attn.qkv.weight") == 2
    assert model.layer_id("decoder.proj.weight") == 3 and model.layer_id("teacher.cls_token") is None
    assert model.no_weight_decay() == set()  # the official recipe decays every parameter
    with pytest.raises(AssertionError, match="bins"):
        task.build_model(cfg, DataInfo(feat_dim=80))


def test_init_from_a_model_pt(tmp_path):
    source = _model(seed=1)
    source.after_optimizer_step(7)
    path = tmp_path / "model.pt"
    save_model(path, "eat_pretrain", {"model": dataclasses.asdict(source.cfg)}, source.state_dict())
    cfg = EATPretrainConfig(**{**TINY, "init": str(path)})
    torch.manual_seed(2)
    model = get_task("eat_pretrain").build_model(cfg, DataInfo())
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    save_model(tmp_path / "other.pt", "toy_classifier", {}, {})
    with pytest.raises(ValueError, match="toy_classifier"):
        get_task("eat_pretrain").build_model(EATPretrainConfig(**{**TINY, "init": str(tmp_path / "other.pt")}), DataInfo())


def test_defaults_are_the_official_values():
    cfg = EATPretrainConfig()  # design notes section 4 / config/pretraining_AS2M.yaml
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.patch_size) == (768, 12, 12, 4.0, 16)
    assert (cfg.mask_prob, cfg.mask_prob_adjust, cfg.mask_length, cfg.clone_batch) == (0.8, 0.07, 5, 16)
    assert (cfg.ema_decay, cfg.ema_end_decay, cfg.ema_anneal_end_step) == (0.9998, 0.99999, 100_000)
    assert (cfg.decoder_dim, cfg.decoder_layers, cfg.decoder_kernel, cfg.decoder_groups) == (768, 6, 3, 16)
    assert (cfg.average_top_k_layers, cfg.cls_loss, cfg.norm_eps, cfg.max_time_patches) == (12, 1.0, 1e-6, 768)
    assert cfg.loss_scale == "official"
    with pytest.raises(AssertionError, match="loss_scale"):
        EATPretrainConfig(loss_scale="sum")


def test_recipe_configs(repo_root):
    paper = load_config(repo_root / "egs/audioset/conf/eat_pretrain.yaml")
    assert paper.task == "eat_pretrain" and paper.model == EATPretrainConfig()
    # 48 clips per update over all processes, 12 per forward pass: the official 4 GPUs x 12
    assert (paper.data.batch_size, paper.data.max_batch_per_device, paper.data.target_frames) == (48, 12, 1024)
    o = paper.optim
    assert (o.lr, o.betas, o.weight_decay, o.decay_norm_and_bias) == (5e-4, (0.9, 0.95), 0.05, True)
    assert (o.warmup_updates, o.max_updates, o.clip_norm) == (53_333, 400_000, 4.0)

    mini = load_config(repo_root / "egs/mini/conf/eat_pretrain.yaml")
    assert mini.data.target_frames == 128
    model = get_task(mini.task).build_model(mini.model, DataInfo())
    loss, _, _ = model({"feats": torch.randn(2, mini.data.target_frames, 128)})
    assert math.isfinite(loss.item())
