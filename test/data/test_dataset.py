"""audiossl.data.dataset: crop, pad-before-normalise, padding mask, multi-hot targets, errors."""
from __future__ import annotations

import json

import kaldiio
import numpy as np
import pytest
import torch

from audiossl.data.dataset import Collator, FeatsDataset, FeatsWindows, read_labels_txt, resolve_norm
from audiossl.data.fbank import FeatureNorm


def write_dump(d, lengths, labels=None, label_list=("dog", "cat", "rain"), F=4):
    """feats whose frame t holds the value t in every bin, so crops are easy to read back."""
    d.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for i, T in enumerate(lengths):
            w[f"u{i}"] = np.repeat(np.arange(T, dtype=np.float32)[:, None], F, axis=1)
    if labels is not None:
        (d / "utt2label").write_text("".join(f"u{i} {' '.join(l)}\n" for i, l in enumerate(labels)))
        (d / "labels.txt").write_text("".join(f"{i} {n} The {n}\n" for i, n in enumerate(label_list)))
    (d / "utt2dur").write_text("".join(f"u{i} {T / 100:.2f}\n" for i, T in enumerate(lengths)))
    (d / "stats.json").write_text(json.dumps({"mean": 3.0, "std": 2.0, "num_frames": sum(lengths)}))
    return d


def test_crop_start_and_random(tmp_path):
    d = write_dump(tmp_path / "d", [50, 10])
    start = FeatsDataset(d, target_frames=20, crop="start")
    assert start[0]["feats"][:, 0].tolist() == list(range(20))
    assert start[1]["feats"].shape == (10, 4)  # shorter clips are left for the collator to pad
    rnd = FeatsDataset(d, target_frames=20, crop="random")
    firsts = {int(rnd[(0, seed)]["feats"][0, 0]) for seed in range(40)}
    assert len(firsts) > 5 and min(firsts) >= 0 and max(firsts) <= 30  # windows stay inside the clip
    a, b = rnd[(0, 123)]["feats"], rnd[(0, 123)]["feats"]
    assert torch.equal(a, b), "the same seed must give the same crop"
    crop = a[:, 0]
    assert torch.equal(crop, crop[0] + torch.arange(20.0)), "a crop is a contiguous window"


def test_pad_before_normalise_and_mask(tmp_path):
    d = write_dump(tmp_path / "d", [6, 3])
    ds = FeatsDataset(d, target_frames=None)
    norm = FeatureNorm(mean=3.0, std=2.0)
    batch = Collator(norm, target_frames=None)([ds[0], ds[1]])
    assert batch["feats"].shape == (2, 6, 4)  # padded to the longest clip
    assert batch["padding_mask"].tolist() == [[False] * 6, [False] * 3 + [True] * 3]
    expected_clip1 = (torch.tensor([0.0, 1.0, 2.0, 0.0, 0.0, 0.0]) - 3.0) / (2 * 2.0)  # zeros in log-mel, then normalised
    assert torch.allclose(batch["feats"][1, :, 2], expected_clip1)
    assert batch["utt_ids"] == ["u0", "u1"] and "targets" not in batch
    fixed = Collator(norm, target_frames=8)([ds[1]])
    assert fixed["feats"].shape == (1, 8, 4) and int(fixed["padding_mask"].sum()) == 5
    full = Collator(norm, target_frames=6)([ds[0]])
    assert not full["padding_mask"].any()


def test_targets_are_multi_hot_in_labels_txt_order(tmp_path):
    d = write_dump(tmp_path / "d", [5, 5, 5], labels=[["cat"], ["rain", "dog"], ["dog"]])
    ds = FeatsDataset(d)
    assert ds.label_names == ["dog", "cat", "rain"] and ds.num_classes == 3
    batch = Collator(FeatureNorm(0.0, 1.0))([ds[i] for i in range(3)])
    assert batch["targets"].dtype == torch.float32
    assert batch["targets"].tolist() == [[0, 1, 0], [1, 0, 1], [1, 0, 0]]
    info = ds.data_info()
    assert (info.num_classes, info.feat_dim, info.label_names) == (3, 4, ["dog", "cat", "rain"])
    assert ds.lengths() == [5, 5, 5]


def test_unknown_label_and_missing_utt_are_errors(tmp_path):
    d = write_dump(tmp_path / "a", [5, 5], labels=[["cat"], ["wolf"]])
    with pytest.raises(ValueError, match="'wolf'"):
        FeatsDataset(d)
    d = write_dump(tmp_path / "b", [5, 5], labels=[["cat"], ["dog"]])
    (d / "utt2label").write_text("u0 cat\n")
    with pytest.raises(ValueError, match="'u1'"):
        FeatsDataset(d)
    with pytest.raises(FileNotFoundError, match="feats.scp"):
        FeatsDataset(tmp_path / "nothing")


