"""ESC-50 data preparation on a tiny corpus in the official layout, written into tmp_path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.data.corpora.esc50 import prepare_esc50, read_esc50_meta
from audiossl.data.datadir import read_kv, read_labels, validate_data_dir

HEADER = "filename,fold,target,category,esc10,src_file,take"
# Targets are deliberately neither in alphabetical nor in first-appearance order of the categories.
TARGETS = {"rooster": 0, "dog": 1, "chirping_birds": 2}
SR = 44100


def clip_rows() -> list[tuple[str, int, str, str, str]]:
    """(filename, fold, category, src_file, take): 3 clips per fold, two of them cut from one recording."""
    rows = []
    cats = ["dog", "chirping_birds", "rooster"]
    for fold in range(1, 6):
        src = f"{100000 + fold}"
        rows.append((f"{fold}-{src}-A-{TARGETS[cats[fold % 3]]}.wav", fold, cats[fold % 3], src, "A"))
        rows.append((f"{fold}-{src}-B-{TARGETS[cats[fold % 3]]}.wav", fold, cats[fold % 3], src, "B"))
        other = cats[(fold + 1) % 3]
        rows.append((f"{fold}-{200000 + fold}-A-{TARGETS[other]}.wav", fold, other, f"{200000 + fold}", "A"))
    return rows


def write_meta(root: Path, rows) -> Path:
    meta = root / "meta" / "esc50.csv"
    meta.parent.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [
        f"{name},{fold},{TARGETS.get(cat, 9)},{cat},{str(cat == 'dog')},{src},{take}" for name, fold, cat, src, take in rows
    ]
    meta.write_text("\n".join(lines) + "\n")
    return meta


@pytest.fixture
def esc50_root(tmp_path: Path) -> Path:
    root = tmp_path / "ESC-50-master"
    rows = clip_rows()
    write_meta(root, rows)
    (root / "audio").mkdir()
    for i, (name, *_rest) in enumerate(rows):
        soundfile.write(root / "audio" / name, np.full(int(0.02 * SR) + i, 0.01), SR)
    return root


def keys(path: Path) -> set[str]:
    return set(read_kv(path / "wav.scp"))


def c_sorted(path: Path) -> bool:
    return subprocess.run(["sort", "-c", "-k1,1", str(path)], env={**os.environ, "LC_ALL": "C"}).returncode == 0


def test_folds_never_leak_and_tests_cover_every_clip_once(esc50_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = prepare_esc50(esc50_root, out, nj=2)
    all_clips = keys(out / "all")
    assert all_clips == {Path(r[0]).stem for r in clip_rows()}
    fold_of = {Path(name).stem: fold for name, fold, *_ in clip_rows()}
    seen_in_test: list[str] = []
    for k in range(1, 6):
        train, test = keys(out / f"fold{k}" / "train"), keys(out / f"fold{k}" / "test")
        assert train.isdisjoint(test), f"fold {k} leaks {train & test}"
        assert train | test == all_clips
        assert {fold_of[u] for u in test} == {k}
        seen_in_test += sorted(test)
    assert sorted(seen_in_test) == sorted(all_clips)  # each clip in exactly one test set
    assert set(report.sets) == {"all"} | {f"fold{k}/{s}" for k in range(1, 6) for s in ("train", "test")}
    for summary in report.sets.values():
        assert validate_data_dir(summary.data_dir) == []
        for name in ("wav.scp", "utt2label", "utt2dur"):
            assert c_sorted(summary.data_dir / name)


def test_labels_are_categories_in_target_order(esc50_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = prepare_esc50(esc50_root, out)
    expected = sorted(TARGETS, key=TARGETS.get)
    assert report.categories == expected
    assert read_labels(out / "labels.txt")[0] == expected
    assert read_labels(out / "fold3" / "test" / "labels.txt")[0] == expected
    utt2label = read_kv(out / "all" / "utt2label")
    for name, _fold, cat, *_ in clip_rows():
        assert utt2label[Path(name).stem] == cat
    durs = read_kv(out / "all" / "utt2dur")
    first = Path(clip_rows()[0][0]).stem
    assert float(durs[first]) == pytest.approx(int(0.02 * SR) / SR, abs=1e-3)
    assert read_kv(out / "all" / "wav.scp")[first] == str(esc50_root / "audio" / clip_rows()[0][0])


def test_missing_and_corrupt_clips_do_not_stop_preparation(esc50_root: Path, tmp_path: Path) -> None:
    rows = clip_rows()
    missing, corrupt = rows[0][0], rows[4][0]  # folds 1 and 2
    (esc50_root / "audio" / missing).unlink()
    (esc50_root / "audio" / corrupt).write_bytes(b"this is not audio")
    out = tmp_path / "data"
    report = prepare_esc50(esc50_root, out)
    assert report.num_missing == 1
    stem = Path(missing).stem
    assert stem not in keys(out / "all")
    for name in ("all", "fold1/test", "fold2/train"):
        assert (out / name / "missing.txt").read_text().split()[0] == stem
    assert not (out / "fold1" / "train" / "missing.txt").exists()
    # The corrupt clip stays indexed (feature extraction drops it) with the nominal 5 s.
    assert Path(corrupt).stem in keys(out / "fold2" / "test")
    assert float(read_kv(out / "all" / "utt2dur")[Path(corrupt).stem]) == 5.0
    assert report.sets["fold2/test"].num_unreadable == 1
    assert validate_data_dir(out / "fold2" / "test") == []


def test_a_recording_split_across_folds_is_refused(esc50_root: Path) -> None:
    rows = clip_rows()
    name, _fold, cat, src, take = rows[1]
    rows[1] = (name, 2, cat, src, take)  # take B of fold 1's recording moved to fold 2
    meta = write_meta(esc50_root, rows)
    with pytest.raises(ValueError, match=rf"{meta}:3: source recording {src} is in fold 2, but in fold 1 at {meta}:2"):
        read_esc50_meta(meta)


def test_a_category_with_two_targets_is_refused(esc50_root: Path) -> None:
    meta = esc50_root / "meta" / "esc50.csv"
    lines = meta.read_text().splitlines()
    assert ",2,chirping_birds," in lines[2]
    lines[2] = lines[2].replace(",2,chirping_birds,", ",0,chirping_birds,")  # line 3
    meta.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{meta}:3: category chirping_birds has target 0, but 2 at {meta}:2"):
        read_esc50_meta(meta)


def test_cli(esc50_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = subprocess.run(
        [sys.executable, "-m", "audiossl.bin.prepare_esc50", "--esc50-root", str(esc50_root), str(out)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert keys(out / "fold5" / "test") == {Path(r[0]).stem for r in clip_rows() if r[1] == 5}
    run = subprocess.run(
        [sys.executable, "-m", "audiossl.bin.prepare_esc50", "--esc50-root", str(tmp_path / "nowhere"), str(out)],
        capture_output=True, text=True,
    )
    assert run.returncode == 1 and "meta/esc50.csv: no such file" in run.stderr


def run_data_sh(recipe: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run egs/<recipe>/local/data.sh from a recipe-like directory (utils/ and local/ linked in)."""
    repo = Path(__file__).resolve().parents[2]
    workdir.mkdir()
    (workdir / "utils").symlink_to(repo / "utils")
    (workdir / "local").symlink_to(repo / "egs" / recipe / "local")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "LC_ALL": "C"}
    return subprocess.run(["bash", "local/data.sh", *args], cwd=workdir, env=env, capture_output=True, text=True)


def test_data_sh(esc50_root: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    run = run_data_sh("esc50", recipe, "--esc50-root", str(esc50_root))  # <data-dir> defaults to data
    assert run.returncode == 0, run.stderr
    assert keys(recipe / "data" / "fold2" / "test") == {Path(r[0]).stem for r in clip_rows() if r[1] == 2}
    usage = run_data_sh("esc50", tmp_path / "recipe2", "data", "extra")
    assert usage.returncode == 1 and "Usage:" in usage.stderr
