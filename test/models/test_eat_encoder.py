"""EAT encoder: positions, patch order, post-LN blocks, CLS handling, lengths, init, layer ids."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiossl.models.abs_encoder import AbsEncoder
from audiossl.models.eat.encoder import EATEncoder, EATEncoderConfig, sincos_positions_2d

torch.set_num_threads(1)

TINY = dict(embed_dim=32, depth=3, num_heads=4, max_time_patches=16)


def _encoder(seed: int = 0, **kw) -> EATEncoder:
    torch.manual_seed(seed)
    return EATEncoder(EATEncoderConfig(**{**TINY, **kw})).eval()


def numpy_official_positions(num_time: int, num_freq: int, dim: int) -> np.ndarray:
    """The official table as MAE-style numpy code builds it: a (w, h) meshgrid, the first half of
    the channels from grid[0] (the frequency coordinate), float32 throughout."""
    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float32)
        omega /= d / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(num_freq, dtype=np.float32), np.arange(num_time, dtype=np.float32))
    grid = np.stack(grid, axis=0).reshape(2, 1, num_time, num_freq)
    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


def test_positions_channel_order_by_hand():
    D, F_ = 768, 8
    table = sincos_positions_2d(768, F_, D)
    assert table.shape == (768 * 8, 768) and table.dtype == torch.float32
    Q = D // 4
    for t, f in [(0, 0), (0, 5), (3, 7), (63, 2), (767, 7)]:
        row = table[t * F_ + f]
        for i in (0, 1, 17, 100, Q - 1):
            w = 1.0 / 10000 ** (i / Q)
            assert row[i].item() == pytest.approx(math.sin(f * w), abs=1e-6)  # frequency half
            assert row[Q + i].item() == pytest.approx(math.cos(f * w), abs=1e-6)
            assert row[2 * Q + i].item() == pytest.approx(math.sin(t * w), abs=1e-6)  # time half
            assert row[3 * Q + i].item() == pytest.approx(math.cos(t * w), abs=1e-6)


@pytest.mark.parametrize("num_time", [64, 768])
def test_positions_match_the_official_numpy_table(num_time):
    ours = sincos_positions_2d(num_time, 8, 768).numpy()
    # float32 angles up to 767 rad carry ~6e-5 of rounding in the official table
    np.testing.assert_allclose(ours, numpy_official_positions(num_time, 8, 768), atol=1e-4)
    # The 512-row table of older checkpoints is the start of the 6144-row one.
    assert torch.equal(sincos_positions_2d(64, 8, 768), sincos_positions_2d(768, 8, 768)[:512])


def test_tokens_are_time_major_with_positions_and_bias():
    enc = _encoder()
    feats = torch.randn(2, 64, 128)
    x = enc.embed_patches(feats)  # (2, 4 * 8, 32)
    assert x.shape == (2, 32, 32)
    w, b = enc.patch_embed.proj.weight, enc.patch_embed.proj.bias  # (D, 1, 16, 16), (D,)
    for t, f in [(0, 0), (1, 3), (3, 7)]:
        patch = feats[:, 16 * t: 16 * (t + 1), 16 * f: 16 * (f + 1)]  # (2, 16, 16): frames x bins
        expected = torch.einsum("bij,dij->bd", patch, w[:, 0]) + b + enc.pos_embed[t * 8 + f]
        torch.testing.assert_close(x[:, t * 8 + f], expected, atol=1e-5, rtol=1e-5)


def _reference_block(block, x: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-LN block by hand: x = norm1(x + attn(x)); ffn = mlp(x); x = norm2(x + ffn)."""
    B, L, D = x.shape
    hd = D // heads
    qkv = x @ block.attn.qkv.weight.T + block.attn.qkv.bias  # (B, L, 3D): q, k, v, each head-major
    q, k, v = (qkv[..., i * D: (i + 1) * D].reshape(B, L, heads, hd).transpose(1, 2) for i in range(3))
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    a = (att @ v).transpose(1, 2).reshape(B, L, D) @ block.attn.proj.weight.T + block.attn.proj.bias
    eps = block.norm1.eps
    h = F.layer_norm(x + a, (D,), block.norm1.weight, block.norm1.bias, eps)
    ffn = F.gelu(h @ block.mlp.fc1.weight.T + block.mlp.fc1.bias) @ block.mlp.fc2.weight.T + block.mlp.fc2.bias
    return F.layer_norm(h + ffn, (D,), block.norm2.weight, block.norm2.bias, eps), ffn


