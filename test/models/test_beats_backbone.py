"""BEATs backbone: relative-position buckets, padding masks, attention paths, gradient decay, init."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from audiossl.models.beats.backbone import (
    BEATsBackbone,
    WeightNormConv1d,
    chunk_padding_mask,
    preprocess,
    relative_position_bucket,
)
from audiossl.models.beats.config import BEATsConfig

torch.set_num_threads(1)

TINY = dict(
    encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4, embed_dim=32,
    conv_pos=16, conv_pos_groups=4, num_buckets=32, max_distance=64, encoder_layerdrop=0.0,
    dropout=0.0, attention_dropout=0.0, layer_wise_gradient_decay_ratio=1.0,
)


def tiny(**kw) -> BEATsConfig:
    return BEATsConfig(**{**TINY, **kw})


def randomize_(model: nn.Module, seed: int = 0) -> None:
    """Move every parameter off its init (gates, norms, biases) so the checks exercise them all."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


# --- relative positions -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "relative, bucket",
    [
        (0, 0), (-1, 1), (1, 161), (-5, 5), (5, 165), (-79, 79), (79, 239),
        # from 80 on: 80 + floor(log(d / 80) / log(800 / 80) * 80) = 80 + floor(80 * log10(d / 80))
        (-80, 80), (80, 240), (-100, 87), (100, 247), (-200, 111), (-400, 135), (-799, 159),
        # at and beyond max_distance: the last bucket of each half
        (-800, 159), (800, 319), (-5000, 159), (5000, 319),
    ],
)
def test_relative_position_bucket_released_config(relative, bucket):
    got = relative_position_bucket(torch.tensor([relative]), num_buckets=320, max_distance=800)
    assert got.item() == bucket


def test_relative_bias_of_a_subset_uses_original_positions():
    model = BEATsBackbone(tiny()).eval()
    N = 40
    full = model.encoder.relative_bias(N, None, "cpu")  # (1, H, N, N)
    keep = torch.tensor([[0, 3, 4, 17, 39], [1, 2, 20, 21, 22]])
    sub = model.encoder.relative_bias(5, keep, "cpu")  # (2, H, 5, 5)
    for b in range(2):
        expect = full[0][:, keep[b]][:, :, keep[b]]
        assert torch.equal(sub[b], expect)
    # positions 0..L-1 given explicitly == no positions
    x = torch.randn(2, 12, 64)
    a, _ = model.encode_tokens(x)
    b_, _ = model.encode_tokens(x, positions=torch.arange(12).expand(2, 12))
    torch.testing.assert_close(a, b_, rtol=0, atol=1e-6)


# --- padding --------------------------------------------------------------------------------
def test_chunk_padding_mask_frames_to_tokens_as_documented():
    # 64 frames -> 4 time steps x 8 = 32 tokens; each token looks at frames 2n and 2n+1
    frames = torch.zeros(1, 64, dtype=torch.bool)
    frames[0, 40:] = True
    tok = chunk_padding_mask(frames, 32)[0]
    assert tok[:20].logical_not().all() and tok[20:].all()
    # the boundary time step 2 (frames 32..47, tokens 16..23) is partly padded: its low-frequency
    # tokens 16..19 stay, the high-frequency ones 20..23 are padded
    assert tok[16:20].tolist() == [False] * 4 and tok[20:24].tolist() == [True] * 4
    # T not a multiple of the token count: trailing T mod N frames are dropped first (70 -> 64)
    frames = torch.zeros(1, 70, dtype=torch.bool)
    frames[0, 63:] = True  # frame 62 real, 63 padded: token 31 (frames 62, 63) is not all padding
    assert not chunk_padding_mask(frames, 32)[0].any()


def test_chunk_padding_mask_samples_to_frames():
    wav = torch.randn(1, 16000) * 0.1
    mask = torch.zeros(1, 16000, dtype=torch.bool)
    mask[0, 8000:] = True
    feats, frame_mask = preprocess(wav, mask)
    assert feats.shape == (1, 98, 128)
    # 16000 % 98 = 26 samples dropped, chunks of 163 samples: frame j padded iff 163 j >= 8000
    first = int(frame_mask[0].float().argmax())
    assert first == 50 and frame_mask[0, 50:].all() and not frame_mask[0, :50].any()


