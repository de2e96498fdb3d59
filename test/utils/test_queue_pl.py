"""utils/queue.pl: option -> sbatch flag mapping (dry runs), then real jobs on the test Slurm
cluster: array jobs and their logs, failures, srun with --num-tasks, requeue on exit code 75 (also
after a USR1 sent to the job), tasks that vanish, and scancel when queue.pl is stopped."""
from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

FOOTER = re.compile(r"# Accounting: time=(\d+)\n# Ended \(code (\d+)\) at (.+)\n\Z")


@pytest.fixture
def queue_pl(repo_root: Path) -> str:
    return str(repo_root / "utils" / "queue.pl")


def run(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def dry_run(queue_pl: str, cwd: Path, *args: str) -> list[str]:
    res = run(cwd, queue_pl, "--dry-run", "true", *args)
    assert res.returncode == 0, res.stderr
    return shlex.split(res.stdout)


# ---------------------------------------------------------------- option mapping (no Slurm needed)
def test_generic_options_map_to_sbatch_flags(queue_pl: str, tmp_path: Path) -> None:
    words = dry_run(queue_pl, tmp_path, "--gpu", "2", "--mem", "8G", "--num-threads", "4", "--time", "1:00:00",
                    "--num-tasks", "2", "--partition", "gpu", "--max-jobs-run", "3",
                    "JOB=1:5", "exp/log/x.JOB.log", "echo", "JOB")
    assert words[:2] == ["sbatch", "--export=PATH"]
    for flag in ("--gres=gpu:2", "--mem=8G", "--cpus-per-task=4", "--time=1:00:00", "--ntasks=2",
                 "--partition=gpu", "--array=1-5%3", "--parsable", f"--chdir={tmp_path}"):
        assert flag in words, (flag, words)
    script = tmp_path / "exp/log/q/x.log.sh"
    assert words[-1] == str(script)
    assert script.is_file() and "echo JOB" in script.read_text()


def test_zero_gpus_and_zero_memory_add_no_flags(queue_pl: str, tmp_path: Path) -> None:
    for args in ([], ["--gpu", "0"], ["--gpu", "0", "--mem", "0"]):
        words = dry_run(queue_pl, tmp_path, *args, "log/y.log", "true")
        assert not [w for w in words if w.startswith(("--gres", "--mem", "--array"))], words
        assert words[-1] == str(tmp_path / "log/q/y.log.sh")


def test_job_in_the_working_dir_is_left_alone(queue_pl: str, tmp_path: Path) -> None:
    cwd = tmp_path / "JOBS"
    cwd.mkdir()
    words = dry_run(queue_pl, cwd, "JOB=1:2", "JOB.log", "echo", "JOB")
    script = cwd / "q/log.sh"
    assert words[-1] == str(script) and f"--chdir={cwd}" in words
    text = script.read_text()
    assert f"cd '{cwd}'" in text and "log='JOB.log'" in text


def test_unknown_option_names_the_config(queue_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, queue_pl, "--dry-run", "true", "--account", "proj", "log/y.log", "true")
    assert res.returncode == 1
    assert "--account is not in the built-in config" in res.stderr
    assert "option account=*" in res.stderr


def test_conf_slurm_conf_in_the_working_dir_is_the_default(queue_pl: str, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/slurm.conf").write_text(
        "# site config\ncommand sbatch --export=ALL\noption account=* --account=$0\n"
        "option gpu=* --partition=gpu --gres=gpu:$0\noption gpu=0 --partition=cpu\ndefault gpu=0\n"
    )
    words = dry_run(queue_pl, tmp_path, "--account", "proj", "log/y.log", "true")
    assert words[:2] == ["sbatch", "--export=ALL"]
    assert "--account=proj" in words and "--partition=cpu" in words
    words = dry_run(queue_pl, tmp_path, "--gpu", "1", "log/y.log", "true")
    assert "--gres=gpu:1" in words and "--partition=gpu" in words
    res = run(tmp_path, queue_pl, "--dry-run", "true", "--mem", "2G", "log/y.log", "true")
    assert res.returncode == 1 and "--mem is not in conf/slurm.conf" in res.stderr


def test_built_in_config_equals_the_template_slurm_conf(queue_pl: str, repo_root: Path, tmp_path: Path) -> None:
    def directives(text: str) -> list[str]:
        return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]

    source = Path(queue_pl).read_text()
    built_in = source.split("my $default_config = <<'EOF';\n", 1)[1].split("\nEOF\n", 1)[0]
    template = repo_root / "egs/TEMPLATE/conf/slurm.conf"
    assert directives(built_in) == directives(template.read_text())
    # and both give the same sbatch command lines
    for args in (["--gpu", "1", "--mem", "4G"], ["--num-threads", "2", "--time", "10", "--num-tasks", "2"], []):
        plain = dry_run(queue_pl, tmp_path, *args, "log/z.log", "true")
        configured = dry_run(queue_pl, tmp_path, "--config", str(template), *args, "log/z.log", "true")
        assert plain == configured


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "expected a log file and a command"),
        (["JOB=1:2", "log/x.log", "echo"], "must contain JOB"),
        (["--requeue", "yes", "log/x.log", "echo"], "--requeue is a boolean"),
        (["--max-jobs-run", "-1", "log/x.log", "echo"], "positive integer"),
        (["--config", "/nonexistent/slurm.conf", "log/x.log", "echo"], "cannot read config"),
    ],
)
def test_bad_usage(queue_pl: str, tmp_path: Path, args: list[str], message: str) -> None:
    res = run(tmp_path, queue_pl, *args)
    assert res.returncode == 1
    assert message in res.stderr
    assert not (tmp_path / "log").exists()


