"""Every shipped paper config holds the values egs/paper_values.yaml lists (from the papers and the
official code, each with its source), and its global batch gives the same updates on 1, 4 or 8 GPUs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from audiossl.data.sampler import split_global_batch
from audiossl.train.config import load_config

REPO = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load((REPO / "egs" / "paper_values.yaml").read_text())
CONFIGS = {name: values for name, values in TABLE.items() if name.startswith("egs/")}
PAPER_RECIPES = ("audioset", "esc50", "spc2")  # their conf/*.yaml are paper configs; conf/cpu/ is not


def lookup(cfg, key: str):
    """``cfg``'s value at a dotted key; inside a mapping the rest of the key may be one name
    (``model.encoder_overrides.encoder.dropout`` -> the override named ``encoder.dropout``)."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, dict):
            rest = ".".join(parts[i:])
            if rest in node:
                return node[rest]
            node = node[part]
        elif dataclasses.is_dataclass(node):
            node = getattr(node, part)
        else:
            raise KeyError(key)
    return node


def same(got, want) -> bool:
    if isinstance(want, bool) or isinstance(got, bool) or isinstance(want, str):
        return type(got) is type(want) and got == want
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, (int, float)):
        return isinstance(got, (int, float)) and got == pytest.approx(want, rel=1e-9, abs=0)
    return got == want


def test_the_table_names_every_paper_config():
    shipped = {str(p.relative_to(REPO)) for r in PAPER_RECIPES for p in (REPO / "egs" / r / "conf").glob("*.yaml")}
    assert shipped == set(CONFIGS), (
        f"paper configs without values in egs/paper_values.yaml: {sorted(shipped - set(CONFIGS))}; "
        f"names there that are not shipped: {sorted(set(CONFIGS) - shipped)}")
    for name, values in CONFIGS.items():
        assert values, name
        for key, entry in values.items():
            assert isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str) and entry[1], \
                f"{name}: {key} needs [value, source], got {entry!r}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_holds_the_paper_values(name):
    cfg = load_config(REPO / name)
    wrong = []
    for key, (want, source) in CONFIGS[name].items():
        if key == "per_pass":
            continue
        try:
            got = lookup(cfg, key)
        except (KeyError, AttributeError):
            wrong.append(f"{key}: no such key (paper: {want!r}, {source})")
            continue
        if not same(got, want):
            wrong.append(f"{key} = {got!r}, paper: {want!r} ({source})")
    assert not wrong, f"{name}:\n  " + "\n  ".join(wrong)


@pytest.mark.parametrize("world_size", [1, 4, 8])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_global_batch_is_the_papers_on_any_world_size(name, world_size):
    cfg = load_config(REPO / name)
    want = CONFIGS[name].get("data.batch_size", [cfg.data.batch_size])[0]
    split = split_global_batch(cfg.data.batch_size, world_size, cfg.data.max_batch_per_device)
    assert split.world_size * split.micro * split.accum == want
    if cfg.data.max_batch_per_device is not None:
        assert split.micro <= cfg.data.max_batch_per_device
    if "per_pass" in CONFIGS[name]:
        # a loss summed over one pass keeps the official per-device batch where the world size
        # leaves each process that many clips; beyond (8 GPUs for EAT) each passes its whole share
        per_pass = CONFIGS[name]["per_pass"][0]
        share = want // world_size
        assert split.micro == min(per_pass, share), (world_size, split)