def test_padded_clip_gives_the_same_tokens_as_the_clip_alone():
    model = BEATsBackbone(tiny()).eval()
    randomize_(model)
    clip = torch.randn(1, 48, 128)  # 3 full time steps -> 24 tokens
    alone = model(clip).tokens
    batch = torch.cat([torch.cat([clip, torch.randn(1, 32, 128) * 5], 1), torch.randn(1, 80, 128)])
    pad = torch.zeros(2, 80, dtype=torch.bool)
    pad[0, 48:] = True
    out = model(batch, pad)
    assert out.padding_mask[0, :24].logical_not().all() and out.padding_mask[0, 24:].all()
    assert not out.padding_mask[1].any()
    torch.testing.assert_close(out.tokens[0, :24], alone[0], rtol=1e-4, atol=1e-5)


def test_padded_values_do_not_leak():
    model = BEATsBackbone(tiny()).eval()
    randomize_(model)
    x = torch.randn(2, 64, 128)
    pad = torch.zeros(2, 64, dtype=torch.bool)
    pad[0, 32:] = True
    y = x.clone()
    y[0, 32:] = torch.randn(32, 128) * 10
    a, b = model(x, pad), model(y, pad)
    valid = ~a.padding_mask
    torch.testing.assert_close(a.tokens[valid], b.tokens[valid], rtol=0, atol=1e-5)


# --- attention paths ---------------------------------------------------------------------------
def _pair(**kw):
    fast = BEATsBackbone(tiny(attn_impl="sdpa", **kw))
    randomize_(fast)
    ref = BEATsBackbone(tiny(attn_impl="reference", **kw))
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def test_sdpa_matches_reference_fp32_with_gradients():
    fast, ref = _pair()
    x = torch.randn(3, 64, 128)
    pad = torch.zeros(3, 64, dtype=torch.bool)
    pad[1, 40:] = True
    pad[2, 20:] = True
    out_f = fast(x, pad).tokens
    out_r = ref(x, pad).tokens
    valid = ~chunk_padding_mask(pad, 32)
    torch.testing.assert_close(out_f[valid], out_r[valid], rtol=0, atol=2e-5)
    (out_f[valid].square().sum()).backward()
    (out_r[valid].square().sum()).backward()
    for (n, pf), (_, pr) in zip(fast.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(pf.grad, pr.grad, rtol=1e-3, atol=1e-4, msg=f"gradient of {n}")


def test_sdpa_bf16_close_to_fp32_reference():
    fast, ref = _pair()
    fast.eval(), ref.eval()
    x = torch.randn(2, 64, 128)
    pad = torch.zeros(2, 64, dtype=torch.bool)
    pad[1, 40:] = True
    with torch.no_grad():
        want = ref(x, pad).tokens
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fast(x, pad).tokens
    assert torch.isfinite(got).all(), "bf16 path produced non-finite values (padding masks)"
    valid = ~chunk_padding_mask(pad, 32)
    err = (got.float() - want)[valid].abs()
    # outputs are LayerNorm'ed (unit scale); bf16 keeps ~3 significant digits through 2 layers
    assert err.max() < 0.15 and err.mean() < 0.02, (err.max().item(), err.mean().item())


# --- layer-wise gradient decay --------------------------------------------------------------
def test_layer_wise_gradient_decay_scales_gradients_by_depth():
    r, L = 0.5, 3
    plain = BEATsBackbone(tiny(encoder_layers=L, layer_wise_gradient_decay_ratio=1.0))
    randomize_(plain)
    decayed = BEATsBackbone(tiny(encoder_layers=L, layer_wise_gradient_decay_ratio=r))
    decayed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 32, 128)
    for m in (plain, decayed):
        m.train()
        m(x).tokens.square().sum().backward()

    def grad(m, name):
        return dict(m.named_parameters())[name].grad

    for i in range(L):
        name = f"encoder.layers.{i}.fc1.weight"
        torch.testing.assert_close(grad(decayed, name), grad(plain, name) * r ** (L - 1 - i), rtol=1e-4, atol=1e-7)
    for name in ("patch_embedding.weight", "post_extract_proj.weight", "encoder.pos_conv.0.weight_v"):
        torch.testing.assert_close(grad(decayed, name), grad(plain, name) * r**L, rtol=1e-4, atol=1e-9)
    # eval mode: no scaling anywhere (it only exists in training)
    for m in (plain, decayed):
        m.zero_grad()
        m.eval()
        m(x).tokens.square().sum().backward()
    torch.testing.assert_close(grad(decayed, "patch_embedding.weight"), grad(plain, "patch_embedding.weight"))