def test_labels_txt_must_be_in_order(tmp_path):
    (tmp_path / "labels.txt").write_text("0 a\n2 b\n")
    with pytest.raises(ValueError, match="labels.txt:2"):
        read_labels_txt(tmp_path / "labels.txt")


def test_norm_from_config_or_stats(tmp_path):
    d = write_dump(tmp_path / "d", [5])
    assert resolve_norm(d, None, None) == FeatureNorm(3.0, 2.0)
    assert resolve_norm(d, -4.268, 4.569) == FeatureNorm(-4.268, 4.569)
    with pytest.raises(FileNotFoundError, match="stats.json"):
        resolve_norm(tmp_path, None, None)


def test_active_crop_avoids_digital_silence(tmp_path):
    """crop: active picks among the windows with the most sound; a zero-padded clip is not cropped
    to its padding (flat frames at the log floor), but still at random among equal windows."""
    d = tmp_path / "d"
    d.mkdir()
    sound = np.arange(30, dtype=np.float32)[:, None] + np.arange(4, dtype=np.float32)[None, :]  # bin 0 of frame t: t
    floor = np.full((70, 4), -15.9424, dtype=np.float32)  # log(FLT_EPSILON): zero samples
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        w["u0"] = np.concatenate([sound, floor])  # 30 frames of sound, then 70 of padding
    ds = FeatsDataset(d, target_frames=20, crop="active")
    starts = {int(ds[(0, s)]["feats"][0, 0]) for s in range(40)}
    assert starts == set(range(11)), starts  # every window inside the 30 frames of sound, none over the padding
    rnd = FeatsDataset(d, target_frames=20, crop="random")
    padded = sum(bool((rnd[(0, s)]["feats"] < -15).all()) for s in range(40))
    assert padded > 10  # a plain random crop often holds nothing but padding


def test_windows_are_those_of_scoring_with_silence_flagged(tmp_path):
    """FeatsWindows: every clip cut into scoring's windows (0, hop, ..., one ending at the last
    frame; a short clip is one window), labels and clip index per window; a window of nothing but
    digital silence is kept out (keep False) unless its clip has no other window."""
    d = tmp_path / "d"
    d.mkdir()
    sound = np.arange(50, dtype=np.float32)[:, None] + np.arange(4, dtype=np.float32)[None, :]  # bin 0 of frame t: t
    floor = np.full((60, 4), -15.9424, dtype=np.float32)
    clips = {"u0": np.concatenate([sound, floor]), "u1": sound[:15], "u2": floor[:50]}  # 110, 15, 50 frames
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for utt, x in clips.items():
            w[utt] = x
    (d / "utt2num_frames").write_text("".join(f"{u} {len(x)}\n" for u, x in clips.items()))
    (d / "utt2label").write_text("u0 dog\nu1 cat\nu2 rain\n")
    (d / "labels.txt").write_text("0 dog Dog\n1 cat Cat\n2 rain Rain\n")
    ds = FeatsWindows(d, target_frames=40)  # hop 20, as scoring's default
    assert ds.num_clips == 3 and ds.hop == 20
    assert ds.windows == [(0, 0), (0, 20), (0, 40), (0, 60), (0, 70), (1, 0), (2, 0), (2, 10)]
    items = [ds[j] for j in range(len(ds))]
    assert [it["keep"] for it in items] == [True, True, True, False, False, True, True, True]
    assert [int(it["feats"][0, 0]) for it in items[:3]] == [0, 20, 40]
    assert items[5]["feats"].shape == (15, 4)  # padded by the collator, as in training and scoring
    assert [int(it["targets"].argmax()) for it in items] == [0, 0, 0, 0, 0, 1, 2, 2]
    batch = Collator(FeatureNorm(0.0, 1.0), target_frames=40)(items[3:6])
    assert batch["clip"].tolist() == [0, 0, 1] and batch["keep"].tolist() == [False, False, True]
    assert ds[(4, 99)]["feats"][0, 0] == -15.9424  # sampler keys (index, seed) work; no randomness
    (d / "utt2num_frames").write_text("u0 110\nu1 15\nu2 90\n")  # a stale length is named
    with pytest.raises(ValueError, match="u2.*utt2num_frames"):
        FeatsWindows(d, target_frames=40)[8]


def test_non_finite_features_are_named_with_utterance_and_ark(tmp_path):
    x = np.zeros((30, 4), dtype=np.float32)
    y = x.copy()
    y[7, 0] = np.nan
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/feats.ark,{tmp_path}/feats.scp") as w:
        w["u1"], w["u2"] = x, y
    ds = FeatsDataset(tmp_path)
    assert ds[0]["feats"].shape == (30, 4)
    with pytest.raises(ValueError, match=r"utterance 'u2' \(.*feats\.ark:\d+\): 1 of its 120 feature values are NaN"):
        ds[1]
