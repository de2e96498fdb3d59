"""Task "finetune": encoder loading from a pre-trained model.pt, linear probe, losses, layer ids,
the fine-tuned model.pt round trip, and a few real training steps."""
import copy
import dataclasses
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import TASKS, AbsTask, get_task, register_task
from audiossl.tasks.finetune import FinetuneConfig, FinetuneModel, load_finetuned
from audiossl.models.checkpoint import save_model

torch.set_num_threads(1)

PRETRAIN_TASK = "test_finetune_pretrain_tiny"


# --------------------------------------------------------------------------------------------
# A small pre-training task with an encoder (patches of 4 frames, CLS, residual MLP blocks)
# --------------------------------------------------------------------------------------------
@dataclass
class TinyBlockConfig:
    depth: int = 2
    drop_path_rate: float = 0.0


@dataclass
class TinyConfig:
    dim: int = 16
    patch: int = 4
    feat_dim: int = 12
    blocks: TinyBlockConfig = dataclasses.field(default_factory=TinyBlockConfig)


class TinyEncoder(AbsEncoder):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim, self.num_layers = cfg.dim, cfg.blocks.depth
        self.patch_embed = nn.Linear(cfg.patch * cfg.feat_dim, cfg.dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, cfg.dim))
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, cfg.dim), nn.GELU())
                                    for _ in range(cfg.blocks.depth))
        self.dropout = nn.Dropout(0.5)  # makes train/eval mode visible in the outputs

    def forward(self, feats, padding_mask=None, output_hidden_states=False):
        B, T, Fd = feats.shape
        p = self.cfg.patch
        n = T // p
        x = self.patch_embed(feats[:, : n * p].reshape(B, n, p * Fd))  # (B, n, D)
        x = torch.cat([self.cls_token + x.mean(1, keepdim=True), x], dim=1)  # the CLS sees a summary of the clip
        for block in self.blocks:
            x = x + self.dropout(block(x))
        mask = None
        if padding_mask is not None:
            mask = padding_mask[:, : n * p].reshape(B, n, p).all(-1)
        return EncoderOutput(tokens=x[:, 1:], padding_mask=mask, cls=x[:, 0])

    def layer_id(self, name):
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return 0


class TinyPretrainModel(AbsTrainModel):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = TinyEncoder(cfg)
        self.decoder = nn.Linear(cfg.dim, cfg.dim)  # a pre-training-only part, not for fine-tuning


if PRETRAIN_TASK not in TASKS:

    @register_task(PRETRAIN_TASK)
    class TinyPretrainTask(AbsTask):
        ModelConfig = TinyConfig

        @classmethod
        def build_model(cls, model_cfg, data_info):
            return TinyPretrainModel(model_cfg)

        @classmethod
        def build_encoder(cls, model_cfg):
            return TinyEncoder(model_cfg)


NODROP_TASK = "test_finetune_nodrop_tiny"


@dataclass
class NoDropConfig:
    """A flat encoder config without a stochastic-depth field."""

    dim: int = 16
    depth: int = 2


if NODROP_TASK not in TASKS:

    @register_task(NODROP_TASK)
    class TinyNoDropTask(AbsTask):
        ModelConfig = NoDropConfig

        @classmethod
        def build_model(cls, model_cfg, data_info):
            raise NotImplementedError

        @classmethod
        def build_encoder(cls, model_cfg):
            return TinyEncoder(TinyConfig(dim=model_cfg.dim, blocks=TinyBlockConfig(depth=model_cfg.depth)))


def make_pretrained(path, cfg=None, seed=0, state_edit=None):
    """Write a pre-trained model.pt of the tiny task; return its state dict."""
    cfg = cfg or TinyConfig()
    torch.manual_seed(seed)
    model = TinyPretrainModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)
    state = model.state_dict()
    if state_edit:
        state = state_edit(dict(state))
    save_model(path, PRETRAIN_TASK, {"task": PRETRAIN_TASK, "model": dataclasses.asdict(cfg)}, state)
    return state


def info(num_classes=3):
    return DataInfo(num_classes=num_classes, feat_dim=12, label_names=[f"c{i}" for i in range(num_classes)])


def build(cfg, num_classes=3):
    return get_task("finetune").build_model(cfg, info(num_classes))


def batch(seed=0, B=8, T=16, C=3, single=True):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (B,), generator=g)
    targets = F.one_hot(labels, C).float()
    if not single:
        targets = ((targets + (torch.rand(B, C, generator=g) < 0.3).float()) > 0).float()
    # Learnable signal: class c lifts mel bins [4c, 4c + 4).
    feats = torch.randn(B, T, 12, generator=g) * 0.5
    for b in range(B):
        for c in torch.nonzero(targets[b]).flatten().tolist():
            feats[b, :, 4 * c : 4 * c + 4] += 2.0
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 12:] = True
    return {"feats": feats, "padding_mask": mask, "targets": targets, "utt_ids": [f"u{i}" for i in range(B)]}