def test_bad_config_line_names_file_and_line(queue_pl: str, tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("command sbatch\noptoin mem=* --mem=$0\n")
    res = run(tmp_path, queue_pl, "--config", str(conf), "log/x.log", "echo")
    assert res.returncode == 1
    assert f"{conf}:2: cannot parse 'optoin mem=* --mem=$0'" in res.stderr


# ---------------------------------------------------------------- real jobs
def test_array_job_writes_every_log(slurm_cluster, queue_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, queue_pl, "JOB=1:3", "log/x.JOB.log", "echo", "JOB")
    assert res.returncode == 0, res.stderr
    for j in (1, 2, 3):
        text = (tmp_path / f"log/x.{j}.log").read_text()
        lines = text.splitlines()
        assert lines[0] == f"# echo {j}"
        assert lines[1].startswith("# Started at ")
        assert re.fullmatch(rf"# Running on {slurm_cluster.node} as Slurm job \d+ \(array \d+_{j}\)", lines[2]), lines[2]
        assert lines[3] == str(j)
        m = FOOTER.search(text)
        assert m and m.group(2) == "0", text
        assert (tmp_path / f"log/q/done.x.log.{j}").read_text().strip() == "0"


def test_failed_task_gives_nonzero_exit_and_is_named(slurm_cluster, queue_pl: str, tmp_path: Path) -> None:
    # logs under a per-job directory: the job script goes to parts/q/
    res = run(tmp_path, queue_pl, "JOB=1:2", "parts/JOB/log.txt", "bash", "-c", "echo part JOB; exit $((JOB - 1))")
    assert res.returncode == 1
    assert "queue.pl: 1 / 2 failed, log is in parts/*/log.txt" in res.stderr
    assert "parts/2/log.txt (code 1)" in res.stderr and "parts/1/log.txt" not in res.stderr
    assert FOOTER.search((tmp_path / "parts/2/log.txt").read_text()).group(2) == "1"
    assert (tmp_path / "parts/q/log.txt.sh").is_file()


def test_num_tasks_runs_the_srun_command_as_two_tasks(slurm_cluster, queue_pl: str, tmp_path: Path) -> None:
    res = run(tmp_path, queue_pl, "--num-tasks", "2", "--num-threads", "1", "log/ddp.log",
              "srun", "bash", "-c", "echo rank $SLURM_PROCID of $SLURM_NTASKS")
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "log/ddp.log").read_text().splitlines()
    assert sorted(line for line in lines if line.startswith("rank")) == ["rank 0 of 2", "rank 1 of 2"]


