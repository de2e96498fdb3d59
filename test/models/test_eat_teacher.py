"""EAT EMA teacher: no gradients, eval mode, EMA formula and schedule, targets from FFN outputs."""
from __future__ import annotations

import pytest
import torch

from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel
from audiossl.models.eat.targets import ema_decay_at, make_targets

torch.set_num_threads(1)

TINY = dict(embed_dim=32, depth=3, num_heads=4, decoder_dim=32, decoder_layers=2, clone_batch=2,
            average_top_k_layers=2, max_time_patches=16)


def _model(seed: int = 0, **kw) -> EATPretrainModel:
    torch.manual_seed(seed)
    return EATPretrainModel(EATPretrainConfig(**{**TINY, **kw}))


def test_decay_schedule():
    # 0.9998 -> 0.99999 linearly over 100k updates, then constant (design notes section 4).
    assert ema_decay_at(0, 0.9998, 0.99999, 100_000) == pytest.approx(0.9998)
    assert ema_decay_at(50_000, 0.9998, 0.99999, 100_000) == pytest.approx(0.999895)
    assert ema_decay_at(25_000, 0.9998, 0.99999, 100_000) == pytest.approx(0.9998475)
    assert ema_decay_at(100_000, 0.9998, 0.99999, 100_000) == pytest.approx(0.99999)
    assert ema_decay_at(400_000, 0.9998, 0.99999, 100_000) == pytest.approx(0.99999)


def test_teacher_gets_no_gradients_and_stays_in_eval():
    model = _model()
    model.train()
    assert model.training and model.encoder.training and not model.teacher.training
    assert all(not p.requires_grad for p in model.teacher.parameters())
    loss, _, _ = model({"feats": torch.randn(2, 32, 128)})
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("teacher.") for n in trainable)
    keys = model.state_dict().keys()
    assert "teacher.cls_token" in keys and "teacher.blocks.2.mlp.fc2.weight" in keys
    assert not any(k.startswith("teacher.") and "decoder" in k for k in keys)
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())


def test_teacher_starts_as_a_copy_and_follows_the_ema_formula():
    model = _model(ema_decay=0.9, ema_end_decay=0.5, ema_anneal_end_step=10)
    for (name, t), s in zip(model.teacher.named_parameters(), model.encoder.parameters()):
        assert torch.equal(t, s), name
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))
    before_t = [p.clone() for p in model.teacher.parameters()]
    student = [p.clone() for p in model.encoder.parameters()]
    model.after_optimizer_step(4)  # decay 0.5 - (0.5 - 0.9) * (1 - 4 / 10) = 0.74
    d = 0.74
    for t0, s, t1 in zip(before_t, student, model.teacher.parameters()):
        torch.testing.assert_close(t1, d * t0 + (1 - d) * s)
    assert int(model.num_updates) == 4
    _, stats, _ = model({"feats": torch.randn(1, 32, 128)})
    assert stats["ema_decay"].item() == pytest.approx(0.74)
    model.after_optimizer_step(12)  # past the anneal: end decay
    assert model({"feats": torch.randn(1, 32, 128)})[1]["ema_decay"].item() == pytest.approx(0.5)


def test_targets_from_the_ffn_outputs_of_the_top_blocks_on_the_full_input():
    model = _model()
    captured, tokens_seen = {}, {}
    for i, block in enumerate(model.teacher.blocks):
        block.mlp.register_forward_hook(lambda m, inp, out, i=i: captured.__setitem__(i, out))
        block.register_forward_hook(lambda m, inp, out, i=i: tokens_seen.__setitem__(i, inp[0].shape))
    feats = torch.randn(2, 48, 128)  # 3 x 8 = 24 patches
    y = model.teacher_targets(feats)
    assert tokens_seen[0] == (2, 25, 32)  # all patches + CLS, once per clip (not per clone)
    expected = make_targets([captured[1][:, 1:], captured[2][:, 1:]], top_k=2)  # top 2 of 3, CLS dropped
    torch.testing.assert_close(y, expected)
    assert y.shape == (2, 24, 32) and y.dtype == torch.float32


def test_targets_normalisation():
    torch.manual_seed(0)
    layers = [torch.randn(3, 20, 16) * (i + 1) + 5 * i for i in range(4)]  # (B, N, D), other scales and means
    raw = make_targets(layers[-1:], top_k=1, final_layer_norm=False)
    # per clip and channel, over the tokens: zero mean, unit (biased) variance
    torch.testing.assert_close(raw.mean(dim=1), torch.zeros(3, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(raw.var(dim=1, unbiased=False), torch.ones(3, 16), atol=1e-3, rtol=0)
    avg = make_targets(layers, top_k=3, final_layer_norm=False)
    each = [make_targets([layer], top_k=1, final_layer_norm=False) for layer in layers[1:]]
    torch.testing.assert_close(avg, sum(each) / 3)
    y = make_targets(layers, top_k=3)
    torch.testing.assert_close(y, torch.nn.functional.layer_norm(avg, (16,)))
    torch.testing.assert_close(y.mean(dim=-1), torch.zeros(3, 20), atol=1e-5, rtol=0)
