"""The import/export entry points: our model.pt -> released layout -> model.pt is exact for BEATs
and EAT (fairseq and Hugging Face), the family is detected from the keys, and bad files fail clearly."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from audiossl.models.beats.backbone import BEATsBackbone
from audiossl.models.beats.config import BEATsConfig
from audiossl.models.beats.ssl import SSLConfig
from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel
from audiossl.models.checkpoint import load_model, save_model

torch.set_num_threads(1)


def cli(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"audiossl.bin.{name}", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def tiny_beats_model_pt(path):
    cfg = BEATsConfig(embed_dim=32, encoder_layers=2, encoder_embed_dim=48, encoder_ffn_embed_dim=96,
                      encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4)
    torch.manual_seed(0)
    state = {f"encoder.{k}": v for k, v in BEATsBackbone(cfg).state_dict().items()}
    save_model(path, "beats_ssl", {"model": dataclasses.asdict(SSLConfig(encoder=cfg, tokenizer=None))}, state)
    return state


def tiny_eat_model_pt(path):
    cfg = EATPretrainConfig(embed_dim=32, depth=2, num_heads=4, decoder_dim=32, decoder_layers=2,
                            decoder_groups=16, clone_batch=2, average_top_k_layers=2)
    torch.manual_seed(0)
    state = EATPretrainModel(cfg).state_dict()
    save_model(path, "eat_pretrain", {"model": dataclasses.asdict(cfg)}, state)
    return state


def assert_same(a: dict, b: dict, prefix: str):
    keys_a = {k for k in a if k.startswith(prefix)}
    keys_b = {k for k in b if k.startswith(prefix)}
    assert keys_a == keys_b, f"key sets differ: {sorted(keys_a ^ keys_b)[:6]}"
    for k in keys_a:
        assert torch.equal(a[k], b[k]), f"{k} changed in the round trip"


def test_beats_round_trip_through_both_clis(tmp_path):
    state = tiny_beats_model_pt(tmp_path / "ours.pt")
    res = cli("export_checkpoint", tmp_path / "ours.pt", tmp_path / "BEATs_official.pt")
    assert res.returncode == 0, res.stderr
    official = torch.load(tmp_path / "BEATs_official.pt", weights_only=False)
    assert set(official) >= {"cfg", "model"} and "encoder.pos_conv.0.weight_g" in official["model"]
    res = cli("import_checkpoint", tmp_path / "BEATs_official.pt", tmp_path / "exp" / "imported")
    assert res.returncode == 0, res.stderr
    imported = load_model(tmp_path / "exp" / "imported" / "model.pt")
    assert imported["task"] == "beats_ssl"
    assert (tmp_path / "exp" / "imported" / "config.yaml").is_file()
    assert_same(state, imported["model"], "encoder.")


@pytest.mark.parametrize("layout", ["fairseq", "hf"])
def test_eat_round_trip_through_both_clis(tmp_path, layout):
    state = tiny_eat_model_pt(tmp_path / "ours.pt")
    out = tmp_path / ("EAT_official.pt" if layout == "fairseq" else "EAT_hf")
    res = cli("export_checkpoint", "--layout", layout, tmp_path / "ours.pt", out)
    assert res.returncode == 0, res.stderr
    res = cli("import_checkpoint", out, tmp_path / "imported")
    assert res.returncode == 0, res.stderr
    imported = load_model(tmp_path / "imported" / "model.pt")
    assert imported["task"] == "eat_pretrain"
    assert_same(state, imported["model"], "encoder.")
    if layout == "fairseq":  # the fairseq file carries the teacher and the decoder too
        assert_same(state, imported["model"], "teacher.")
        assert_same(state, imported["model"], "decoder.")


def test_eat_teacher_option_makes_the_teacher_the_encoder(tmp_path):
    state = tiny_eat_model_pt(tmp_path / "ours.pt")
    with torch.no_grad():  # make the teacher differ from the student
        teacher = {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items() if k.startswith("teacher.")}
    state.update(teacher)
    pt = load_model(tmp_path / "ours.pt")
    save_model(tmp_path / "ours.pt", pt["task"], pt["config"], state)
    assert cli("export_checkpoint", tmp_path / "ours.pt", tmp_path / "EAT.pt").returncode == 0
    res = cli("import_checkpoint", "--use-teacher", "true", tmp_path / "EAT.pt", tmp_path / "imported")
    assert res.returncode == 0, res.stderr
    imported = load_model(tmp_path / "imported" / "model.pt")["model"]
    for k, v in teacher.items():
        enc = "encoder." + k[len("teacher."):]
        if enc in imported:
            assert torch.equal(imported[enc], v), f"{enc} is not the teacher's"


def test_bad_files_fail_with_the_file_named(tmp_path):
    bad = tmp_path / "notes.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    res = cli("import_checkpoint", bad, tmp_path / "exp")
    assert res.returncode == 1
    assert str(bad) in res.stderr
    assert not (tmp_path / "exp" / "model.pt").exists()
    res = cli("export_checkpoint", tmp_path / "missing.pt", tmp_path / "out.pt")
    assert res.returncode == 1 and "missing.pt" in res.stderr