def test_requeue_resubmits_a_task_that_exits_75(slurm_cluster, queue_pl: str, tmp_path: Path) -> None:
    # Task 1 "saves a checkpoint and stops" (exit 75) on its first run, then finishes; task 2 just works.
    cmd = "if [ JOB = 1 ] && [ ! -f ckpt.JOB ]; then touch ckpt.JOB; echo stopping; exit 75; fi; echo finished JOB"
    res = run(tmp_path, queue_pl, "--requeue", "true", "JOB=1:2", "log/r.JOB.log", "bash", "-c", cmd)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("resubmitted") == 1 and "task 1 exited with code 75" in res.stderr
    text = (tmp_path / "log/r.1.log").read_text()
    lines = text.splitlines()
    assert text.count("# Started at") == 2
    requeued = [i for i, line in enumerate(lines) if line.startswith("# queue.pl:") and "(requeue 1 of 10)" in line]
    assert len(requeued) == 1
    assert lines.index("stopping") < requeued[0] < lines.index("finished 1")
    assert re.findall(r"# Ended \(code (\d+)\)", text) == ["75", "0"]
    assert (tmp_path / "log/r.2.log").read_text().count("# Started at") == 1

    # without --requeue, 75 is a failure like any other
    (tmp_path / "ckpt.1").unlink()
    res = run(tmp_path, queue_pl, "JOB=1:1", "log/n.JOB.log", "bash", "-c", cmd)
    assert res.returncode == 1 and "log/n.1.log (code 75)" in res.stderr

    # and requeues stop after --max-requeue
    res = run(tmp_path, queue_pl, "--requeue", "true", "--max-requeue", "1", "log/a.log", "bash", "-c", "exit 75")
    assert res.returncode == 1
    assert res.stderr.count("resubmitted") == 1 and "log/a.log (code 75 again after 1 requeues" in res.stderr
    assert (tmp_path / "log/a.log").read_text().count("# Started at") == 2


def test_usr1_to_the_job_reaches_the_command_and_requeues(slurm_cluster, queue_pl: str, tmp_path: Path) -> None:
    # A trainer-like command: on USR1 it "saves" and exits 75; after the resubmission it resumes.
    cmd = ("if [ -f ckpt ]; then echo resumed; exit 0; fi; trap 'touch ckpt; echo got USR1; exit 75' USR1; "
           "touch ready; while :; do sleep 0.1; done")
    proc = subprocess.Popen([queue_pl, "--requeue", "true", "log/u.log", "bash", "-c", cmd], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "ready").exists(), what="the job to start")
        job_id = re.search(r"as Slurm job (\d+)", (tmp_path / "log/u.log").read_text()).group(1)
        subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    text = (tmp_path / "log/u.log").read_text()
    lines = text.splitlines()
    requeued = [i for i, line in enumerate(lines) if line.startswith("# queue.pl:") and "resubmitted" in line]
    assert len(requeued) == 1
    assert lines.index("got USR1") < requeued[0] < lines.index("resumed")
    assert re.findall(r"# Ended \(code (\d+)\)", text) == ["75", "0"]


def test_task_that_vanishes_without_exit_status_is_reported(slurm_cluster, queue_pl: str, tmp_path: Path) -> None:
    # Task 1 kills its own job script (as an OOM killer or a node failure would): no exit-status file.
    cmd = "if [ JOB = 1 ]; then kill -9 $PPID; sleep 5; fi; echo ok"
    res = run(tmp_path, queue_pl, "--squeue-interval", "1", "JOB=1:2", "log/v.JOB.log", "bash", "-c", cmd)
    assert res.returncode == 1
    assert "queue.pl: 1 / 2 failed, log is in log/v.*.log" in res.stderr
    assert "log/v.1.log (Slurm job" in res.stderr and "without writing its exit status" in res.stderr
    assert FOOTER.search((tmp_path / "log/v.2.log").read_text()).group(2) == "0"


def test_term_to_queue_pl_cancels_its_jobs(slurm_cluster, queue_pl: str, tmp_path: Path) -> None:
    proc = subprocess.Popen([queue_pl, "JOB=1:2", "log/t.JOB.log", "sleep", "300"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "log/t.1.log").exists() and "Running on" in (tmp_path / "log/t.1.log").read_text(),
                 what="task 1 to start")
        job_id = re.search(r"\(array (\d+)_1\)", (tmp_path / "log/t.1.log").read_text()).group(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert f"cancelled Slurm job(s) {job_id}" in err

    def gone() -> bool:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", job_id], capture_output=True, text=True).stdout
        return out.strip() == ""

    wait_for(gone, timeout=30, what=f"job {job_id} to leave the queue")