# --------------------------------------------------------------------------------------------
def test_loads_the_pretrained_encoder_exactly(tmp_path):
    state = make_pretrained(tmp_path / "pre.pt")
    cfg = FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="cls", head_norm=True)
    model = build(cfg)
    assert isinstance(model, FinetuneModel)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, state[f"encoder.{k}"]), k
    assert set(model.state_dict()) == {f"encoder.{k}" for k in model.encoder.state_dict()} | {
        "head.weight", "head.bias", "head_norm.weight", "head_norm.bias"}
    # The config now says how to rebuild the encoder without the init file.
    assert cfg.encoder_task == PRETRAIN_TASK and cfg.encoder == dataclasses.asdict(TinyConfig())
    assert cfg.num_classes == 3
    assert model.export()["label_names"] == ["c0", "c1", "c2"] and model.export()["pooling"] == "cls"


def test_mismatched_weights_give_a_readable_diff(tmp_path):
    def edit(s):
        s.pop("encoder.blocks.1.1.weight")
        s["encoder.extra.weight"] = torch.zeros(2)
        s["encoder.patch_embed.bias"] = torch.zeros(5)
        return s

    make_pretrained(tmp_path / "bad.pt", state_edit=edit)
    with pytest.raises(ValueError) as err:
        build(FinetuneConfig(init=str(tmp_path / "bad.pt"), pooling="cls"))
    msg = str(err.value)
    assert "bad.pt" in msg
    assert "missing in the file (1): encoder.blocks.1.1.weight" in msg
    assert "unexpected in the file (1): encoder.extra.weight" in msg
    assert "shape mismatch: encoder.patch_embed.bias: file (5,), model (16,)" in msg


