"""audiossl.models.checkpoint and audiossl.tasks.encoder: the one strict loader (readable diffs, a
failed load changes nothing, modules' own key upgrades) and encoders built on the meta device that
take the file's tensors and compute what a normally built encoder computes."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from audiossl.data.dataset import DataInfo
from audiossl.models.beats.checkpoint import to_parametrized_weight_norm
from audiossl.models.checkpoint import CheckpointMismatch, load_model, load_strict, save_model, state_dict_diff
from audiossl.tasks.abs_task import get_task
from audiossl.tasks.encoder import build_encoder, load_encoder
from audiossl.tasks.finetune import FinetuneConfig, load_finetuned

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Sequential(nn.Linear(4, 2), nn.LayerNorm(2))


def test_mismatch_lists_every_difference_and_loads_nothing():
    net = _Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bad = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    del bad["b.1.bias"]
    bad["b.0.weight"] = torch.zeros(5, 4)
    bad["c.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch) as err:
        load_strict(net, bad, "exp/x/model.pt", prefix="encoder.")
    msg = str(err.value)
    assert msg.startswith("exp/x/model.pt: the weights do not fit the model built from its config:")
    assert "missing in the file (1): encoder.b.1.bias" in msg
    assert "unexpected in the file (1): encoder.c.weight" in msg
    assert "shape mismatch: encoder.b.0.weight: file (5, 4), model (2, 4)" in msg
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items()), "a refused load changed the module"


def test_long_key_lists_are_cut_with_a_count():
    expected = {f"k{i:02d}": torch.zeros(1) for i in range(15)}
    lines = state_dict_diff(expected, {})
    assert lines == ["missing in the file (15): " + ", ".join(f"k{i:02d}" for i in range(10)) + " ... and 5 more"]
    assert state_dict_diff(expected, dict(expected)) == []


def _cpu_model_config(task: str) -> dict:
    conf = {"beats_ssl": "egs/spc2/conf/cpu/beats_ssl.yaml", "eat_pretrain": "egs/spc2/conf/cpu/eat_pretrain.yaml"}[task]
    return yaml.safe_load((REPO / conf).read_text())["model"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tok_cfg = get_task("beats_tokenizer").ModelConfig(kind="random", codebook_size=40, codebook_dim=16)
    tok = get_task("beats_tokenizer").build_model(tok_cfg, DataInfo())
    save_model(d / "tok.pt", "beats_tokenizer", {"model": dataclasses.asdict(tok_cfg)}, tok.state_dict())
    enc = _cpu_model_config("beats_ssl")
    enc.update(tokenizer=str(d / "tok.pt"))
    beats_task = get_task("beats_ssl")
    ssl_cfg = beats_task.ModelConfig(**{k: v for k, v in enc.items() if k != "encoder"}, encoder=enc["encoder"])
    save_model(d / "beats.pt", "beats_ssl", {"model": dataclasses.asdict(ssl_cfg)},
               beats_task.build_model(ssl_cfg, DataInfo()).state_dict())
    eat_task = get_task("eat_pretrain")
    eat_cfg = eat_task.ModelConfig(**_cpu_model_config("eat_pretrain"))
    save_model(d / "eat.pt", "eat_pretrain", {"model": dataclasses.asdict(eat_cfg)},
               eat_task.build_model(eat_cfg, DataInfo()).state_dict())
    ft_cfg = FinetuneConfig(init=str(d / "eat.pt"), pooling="cls", head_norm=True, head_init_std=0.5, loss="ce")
    ft = get_task("finetune").build_model(ft_cfg, DataInfo(num_classes=3, label_names=["a", "b", "c"]))
    save_model(d / "ft.pt", "finetune", {"model": dataclasses.asdict(ft_cfg)}, ft.state_dict(), ft.export())
    return {"beats": d / "beats.pt", "eat": d / "eat.pt", "ft": d / "ft.pt"}


@pytest.mark.parametrize("name", ["beats", "eat"])
def test_meta_built_encoder_takes_the_files_tensors_and_computes_the_same(files, name):
    obj = load_model(files[name])
    encoder = load_encoder(obj, str(files[name]))
    assert not any(t.is_meta for t in encoder.state_dict().values())
    # the file's tensors themselves: neither copied nor initialised first
    key = next(k for k in obj["model"] if k.startswith("encoder.") and k.endswith(".weight"))
    assert encoder.state_dict()[key[len("encoder."):]].data_ptr() == obj["model"][key].data_ptr()
    reference, _ = build_encoder(obj["task"], obj["config"]["model"])
    reference.load_state_dict({k[len("encoder."):]: v.clone() for k, v in obj["model"].items() if k.startswith("encoder.")})
    feats = torch.randn(2, 96, 128)
    with torch.no_grad():
        assert torch.equal(encoder(feats).tokens, reference.eval()(feats).tokens)


def test_meta_built_classifier_scores_as_the_trained_one(files):
    model = load_finetuned(files["ft"])
    obj = load_model(files["ft"])
    reference = get_task("finetune").build_model(FinetuneConfig(**{**obj["config"]["model"], "init": str(files["eat"])}),
                                                 DataInfo(num_classes=3, label_names=["a", "b", "c"]))
    reference.load_state_dict(obj["model"])
    feats = torch.randn(2, 96, 128)
    batch = {"feats": feats, "padding_mask": torch.zeros(2, 96, dtype=torch.bool)}
    with torch.no_grad():
        assert torch.equal(model.predict(batch), reference.eval().predict(batch))
    assert model.noise_bank.device.type == "cpu"  # buffers that are not in the file are real tensors


def test_beats_parametrized_weight_norm_names_load_through_the_modules_upgrade(files, tmp_path):
    obj = load_model(files["beats"])
    renamed = to_parametrized_weight_norm(obj["model"])
    assert "encoder.encoder.pos_conv.0.parametrizations.weight.original0" in renamed
    save_model(tmp_path / "p.pt", obj["task"], obj["config"], renamed, obj.get("extra"))
    a, b = load_encoder(files["beats"]), load_encoder(tmp_path / "p.pt")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
