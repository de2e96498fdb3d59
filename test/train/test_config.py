"""audiossl.train.config: YAML -> dataclasses, --section.key overrides, errors naming the key."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from train_testlib import toy_config, write_config  # noqa: E402

from audiossl.train.config import (  # noqa: E402
    ConfigError,
    config_from_dict,
    config_to_dict,
    dataclass_from_dict,
    load_config,
    parse_overrides,
    save_config,
)


def test_yaml_values_are_converted_to_field_types(tmp_path):
    raw = toy_config(tmp_path, optim={"lr": "1e-4", "betas": [0.9, 0.95], "max_updates": "1e3"})
    cfg = load_config(write_config(tmp_path / "c.yaml", raw))
    # PyYAML reads 1e-4 as a string; the field type makes it a float.
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.optim.max_updates == 1000 and isinstance(cfg.optim.max_updates, int)
    assert cfg.model.hidden_dim == 8 and cfg.model.loss == "ce"
    assert cfg.trainer.keep_last == 2 and cfg.data.valid is None


def test_command_line_overrides_every_type(tmp_path):
    path = write_config(tmp_path / "c.yaml", toy_config(tmp_path))
    cfg = load_config(path, [
        "--optim.lr", "3e-4", "--optim.betas", "0.8,0.9", "--data.target_frames", "null",
        "--trainer.compile=true", "--model.hidden_dim", "5", "--data.crop", "start",
        "--data.valid", "some/dir", "--data.max-batch-per-device", "3",
    ])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.data.target_frames is None
    assert cfg.trainer.compile is True
    assert cfg.model.hidden_dim == 5
    assert cfg.data.crop == "start" and cfg.data.valid == "some/dir"
    assert cfg.data.max_batch_per_device == 3


def test_retired_accum_grad_says_what_replaced_it(tmp_path):
    raw = toy_config(tmp_path)
    raw["optim"]["accum_grad"] = 2
    with pytest.raises(ConfigError, match="optim.accum_grad is no longer a key: data.batch_size is the global batch"):
        config_from_dict(raw)
    with pytest.raises(ConfigError, match="--optim.accum_grad is no longer an option"):
        config_from_dict(toy_config(tmp_path), overrides=parse_overrides(["--optim.accum_grad", "2"]))


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    raw = toy_config(tmp_path)
    raw["optim"]["lrr"] = 1.0
    path = write_config(tmp_path / "bad.yaml", raw)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "optim.lrr" in str(e.value) and "bad.yaml" in str(e.value)


def test_unknown_model_key_and_section(tmp_path):
    raw = toy_config(tmp_path)
    raw["model"]["hiden_dim"] = 3
    with pytest.raises(ConfigError, match=r"model\.hiden_dim"):
        load_config(write_config(tmp_path / "a.yaml", raw))
    raw = toy_config(tmp_path)
    raw["optimizer"] = {}
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(write_config(tmp_path / "b.yaml", raw))


def test_unknown_override_names_option(tmp_path):
    path = write_config(tmp_path / "c.yaml", toy_config(tmp_path))
    with pytest.raises(ConfigError, match=r"--trainer\.seeed"):
        load_config(path, ["--trainer.seeed", "3"])
    with pytest.raises(ConfigError, match="needs a value"):
        load_config(path, ["--optim.lr"])


@pytest.mark.parametrize(
    "override, key",
    [
        (["--optim.lr", "fast"], "optim.lr"),
        (["--trainer.compile", "maybe"], "trainer.compile"),
        (["--data.crop", "middle"], "data.crop"),
        (["--trainer.keep_last", "1"], "trainer.keep_last"),
        (["--data.batch_size", "2.5"], "data.batch_size"),
        (["--optim.warmup_updates", "100"], "optim.warmup_updates"),
        (["--trainer.final_model", "best", "--data.valid", "null"], "trainer.final_model"),
    ],
)
def test_bad_values_name_the_key(tmp_path, override, key):
    path = write_config(tmp_path / "c.yaml", toy_config(tmp_path))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path, override)


def test_unknown_task(tmp_path):
    raw = toy_config(tmp_path)
    raw["task"] = "no_such_task"
    with pytest.raises(ConfigError, match="no_such_task"):
        load_config(write_config(tmp_path / "c.yaml", raw))


@dataclass
class Inner:
    depth: int = 2
    scale: float = 1.0


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    sizes: list[int] = field(default_factory=list)


def test_nested_dataclasses():
    obj = dataclass_from_dict(Outer, {"inner": {"depth": "4"}, "maybe": {"scale": 2}, "sizes": [1, "2"]}, "model")
    assert obj.inner == Inner(depth=4) and obj.maybe == Inner(scale=2.0) and obj.sizes == [1, 2]
    with pytest.raises(ConfigError, match=r"model\.inner\.dept"):
        dataclass_from_dict(Outer, {"inner": {"dept": 4}}, "model")


def test_resolved_config_round_trip(tmp_path):
    path = write_config(tmp_path / "c.yaml", toy_config(tmp_path))
    cfg = load_config(path, ["--optim.lr", "2e-3"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == pytest.approx(2e-3) and saved["optim"]["betas"] == [0.9, 0.999]


def test_parse_overrides_forms():
    assert parse_overrides(["--a.b", "1", "--c.d=x=y"]) == [("a.b", "1"), ("c.d", "x=y")]
    with pytest.raises(ConfigError, match="expected --section.key"):
        parse_overrides(["stray"])


def test_base_config_is_merged_under_the_variant(tmp_path):
    raw = toy_config(tmp_path)
    raw["optim"].update(lr=1e-3, weight_decay=0.03)
    write_config(tmp_path / "base.yaml", raw)
    sub = tmp_path / "variants"
    sub.mkdir()
    (sub / "high_lr.yaml").write_text("base: ../base.yaml\noptim:\n  lr: 5.0e-4\n")
    cfg = load_config(sub / "high_lr.yaml")
    assert cfg.optim.lr == 5e-4 and cfg.optim.weight_decay == 0.03  # the rest of optim is the base's
    assert cfg.task == raw["task"] and cfg.data.batch_size == load_config(tmp_path / "base.yaml").data.batch_size
    assert "base" not in config_to_dict(cfg)  # the resolved config stands alone
    # an error in a value names both files; a missing base names the file that wants it
    (sub / "bad.yaml").write_text("base: ../base.yaml\noptim:\n  lrr: 1.0\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml on .*base\.yaml: unknown key optim\.lrr"):
        load_config(sub / "bad.yaml")
    (sub / "orphan.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: no such config file \(the base of .*orphan\.yaml\)"):
        load_config(sub / "orphan.yaml")
    (sub / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="in a loop"):
        load_config(sub / "loop.yaml")