def test_unknown_encoder_config_key_is_an_error(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    with pytest.raises(Exception, match="no_such_key"):
        build(FinetuneConfig(init=str(tmp_path / "pre.pt"), encoder_overrides={"no_such_key": 1}))


def test_drop_path_and_overrides_reach_the_encoder_config(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    cfg = FinetuneConfig(init=str(tmp_path / "pre.pt"), drop_path=0.1, encoder_overrides={"blocks.depth": 2})
    model = build(cfg)
    assert model.encoder.cfg.blocks.drop_path_rate == 0.1
    assert cfg.encoder["blocks"]["drop_path_rate"] == 0.1


def test_linear_probe_freezes_the_encoder(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    model = build(FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="cls", freeze_encoder=True,
                                 head_init_std=0.02))
    model.train()
    assert not model.encoder.training and model.head.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # the trainer passes every parameter
    for step in range(3):
        loss, stats, _ = model(batch(step))
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.encoder.parameters())
        opt.step()
    after = model.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == k.startswith("head"), k
    # Frozen and in eval mode: the encoder's dropout is off, so two training forwards agree.
    torch.testing.assert_close(model.features(batch(0)["feats"]), model.features(batch(0)["feats"]))


def test_a_few_steps_lower_the_loss_with_augmentation(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    torch.manual_seed(0)
    model = build(FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="cls", head_norm=True, loss="ce",
                                 label_smoothing=0.1, mixup_alpha=0.8, mixup_prob=0.5, specaug_mask_ratio=0.2,
                                 roll=True, gain=True, aug_norm_std=4.5, head_init_std=0.02))
    model.encoder.dropout.p = 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.eval()
    valid = batch(100, B=32)
    first = model(valid)[0].item()
    model.train()
    for step in range(40):
        loss, stats, weight = model(batch(step, B=16))
        assert set(stats) == {"loss", "acc"} and weight == 16
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    loss, stats, _ = model(valid)
    assert loss.item() < 0.5 * first
    assert stats["acc"].item() > 0.8
    scores = model.predict(valid)
    torch.testing.assert_close(scores.sum(1), torch.ones(32))  # softmax for ce


def test_bce_normalised_by_positives_and_ce_smoothing():
    model = FinetuneModel(FinetuneConfig(loss="bce", bce_normalize_by_positives=True),
                          TinyEncoder(TinyConfig()), PRETRAIN_TASK, {}, 4, list("abcd"))
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.3, 0.2, -2.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 3.0
    torch.testing.assert_close(model.loss_from_logits(logits, targets), expected)
    model.cfg.bce_normalize_by_positives = False
    torch.testing.assert_close(model.loss_from_logits(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    # ce on smoothed one-hot targets equals torch's label_smoothing
    model.cfg.loss, model.cfg.label_smoothing = "ce", 0.1
    onehot = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    from audiossl.data.augment import smooth_targets

    torch.testing.assert_close(model.loss_from_logits(logits, smooth_targets(onehot, 0.1)),
                               F.cross_entropy(logits, torch.tensor([1, 3]), label_smoothing=0.1))


def test_layer_ids_with_and_without_decay_below_blocks(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    for below, embed_id in ((True, 0), (False, 3)):
        model = build(FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="cls", head_norm=True,
                                     layer_decay_below_blocks=below))
        assert model.num_layers == 2
        assert model.layer_id("encoder.patch_embed.weight") == embed_id
        assert model.layer_id("encoder.cls_token") == embed_id
        assert model.layer_id("encoder.blocks.0.1.weight") == 1
        assert model.layer_id("encoder.blocks.1.1.weight") == 2
        assert model.layer_id("head.weight") == model.layer_id("head_norm.bias") == 3


def test_finetuned_model_pt_round_trip_and_reuse_as_init(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    cfg = FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="mean", head_norm=True, head_init_std=0.5)
    model = build(cfg).eval()
    # What the trainer writes: the resolved config (with encoder_task/encoder filled in) and export().
    save_model(tmp_path / "ft.pt", "finetune", {"task": "finetune", "model": dataclasses.asdict(cfg)},
               model.state_dict(), model.export())
    b = batch(3)
    again = load_finetuned(tmp_path / "ft.pt")
    torch.testing.assert_close(again.predict(b), model.predict(b))
    assert again.label_names == ["c0", "c1", "c2"] and again.multi_label

    # The same file as an init: the encoder always, the head when the class count fits.
    same = build(FinetuneConfig(init=str(tmp_path / "ft.pt"), pooling="mean", head_norm=True))
    assert torch.equal(same.head.weight, model.head.weight)
    assert torch.equal(same.head_norm.weight, model.head_norm.weight)
    other = build(FinetuneConfig(init=str(tmp_path / "ft.pt"), pooling="mean"), num_classes=5)
    assert torch.equal(other.encoder.patch_embed.weight, model.encoder.patch_embed.weight)
    assert other.head.weight.shape == (5, 16) and other.head.weight.abs().max() < 1e-3  # fresh init
    with pytest.raises(ValueError, match="load_head"):
        build(FinetuneConfig(init=str(tmp_path / "ft.pt"), load_head=True), num_classes=5)


def test_imported_style_finetune_file_with_encoder_in_extra(tmp_path):
    """An importer may keep the encoder description in extra only; scoring still rebuilds it."""
    make_pretrained(tmp_path / "pre.pt")
    model = build(FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="cls", head_norm=True)).eval()
    extra = model.export()
    save_model(tmp_path / "imp.pt", "finetune", {"model": {"pooling": "cls", "head_norm": True}}, model.state_dict(), extra)
    again = load_finetuned(tmp_path / "imp.pt")
    b = batch(4)
    torch.testing.assert_close(again.predict(b), model.predict(b))
    save_model(tmp_path / "noenc.pt", "finetune", {"model": {}}, model.state_dict(), {})
    with pytest.raises(ValueError, match="encoder_task"):
        load_finetuned(tmp_path / "noenc.pt")


def test_config_errors(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    with pytest.raises(ValueError, match="aug_norm_std"):
        build(FinetuneConfig(init=str(tmp_path / "pre.pt"), gain=True))
    with pytest.raises(ValueError, match="model.init is required"):
        build(FinetuneConfig())
    with pytest.raises(ValueError, match="num_classes"):
        build(FinetuneConfig(init=str(tmp_path / "pre.pt"), num_classes=7))
    save_model(tmp_path / "nodrop.pt", NODROP_TASK, {"model": {"dim": 16}}, TinyPretrainModel(TinyConfig()).state_dict())
    with pytest.raises(ValueError, match="no drop_path_rate"):
        build(FinetuneConfig(init=str(tmp_path / "nodrop.pt"), drop_path=0.1))
    assert build(FinetuneConfig(init=str(tmp_path / "nodrop.pt"))).num_classes == 3  # fine without drop_path


def test_background_noise_bank_and_crops(tmp_path):
    import soundfile as sf

    rng = torch.Generator().manual_seed(0)
    specs = []
    for i, seconds in enumerate([0.5, 1.0]):
        wav = (torch.rand(int(16000 * seconds), generator=rng) - 0.5) * 0.2
        sf.write(tmp_path / f"noise{i}.wav", wav.numpy(), 16000)
        specs.append(f"noise{i} {tmp_path / f'noise{i}.wav'}\n")
    (tmp_path / "wav.scp").write_text("".join(specs))
    make_pretrained(tmp_path / "pre.pt")
    mean, std = -4.0, 4.0
    model = build(FinetuneConfig(init=str(tmp_path / "pre.pt"), background_noise=str(tmp_path / "wav.scp"),
                                 background_noise_prob=1.0, background_noise_snr_db=[5.0, 5.0],
                                 aug_norm_mean=mean, aug_norm_std=std))
    assert model.noise_bank.shape == (2, 98, 128) and model.noise_lengths.tolist() == [48, 98]  # 25 ms / 10 ms frames
    assert "noise_bank" not in model.state_dict()  # derived data, not a weight
    torch.manual_seed(1)
    feats = torch.randn(6, 150, 128) * 0.3
    crops = model.noise_crops(feats)
    assert crops.shape == feats.shape
    for b in range(6):  # every crop is a circular run of one recording's frames
        k = next(k for k in range(2) if any(torch.equal(crops[b, 0], model.noise_bank[k, t]) for t in range(98)))
        L = int(model.noise_lengths[k])
        t0 = next(t for t in range(L) if torch.equal(crops[b, 0], model.noise_bank[k, t]))
        idx = (t0 + torch.arange(150)) % L
        assert torch.equal(crops[b], model.noise_bank[k, idx])
    out, _, _ = model.augment(feats, None, torch.eye(3)[[0, 1, 2, 0, 1, 2]])
    raw = lambda z: z.double() * 2 * std + mean  # noqa: E731
    added = (raw(out).exp().mean((1, 2)) - raw(feats).exp().mean((1, 2))) / raw(feats).exp().mean((1, 2))
    torch.testing.assert_close(added, torch.full((6,), 10 ** -0.5, dtype=torch.float64), rtol=1e-3, atol=0)


# --------------------------------------------------------------------------------------------
# The real encoders and the checkpoint importers' "finetune" files
# --------------------------------------------------------------------------------------------
def _round_trip_through_official(tmp_path, model, cfg, module):
    """Our fine-tuned model.pt -> the official layout -> import_official -> model.pt -> load_finetuned."""
    from audiossl.train.config import plain as _plain
    from audiossl.models.checkpoint import load_model

    save_model(tmp_path / "ft.pt", "finetune", {"task": "finetune", "model": _plain(cfg)}, model.state_dict(), model.export())
    official = module.export_official(load_model(tmp_path / "ft.pt"))
    torch.save(official, tmp_path / "official.pt")
    imported = module.import_official(str(tmp_path / "official.pt"))
    assert imported.task == "finetune"
    save_model(tmp_path / "imported.pt", imported.task, {"model": imported.model_config}, imported.state_dict, imported.extra)
    return load_finetuned(tmp_path / "imported.pt")


def test_real_eat_encoder_fine_tunes_and_survives_the_official_layout(tmp_path):
    from audiossl.models.eat import checkpoint as eat_checkpoint
    from audiossl.train.config import plain as _plain
    from audiossl.train.config import dataclass_from_dict

    eat = get_task("eat_pretrain")
    mc = dataclass_from_dict(eat.ModelConfig, {
        "embed_dim": 32, "depth": 2, "num_heads": 2, "max_time_patches": 8, "clone_batch": 2,
        "average_top_k_layers": 2, "decoder_dim": 32, "decoder_layers": 1, "decoder_groups": 4}, "model")
    torch.manual_seed(0)
    pre = eat.build_model(mc, DataInfo(0, 128, []))
    save_model(tmp_path / "pre.pt", "eat_pretrain", {"task": "eat_pretrain", "model": _plain(mc)}, pre.state_dict())
    cfg = FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="cls", head_norm=True, drop_path=0.1, head_init_std=0.02,
                         loss="bce", mixup_alpha=0.8, specaug_mask_ratio=0.2, roll=True, gain=True, aug_norm_std=4.569)
    model = get_task("finetune").build_model(cfg, DataInfo(5, 128, list("abcde")))
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, pre.state_dict()[f"encoder.{k}"]), k
    assert model.encoder.blocks[-1].drop_path.p == pytest.approx(0.1)
    b = {"feats": torch.randn(4, 64, 128), "padding_mask": torch.zeros(4, 64, dtype=torch.bool), "targets": torch.eye(5)[:4]}
    model.train()
    loss, _, _ = model(b)
    loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad is not None
    model.eval()
    again = _round_trip_through_official(tmp_path, model, cfg, eat_checkpoint)
    torch.testing.assert_close(again.predict(b), model.predict(b))


def test_real_beats_encoder_fine_tunes_and_survives_the_official_layout(tmp_path):
    from audiossl.models.beats import checkpoint as beats_checkpoint
    from audiossl.train.config import plain as _plain
    from audiossl.train.config import dataclass_from_dict

    beats = get_task("beats_ssl")
    mc = dataclass_from_dict(beats.ModelConfig, {"encoder": {
        "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 2,
        "embed_dim": 16, "conv_pos": 16, "conv_pos_groups": 4, "num_buckets": 32, "max_distance": 64}}, "model")
    torch.manual_seed(0)
    encoder = beats.build_encoder(mc)
    save_model(tmp_path / "pre.pt", "beats_ssl", {"task": "beats_ssl", "model": _plain(mc)},
               {f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    cfg = FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="mean", head_init_std=0.02,
                         encoder_overrides={"encoder.dropout": 0.0, "encoder.attention_dropout": 0.0})
    model = get_task("finetune").build_model(cfg, DataInfo(5, 128, list("abcde")))
    assert cfg.encoder["encoder"]["dropout"] == 0.0 and model.find_unused_parameters  # layer drop 0.05
    with pytest.raises(ValueError, match="no drop_path_rate"):
        get_task("finetune").build_model(FinetuneConfig(init=str(tmp_path / "pre.pt"), drop_path=0.1), DataInfo(5, 128, list("abcde")))
    b = {"feats": torch.randn(3, 80, 128), "padding_mask": torch.zeros(3, 80, dtype=torch.bool), "targets": torch.eye(5)[:3]}
    b["padding_mask"][1, 50:] = True
    model.train()
    loss, _, _ = model(b)
    loss.backward()
    model.eval()
    again = _round_trip_through_official(tmp_path, model, cfg, beats_checkpoint)
    torch.testing.assert_close(again.predict(b), model.predict(b))
    assert again.pooling == "mean"


def test_every_finetune_config_loads(repo_root):
    from audiossl.train.config import load_config

    paths = sorted(repo_root.glob("egs/*/conf/finetune*.yaml")) + sorted(repo_root.glob("egs/*/conf/cpu/finetune*.yaml"))
    assert len(paths) >= 10, paths
    for path in paths:
        cfg = load_config(path)
        assert cfg.task == "finetune", path
        eat = path.stem.endswith("_eat")
        assert cfg.model.pooling == ("cls" if eat else "mean"), path
        assert cfg.model.head_norm == eat, path
        if cfg.model.gain:  # gain works in raw log-mel power: it needs the data normalisation
            assert (cfg.model.aug_norm_mean, cfg.model.aug_norm_std) == (cfg.data.norm_mean, cfg.data.norm_std), path


def test_init_weights_false_keeps_the_architecture_with_random_weights(tmp_path):
    state = make_pretrained(tmp_path / "pre.pt")
    torch.manual_seed(5)
    scratch_cfg = FinetuneConfig(init=str(tmp_path / "pre.pt"), init_weights=False, pooling="cls", head_norm=True)
    scratch = build(scratch_cfg)
    pre = build(FinetuneConfig(init=str(tmp_path / "pre.pt"), pooling="cls", head_norm=True))
    assert scratch.state_dict().keys() == pre.state_dict().keys()
    assert scratch_cfg.encoder == dataclasses.asdict(TinyConfig())  # the file's architecture
    assert not torch.equal(scratch.encoder.state_dict()["patch_embed.weight"], state["encoder.patch_embed.weight"])
    torch.manual_seed(5)
    again = build(FinetuneConfig(init=str(tmp_path / "pre.pt"), init_weights=False, pooling="cls", head_norm=True))
    for k, v in scratch.state_dict().items():  # seeded: the control is reproducible
        assert torch.equal(v, again.state_dict()[k]), k


def test_single_label_config_on_multi_label_data_is_refused(tmp_path):
    make_pretrained(tmp_path / "pre.pt")
    data = DataInfo(num_classes=3, feat_dim=12, label_names=["c0", "c1", "c2"], multi_label_clips=4,
                    source="dump/fbank_eat/train")
    with pytest.raises(ValueError, match=r"dump/fbank_eat/train: 4 clips have more than one label \(utt2label\).*model.loss bce"):
        get_task("finetune").build_model(FinetuneConfig(init=str(tmp_path / "pre.pt"), loss="ce"), data)
    model = get_task("finetune").build_model(FinetuneConfig(init=str(tmp_path / "pre.pt"), loss="bce"), data)
    assert model.multi_label
