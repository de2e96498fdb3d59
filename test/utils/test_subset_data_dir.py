"""utils/subset_data_dir.sh: --first/--last/--random/spread/--utt-list, consistent files."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

UTTS = [f"u{i:02d}" for i in range(10)]


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def keys(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    write(d / "wav.scp", [f"{u} /a/{u}.wav" for u in UTTS])
    write(d / "utt2label", [f"{u} {'cat' if i % 3 else 'dog cat'}" for i, u in enumerate(UTTS)])
    write(d / "utt2dur", [f"{u} {i + 1}.0" for i, u in enumerate(UTTS)])
    write(d / "labels.txt", ["0 cat", "1 dog"])
    return d


@pytest.fixture
def subset(repo_root: Path) -> str:
    return str(repo_root / "utils" / "subset_data_dir.sh")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def check_consistent(src: Path, dest: Path, expected: list[str]) -> None:
    for name in ("wav.scp", "utt2label", "utt2dur"):
        assert keys(dest / name) == expected, name
        src_lines = dict(line.split(maxsplit=1) for line in (src / name).read_text().splitlines())
        for line in (dest / name).read_text().splitlines():
            k, v = line.split(maxsplit=1)
            assert src_lines[k] == v
    assert (dest / "labels.txt").read_text() == (src / "labels.txt").read_text()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--first"], UTTS[:3]),
        (["--last"], UTTS[-3:]),
        ([], ["u00", "u03", "u06"]),  # evenly spaced: indices 0, 10/3, 20/3
    ],
)
def test_deterministic_modes(subset: str, src: Path, tmp_path: Path, flags: list[str], expected: list[str]) -> None:
    dest = tmp_path / "dest"
    res = run(subset, *flags, str(src), "3", str(dest))
    assert res.returncode == 0, res.stderr
    assert "wrote 3 of 10 utterances" in res.stderr
    check_consistent(src, dest, expected)


def test_random_is_reproducible_and_seed_dependent(subset: str, src: Path, tmp_path: Path) -> None:
    picks = {}
    for seed in ("1", "1", "2"):
        dest = tmp_path / f"dest{len(picks)}"
        res = run(subset, "--random", "--seed", seed, str(src), "4", str(dest))
        assert res.returncode == 0, res.stderr
        chosen = keys(dest / "wav.scp")
        assert len(chosen) == 4 and chosen == sorted(chosen) and set(chosen) <= set(UTTS)
        check_consistent(src, dest, chosen)
        picks.setdefault(seed, []).append(chosen)
    assert picks["1"][0] == picks["1"][1]
    # different seeds choose differently for at least one of a few sizes
    other = []
    for seed in ("1", "2", "3"):
        dest = tmp_path / f"s{seed}"
        run(subset, "--random", "--seed", seed, str(src), "5", str(dest))
        other.append(tuple(keys(dest / "wav.scp")))
    assert len(set(other)) > 1


def test_utt_list_with_segments(subset: str, tmp_path: Path) -> None:
    s = tmp_path / "seg"
    write(s / "wav.scp", ["r1 /a/r1.wav", "r2 /a/r2.wav", "r3 /a/r3.wav"])
    write(s / "segments", ["s1 r1 0 1", "s2 r1 1 2", "s3 r2 0 1", "s4 r3 0 1"])
    write(s / "utt2label", ["s1 cat", "s2 dog", "s3 cat", "s4 dog"])
    write(s / "labels.txt", ["0 cat", "1 dog"])
    write(tmp_path / "list", ["s4 anything", "s2", "s9"])
    dest = tmp_path / "dest"
    res = run(subset, "--utt-list", str(tmp_path / "list"), str(s), str(dest))
    assert res.returncode == 0, res.stderr
    assert (dest / "segments").read_text() == "s2 r1 1 2\ns4 r3 0 1\n"
    assert (dest / "utt2label").read_text() == "s2 dog\ns4 dog\n"
    assert (dest / "wav.scp").read_text() == "r1 /a/r1.wav\nr3 /a/r3.wav\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["SRC", "3"], "Usage:"),
        (["SRC", "11", "DEST"], "fewer than the 11 asked for"),
        (["SRC", "x", "DEST"], "positive integer"),
        (["--every", "2", "SRC", "3", "DEST"], "invalid option --every"),
        (["SRC", "3", "SRC"], "same directory"),
        (["--utt-list", "NOLIST", "SRC", "DEST"], "does not exist"),
    ],
)
def test_bad_usage(subset: str, src: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(src) if a == "SRC" else str(tmp_path / "dest") if a == "DEST" else
            str(tmp_path / "nolist") if a == "NOLIST" else a for a in args]
    res = run(subset, *args)
    assert res.returncode == 1
    assert message in res.stderr
    assert not (tmp_path / "dest").exists()
