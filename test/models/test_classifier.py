"""AudioClassifier: pooling over unpadded tokens, the CLS path, layer ids, head init."""
import pytest
import torch
from torch import nn

from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput
from audiossl.models.classifier import AudioClassifier, masked_mean

torch.set_num_threads(1)


class FrameEncoder(AbsEncoder):
    """One token per frame (Linear), optional CLS = mean of the frame tokens; padding passed through."""

    def __init__(self, feat_dim=8, dim=6, with_cls=False):
        super().__init__()
        self.embed_dim, self.num_layers = dim, 2
        self.proj = nn.Linear(feat_dim, dim)
        self.block0 = nn.Linear(dim, dim)
        self.block1 = nn.Linear(dim, dim)
        self.with_cls = with_cls

    def forward(self, feats, padding_mask=None, output_hidden_states=False):
        x = self.proj(feats)
        x = x + self.block1(torch.tanh(self.block0(x)))
        cls = x.mean(dim=1) * 3.0 if self.with_cls else None
        return EncoderOutput(tokens=x, padding_mask=padding_mask, cls=cls)

    def layer_id(self, name):
        if name.startswith("proj."):
            return 0
        return {"block0": 1, "block1": 2}[name.split(".")[0]]

    def no_weight_decay(self):
        return {"proj.bias"}


def test_mean_pooling_ignores_padded_tokens():
    torch.manual_seed(0)
    clf = AudioClassifier(FrameEncoder(), num_classes=3, pooling="mean", head_init_std=0.5).eval()
    feats = torch.randn(2, 7, 8)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 4:] = True
    before = clf(feats, mask)
    feats2 = feats.clone()
    feats2[1, 4:] = 1e4  # garbage in the padded frames of clip 1
    after = clf(feats2, mask)
    torch.testing.assert_close(before, after)
    # Clip 1 scored alone on its 4 real frames gives the same logits.
    torch.testing.assert_close(before[1], clf(feats[1:2, :4])[0])


def test_mean_pooling_equals_per_token_linear_then_mean():
    """The official BEATs head: Linear on every patch, padded logits zeroed, mean over the rest."""
    torch.manual_seed(1)
    clf = AudioClassifier(FrameEncoder(), num_classes=4, pooling="mean", head_init_std=0.5).eval()
    feats = torch.randn(3, 9, 8)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[0, 5:] = True
    mask[2, 1:] = True
    tokens = clf.encoder(feats, mask).tokens
    per_token = clf.head(tokens)  # (B, N, C)
    per_token = per_token.masked_fill(mask[:, :, None], 0.0)
    official = per_token.sum(1) / (~mask).sum(1, keepdim=True)
    torch.testing.assert_close(clf(feats, mask), official, atol=1e-6, rtol=1e-5)


def test_all_padding_clip_gives_finite_output():
    tokens = torch.randn(2, 5, 3)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(masked_mean(tokens, mask), torch.zeros(2, 3))


def test_cls_pooling_with_head_norm():
    torch.manual_seed(2)
    clf = AudioClassifier(FrameEncoder(with_cls=True), num_classes=5, pooling="cls", head_norm=True,
                          head_init_std=0.5).eval()
    assert isinstance(clf.head_norm, nn.LayerNorm) and clf.head_norm.eps == 1e-6
    with torch.no_grad():
        clf.head_norm.weight.uniform_(0.5, 2.0)
        clf.head_norm.bias.uniform_(-1, 1)
    feats = torch.randn(2, 6, 8)
    cls = clf.encoder(feats).cls
    expected = clf.head(nn.functional.layer_norm(cls, (6,), clf.head_norm.weight, clf.head_norm.bias, 1e-6))
    torch.testing.assert_close(clf(feats), expected)
    torch.testing.assert_close(clf.features(feats), cls)
    assert set(clf.state_dict()) >= {"head.weight", "head.bias", "head_norm.weight", "head_norm.bias"}


def test_cls_pooling_needs_a_cls_token():
    clf = AudioClassifier(FrameEncoder(with_cls=False), num_classes=2, pooling="cls")
    with pytest.raises(AssertionError, match="CLS"):
        clf(torch.randn(1, 4, 8))


def test_head_norm_off_is_identity_and_no_extra_keys():
    clf = AudioClassifier(FrameEncoder(), num_classes=2)
    assert isinstance(clf.head_norm, nn.Identity)
    assert not any(k.startswith("head_norm.") for k in clf.state_dict())


def test_layer_ids_and_no_weight_decay():
    clf = AudioClassifier(FrameEncoder(), num_classes=2, head_norm=True)
    ids = {n: clf.layer_id(n) for n, _ in clf.named_parameters()}
    assert ids["encoder.proj.weight"] == 0
    assert ids["encoder.block0.weight"] == 1
    assert ids["encoder.block1.bias"] == 2
    assert ids["head.weight"] == ids["head_norm.weight"] == 3  # num_layers + 1
    assert clf.num_layers == 2
    assert clf.no_weight_decay() == {"encoder.proj.bias"}


def test_head_init():
    torch.manual_seed(3)
    clf = AudioClassifier(FrameEncoder(dim=64), num_classes=500, head_init_std=0.02)
    w = clf.head.weight
    assert torch.all(clf.head.bias == 0)
    assert w.abs().max() <= 0.04 + 1e-7  # truncated at 2 std
    assert 0.015 < w.std().item() < 0.02  # a normal truncated at 2 std has std 0.88 sigma
    with pytest.raises(AssertionError, match="pooling"):
        AudioClassifier(FrameEncoder(), num_classes=2, pooling="max")
