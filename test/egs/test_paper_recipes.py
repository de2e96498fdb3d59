"""The paper recipes' first stages on tiny corpora in their official layouts: each run.sh goes
through data preparation and feature extraction for every set it names (folds included), so the
recipe wiring (set names, options, local/data.sh) is exercised as a user runs it."""
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]


def make_recipe(tmp_path: Path, name: str) -> Path:
    recipe = tmp_path / name
    recipe.mkdir()
    for entry in (REPO / "egs" / name).iterdir():
        if entry.name not in ("data", "dump", "exp", "downloads", "RESULTS.md"):
            (recipe / entry.name).symlink_to(entry.resolve())
    return recipe


def tone(path: Path, seconds: float, sr: int, freq: float, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, sr)


def run_front(recipe: Path, *args: str) -> str:
    res = subprocess.run(["./run.sh", "--stop-stage", "2", "--nj", "2", "--ngpu", "0",
                          "--finetune-models", "eat", *args],
                         cwd=recipe, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "Successfully finished" in res.stdout
    return out


def num_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_esc50_front_stages_make_every_fold(tmp_path):
    root = tmp_path / "ESC-50-master"
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, category in ((0, "dog"), (1, "rain")):
            name = f"{fold}-{100 + 10 * fold + target}-A-{target}.wav"
            tone(root / "audio" / name, 1.0, 44100, 300 + 500 * target)
            rows.append(f"{name},{fold},{target},{category},True,{100 + 10 * fold + target},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    recipe = make_recipe(tmp_path, "esc50")
    run_front(recipe, "--local-data-opts", f"--esc50-root {root}")
    for fold in range(1, 6):
        train = recipe / "dump" / "fbank_eat" / f"fold{fold}" / "train" / "feats.scp"
        test = recipe / "dump" / "fbank_eat" / f"fold{fold}" / "test" / "feats.scp"
        assert num_lines(train) == 8 and num_lines(test) == 2
        train_ids = {line.split()[0] for line in train.read_text().splitlines()}
        test_ids = {line.split()[0] for line in test.read_text().splitlines()}
        assert not train_ids & test_ids, f"fold {fold} leaks"
    # every clip is in 5 sets but extracted once: the fold sets take their lines from the union
    union = recipe / "dump" / "fbank_eat" / "_union"
    assert num_lines(union / "feats.scp") == 10
    assert sorted((recipe / "dump" / "fbank_eat").rglob("fbank.*.log")) == sorted(union.glob("log/fbank.*.log"))
    assert "--ngpu auto: 0" in run_front(recipe, "--ngpu", "auto", "--stage", "2")


def test_esc50_pretraining_per_fold_is_refused(tmp_path):
    recipe = make_recipe(tmp_path, "esc50")
    res = subprocess.run(["./run.sh", "--stage", "3", "--pretrain-models", "eat"],
                         cwd=recipe, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "pre-training runs once, not per fold" in res.stdout and "--pretrain-set" in res.stdout


def test_spc2_front_stages_follow_the_lists(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    for w, word in enumerate(("yes", "no")):
        for n in range(3):
            tone(root / word / f"spk{n}_nohash_0.wav", 1.0, 16000, 400 + 300 * w + 50 * n)
    tone(root / "_background_noise_" / "white_noise.wav", 2.0, 16000, 1000)
    (root / "validation_list.txt").write_text("yes/spk1_nohash_0.wav\nno/spk1_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/spk2_nohash_0.wav\nno/spk2_nohash_0.wav\n")
    recipe = make_recipe(tmp_path, "spc2")
    run_front(recipe, "--local-data-opts", f"--spc2-root {root}")
    dump = recipe / "dump" / "fbank_eat"
    assert [num_lines(dump / s / "feats.scp") for s in ("train", "valid", "test")] == [2, 2, 2]
    assert "spk2" in (dump / "test" / "feats.scp").read_text()
    assert (recipe / "data" / "background_noise" / "wav.scp").is_file()


def test_audioset_front_stages_count_missing_clips(tmp_path):
    root = tmp_path / "corpus" / "audioset"
    root.mkdir(parents=True)
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/0jbk,"Animal"\n2,/m/05zppz,"Male speech, man speaking"\n')

    def segments(name, rows):
        head = ["# Segments csv created Sun Mar  5 10:54:31 2017", "# num_ytids=1, num_segs=1, num_unique_labels=1,",
                "# YTID, start_seconds, end_seconds, positive_labels"]
        (root / name).write_text("\n".join(head + rows) + "\n")

    segments("balanced_train_segments.csv", ['aaaaaaaaaa1, 0.000, 10.000, "/m/09x0r,/m/05zppz"',
                                             'aaaaaaaaaa2, 0.000, 10.000, "/m/0jbk"',
                                             'aaaaaaaaaa3, 0.000, 10.000, "/m/0jbk"'])  # no audio: missing
    segments("unbalanced_train_segments.csv", ['bbbbbbbbbb1, 30.000, 40.000, "/m/0jbk"'])
    segments("eval_segments.csv", ['ccccccccccc, 0.000, 10.000, "/m/09x0r"'])
    for ytid, start in (("aaaaaaaaaa1", 0), ("aaaaaaaaaa2", 0), ("bbbbbbbbbb1", 30), ("ccccccccccc", 0)):
        tone(root / "audio" / f"Y{ytid}_{start}.000_{start + 10}.000.wav", 2.0, 32000, 500, channels=2)
    recipe = make_recipe(tmp_path, "audioset")
    run_front(recipe, "--local-data-opts", f"--audioset-root {root}")
    dump = recipe / "dump" / "raw"  # the AudioSet recipe dumps the audio once, for both models
    assert num_lines(dump / "balanced_train" / "wav.scp") == 2
    assert num_lines(dump / "train_as2m" / "wav.scp") == 3
    assert num_lines(dump / "eval" / "wav.scp") == 1
    assert all((dump / s / f"stats_{kind}.json").is_file() for s in ("balanced_train", "eval") for kind in ("beats", "eat"))
    assert "aaaaaaaaaa3" in (recipe / "data" / "balanced_train" / "missing.txt").read_text()


@pytest.mark.parametrize("name", ["spc2", "esc50"])
def test_cpu_recipes_name_configs_that_exist_and_train_in_epochs(name):
    """run_cpu.sh's configs exist, load, and give fine-tuning schedules in epochs of the train set
    (pre-training: in epochs, or in updates where a corpus's epochs would give too few)."""
    import re

    from audiossl.train.config import load_config

    script = (REPO / "egs" / name / "run_cpu.sh").read_text()
    paths = re.findall(r"conf/cpu/[\w{}]+\.yaml", script)
    assert len(paths) == 4, paths
    files = [p.replace("{model}", m) for p in paths for m in (("beats", "eat") if "{model}" in p else ("",))]
    for rel in files:
        cfg = load_config(REPO / "egs" / name / rel)
        if cfg.task == "finetune":
            assert cfg.optim.max_epochs > 0 and cfg.optim.warmup_epochs > 0, rel
        elif cfg.task != "beats_tokenizer":
            o = cfg.optim
            assert (o.max_epochs > 0 and o.warmup_epochs > 0) or (o.max_updates > 0 and o.warmup_updates > 0), rel
        if cfg.task != "beats_tokenizer":
            assert cfg.data.norm_mean is None, f"{rel}: a new corpus is normalised with its own statistics"
