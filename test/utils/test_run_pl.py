"""utils/run.pl: JOB ranges, Kaldi log header/footer, failure report, bounded parallelism."""
from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

FOOTER = re.compile(r"# Accounting: time=(\d+)\n# Ended \(code (\d+)\) at (.+)\n\Z")


@pytest.fixture
def run_pl(repo_root: Path) -> str:
    return str(repo_root / "utils" / "run.pl")


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)


def test_job_range_writes_one_log_per_job_with_header_and_footer(run_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, run_pl, "JOB=1:3", "exp/log/x.JOB.log", "echo", "job", "JOB", "of", "3", "|", "tr", "a-z", "A-Z")
    assert res.returncode == 0, res.stderr
    for j in (1, 2, 3):
        text = (tmp_path / f"exp/log/x.{j}.log").read_text()
        lines = text.splitlines()
        assert lines[0] == f"# echo job {j} of 3 | tr a-z A-Z"
        assert lines[1].startswith("# Started at ")
        assert lines[2] == f"JOB {j} OF 3"
        m = FOOTER.search(text)
        assert m and m.group(2) == "0", text
    assert not (tmp_path / "exp/log/x.4.log").exists()


def test_single_command_and_words_with_spaces_stay_one_argument(run_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, run_pl, "log/one.log", "printf", "=%s=", "a b", "it is", "&&", "echo")
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "log/one.log").read_text().splitlines()
    assert lines[2] == "=a b==it is="


def test_failures_are_counted_and_the_exit_code_is_1(run_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, run_pl, "JOB=1:4", "log/f.JOB.log", "bash", "-c", "exit $((JOB % 2 * 3))")
    assert res.returncode == 1
    assert "run.pl: 2 / 4 failed, log is in log/f.*.log" in res.stderr
    assert "log/f.1.log (code 3)" in res.stderr and "log/f.3.log (code 3)" in res.stderr
    assert "log/f.2.log" not in res.stderr
    codes = {j: FOOTER.search((tmp_path / f"log/f.{j}.log").read_text()).group(2) for j in (1, 2, 3, 4)}
    assert codes == {1: "3", 2: "0", 3: "3", 4: "0"}


def test_pipeline_failure_counts(run_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, run_pl, "log/p.log", "false", "|", "cat")
    assert res.returncode == 1
    assert FOOTER.search((tmp_path / "log/p.log").read_text()).group(2) == "1"


def test_max_jobs_run_bounds_the_jobs_running_at_once(run_pl: str, tmp_path: Path) -> None:
    events = tmp_path / "events"
    res = run(tmp_path, run_pl, "--max-jobs-run", "2", "JOB=1:5", "log/m.JOB.log",
              "bash", "-c", f"echo start >> {events}; sleep 0.2; echo end >> {events}")
    assert res.returncode == 0, res.stderr
    running = peak = 0
    for event in events.read_text().split():
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert events.read_text().split().count("start") == 5
    assert peak <= 2


def test_jobs_run_in_parallel_up_to_max_jobs_run(run_pl: str, tmp_path: Path) -> None:
    # Each job waits (up to 20 s) until all three have started: only true parallelism passes.
    barrier = (f"touch {tmp_path}/started.JOB; for i in $(seq 200); do "
               f"[ $(ls {tmp_path} | grep -c started) -ge 3 ] && exit 0; sleep 0.1; done; exit 1")
    res = run(tmp_path, run_pl, "--max-jobs-run", "3", "JOB=1:3", "log/b.JOB.log", "bash", "-c", barrier)
    assert res.returncode == 0, res.stderr


def test_queue_options_are_accepted_and_ignored(run_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, run_pl, "--gpu", "1", "--mem", "8G", "--num-threads", "4", "--time", "1:00:00",
              "--requeue", "true", "JOB=2:3", "log/g.JOB.log", "echo", "JOB")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "log/g.3.log").read_text().splitlines()[2] == "3"
    assert not (tmp_path / "log/g.1.log").exists()


def test_term_stops_the_running_jobs(run_pl: str, tmp_path: Path) -> None:
    proc = subprocess.Popen([run_pl, "JOB=1:2", "log/t.JOB.log", "bash", "-c", "touch started.JOB; sleep 300"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ((tmp_path / "started.1").exists() and (tmp_path / "started.2").exists()):
            assert time.monotonic() < deadline, "jobs did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "interrupted" in err and "2 / 2 failed" in err
    for j in (1, 2):
        assert FOOTER.search((tmp_path / f"log/t.{j}.log").read_text()).group(2) == "143"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "expected a log file and a command"),
        (["JOB=1:3", "log/x.log", "echo"], "must contain JOB"),
        (["JOB=3:1", "log/x.JOB.log", "echo"], "empty job range"),
        (["--max-jobs-run", "0", "log/x.log", "echo"], "positive integer"),
    ],
)
def test_bad_usage(run_pl: str, tmp_path: Path, args: list[str], message: str) -> None:
    res = run(tmp_path, run_pl, *args)
    assert res.returncode == 1
    assert message in res.stderr
    assert "Usage: run.pl" in res.stderr and "e.g.:" in res.stderr
    assert not (tmp_path / "log").exists()