# --- weight norm, init, bookkeeping ---------------------------------------------------------------
def test_weight_norm_conv_equals_torch_parametrization():
    torch.manual_seed(0)
    conv = nn.Conv1d(16, 16, kernel_size=8, padding=4, groups=4)
    conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(torch.rand(1, 1, 8) + 0.5)
    ours = WeightNormConv1d(16, 8, 4)
    ours.load_state_dict({
        "weight_g": conv.parametrizations.weight.original0,
        "weight_v": conv.parametrizations.weight.original1,
        "bias": conv.bias,
    })
    x = torch.randn(2, 16, 30)
    torch.testing.assert_close(ours(x), conv(x), rtol=1e-5, atol=1e-6)
    # g is one norm per kernel tap: the norm over dims 0 and 1 of the effective weight equals g
    torch.testing.assert_close(torch.linalg.vector_norm(ours.weight, dim=(0, 1), keepdim=True), ours.weight_g)


def test_deepnorm_init_gains():
    cfg = tiny(encoder_layers=4, encoder_embed_dim=256, encoder_ffn_embed_dim=256, encoder_attention_heads=4, conv_pos_groups=4)
    torch.manual_seed(0)
    model = BEATsBackbone(cfg)
    beta = (8 * 4) ** -0.25
    xavier = math.sqrt(2.0 / (256 + 256))
    layer = model.encoder.layers[1]
    assert layer.self_attn.q_proj.weight.std().item() == pytest.approx(xavier, rel=0.05)
    assert layer.self_attn.v_proj.weight.std().item() == pytest.approx(beta * xavier, rel=0.05)
    assert layer.fc2.weight.std().item() == pytest.approx(beta * xavier, rel=0.05)
    assert layer.self_attn.q_proj.bias.abs().max() == 0
    assert layer.alpha == pytest.approx((2 * 4) ** 0.25)
    # the positional conv starts with weight == v (g = ||v||), and one shared relative-bias table
    conv = model.encoder.pos_conv[0]
    torch.testing.assert_close(conv.weight, conv.weight_v)
    tables = {id(l.self_attn.relative_attention_bias) for l in model.encoder.layers}
    assert len(tables) == 1
    assert torch.equal(layer.self_attn.grep_a, torch.ones(1, 4, 1, 1))


def test_state_dict_has_shared_bias_under_every_layer_and_layer_ids():
    model = BEATsBackbone(tiny(encoder_layers=3))
    keys = model.state_dict().keys()
    for i in range(3):
        assert f"encoder.layers.{i}.self_attn.relative_attention_bias.weight" in keys
    names = dict(model.named_parameters())
    assert "encoder.layers.1.self_attn.relative_attention_bias.weight" not in names  # deduplicated for the optimiser
    assert model.layer_id("patch_embedding.weight") == 0
    assert model.layer_id("encoder.pos_conv.0.weight_v") == 0
    assert model.layer_id("encoder.layers.2.fc1.weight") == 3
    assert model.no_weight_decay() == {f"encoder.layers.{i}.self_attn.grep_a" for i in range(3)}


def test_hidden_states_and_token_count():
    model = BEATsBackbone(tiny(encoder_layers=3)).eval()
    out = model(torch.randn(2, 70, 128), output_hidden_states=True)
    assert out.tokens.shape == (2, 4 * 8, 64) and out.padding_mask is None and out.cls is None
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(out.hidden_states[-1], out.tokens)


def test_config_strict_and_official():
    with pytest.raises(ValueError, match="encoder_layrs"):
        BEATsConfig.from_dict({"encoder_layrs": 2})
    # official cfg: unknown keys ignored, missing keys take the official class defaults
    cfg = BEATsConfig.from_official({"input_patch_size": 16, "quant_n": 1024})
    assert cfg.max_distance == 1280 and cfg.deep_norm is False and cfg.layer_wise_gradient_decay_ratio == 1.0
    assert "attn_impl" not in cfg.to_official() and cfg.to_official()["input_patch_size"] == 16