def test_post_ln_block_and_ffn_output():
    enc = _encoder()
    x = torch.randn(2, 9, 32)
    out, ffn = enc.blocks[1](x)
    ref_out, ref_ffn = _reference_block(enc.blocks[1], x, heads=4)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ffn, ref_ffn, atol=1e-5, rtol=1e-5)
    assert enc.blocks[1].norm1.eps == 1e-6


def test_forward_cls_first_no_position_one_input_norm_no_final_norm():
    enc = _encoder()
    feats = torch.randn(2, 64, 128)
    out = enc(feats, output_hidden_states=True)
    assert isinstance(enc, AbsEncoder)
    assert out.tokens.shape == (2, 32, 32) and out.cls.shape == (2, 32)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 32, 32)
    # By hand: CLS (no position) + patches, one LayerNorm, then the blocks; nothing after them.
    x = torch.cat([enc.cls_token.expand(2, -1, -1), enc.embed_patches(feats)], dim=1)
    x = F.layer_norm(x, (32,), enc.norm.weight, enc.norm.bias, 1e-6)
    for block in enc.blocks:
        x, _ = _reference_block(block, x, heads=4)
    torch.testing.assert_close(out.cls, x[:, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.tokens, x[:, 1:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.hidden_states[-1], out.tokens)


def test_lengths_multiple_of_16_and_leftover_frames_dropped():
    enc = _encoder()
    for T in (16, 48, 256):
        assert enc(torch.randn(1, T, 128)).tokens.shape == (1, T // 16 * 8, 32)
    feats = torch.randn(1, 70, 128)
    torch.testing.assert_close(enc(feats).tokens, enc(feats[:, :64]).tokens)
    with pytest.raises(AssertionError, match="max_time_patches"):
        enc(torch.randn(1, 17 * 16, 128))


def test_visible_tokens_only():
    """The student path: gathering kept tokens after positions = encoding a shorter sequence whose
    tokens keep their own positions; with every index kept it is the full forward."""
    enc = _encoder()
    feats = torch.randn(2, 64, 128)
    x = enc.embed_patches(feats)
    keep = torch.tensor([[0, 5, 9, 31], [1, 2, 3, 30]])
    out, _, _ = enc.forward_tokens(x[torch.arange(2)[:, None], keep])
    assert out.shape == (2, 5, 32)
    full, _, _ = enc.forward_tokens(x[:, torch.arange(32)])
    torch.testing.assert_close(full[:, 1:], enc(feats).tokens)


def test_token_padding_mask():
    enc = _encoder()
    pad = torch.zeros(2, 64, dtype=torch.bool)
    pad[0, 44:] = True  # time patch 3 (frames 48..63) is all padding, patch 2 only partly
    out = enc(torch.randn(2, 64, 128), padding_mask=pad)
    expected = torch.zeros(2, 32, dtype=torch.bool)
    expected[0, 24:] = True
    assert torch.equal(out.padding_mask, expected)
    assert enc(torch.randn(2, 64, 128), padding_mask=torch.zeros(2, 64, dtype=torch.bool)).padding_mask is None


def test_init_follows_the_official_code():
    enc = _encoder(embed_dim=256, num_heads=4)
    assert enc.cls_token.std().item() == pytest.approx(1.0, abs=0.15)  # N(0, 1)
    fc1 = enc.blocks[0].mlp.fc1
    assert fc1.weight.std().item() == pytest.approx(0.02, rel=0.05) and torch.all(fc1.bias == 0)
    w = enc.patch_embed.proj.weight.view(256, -1)  # Xavier-uniform over (D, 16 * 16)
    bound = math.sqrt(6 / (256 + 256))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert torch.all(enc.norm.weight == 1) and torch.all(enc.blocks[2].norm2.bias == 0)


def test_layer_ids():
    enc = _encoder()
    ids = {n: enc.layer_id(n) for n, _ in enc.named_parameters()}
    assert ids["patch_embed.proj.weight"] == ids["cls_token"] == ids["norm.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.2.mlp.fc2.bias"] == 3
    assert set(ids.values()) == {0, 1, 2, 3}
    assert enc.num_layers == 3 and enc.embed_dim == 32
