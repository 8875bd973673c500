"""Runs that survive what clusters do to them: SIGTERM before a preemption and Ctrl-C stop a run after its step with a
checkpoint that resumes exactly; one run holds a folder at a time; --max_minutes stops before a step would cross
the limit; a full disk during a save is one line; a resume with other run-defining flags is refused."""
import os
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoints import load_checkpoint
from runs import hold_folder, release_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1")
MAE = os.path.join(ROOT, "assets", "toy_mae_S.pt")


def pretrain_args(world, out, *extra):
    return ["pretrain.py", "--setting", "toy", "--data_root", str(world), "--out", str(out), "--workers", "0",
            "--log_every", "1", "--save_every", "1000", "--figure_every", "1000", "--batch_videos", "2",
            "--repeats", "2", *extra]


def finetune_args(world, out, *extra):
    return ["finetune.py", "--setting", "toy", "--world", str(world), "--task", "ssv2", "--shots", "10",
            "--select_shots", "0", "--init", MAE, "--out", str(out), *extra]


def run(args, check=True, **kw):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


def start(args):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, what):
    """Poll until condition() holds; fail (instead of waiting forever) if the process ends first."""
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.stderr.read()[-2000:]}")
        time.sleep(0.05)


def log_lines(folder):
    path = os.path.join(folder, "log.jsonl")
    return len(open(path).read().splitlines()) if os.path.exists(path) else 0


def weights(path):
    return load_checkpoint(str(path))["model"]


def same_weights(a, b):
    a, b = weights(a), weights(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow                       # three pretraining runs of 60 steps in fresh processes
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_stops_pretraining_after_its_step_with_a_checkpoint_that_resumes_exactly(sig, toy_world, tmp_path):
    world, steps = toy_world[0], ["--steps", "60"]
    victim = start(pretrain_args(world, tmp_path / "stopped", *steps))
    wait_for(lambda: log_lines(tmp_path / "stopped") >= 3, victim, "its third step")
    victim.send_signal(sig)
    out, err = victim.communicate(timeout=300)
    assert victim.returncode == 128 + sig and "Traceback" not in err                 # 143 or 130, as shells say
    stopped_at = load_checkpoint(str(tmp_path / "stopped" / "checkpoint.pt"))["step"]
    assert 3 <= stopped_at < 60 and log_lines(tmp_path / "stopped") == stopped_at   # the step it was in finished
    assert f"stopped at step {stopped_at} of 60" in out.strip().splitlines()[-1] and "--resume auto" in out
    resumed = run(pretrain_args(world, tmp_path / "stopped", *steps, "--resume", "auto"))
    assert "--resume auto: continuing" in resumed.stdout
    run(pretrain_args(world, tmp_path / "straight", *steps))
    assert same_weights(tmp_path / "straight" / "checkpoint.pt", tmp_path / "stopped" / "checkpoint.pt")
    # a resume says where it starts; one that would stop before its checkpoint's step is one line
    fresh = run(pretrain_args(world, tmp_path / "fresh", "--steps", "1", "--resume", "auto"))
    assert f"--resume auto: no checkpoint in {tmp_path / 'fresh'}, starting at step 0" in fresh.stdout
    late = run(pretrain_args(world, tmp_path / "stopped", *steps, "--resume", "auto", "--stop_at", "2"), check=False)
    assert late.returncode != 0 and "--stop_at 2" in late.stderr.strip().splitlines()[-1]
    other = run(pretrain_args(world, tmp_path / "stopped", *steps, "--resume", "auto", "--mask_ratio", "0.5"),
                check=False)                                                # another run: refused, named
    assert other.returncode != 0 and "--mask_ratio 0.75 (this run: 0.5)" in other.stderr.strip().splitlines()[-1]


def test_sigterm_to_every_process_of_the_job_ends_the_workers_and_the_run_still_saves(toy_world, tmp_path):
    """Clusters signal every process of a job, the loader's workers included: the run still stops with a checkpoint
    of a whole step, and its exit does not wait for workers that are gone. (And one run holds its folder.)"""
    out = tmp_path / "out"
    victim = subprocess.Popen([sys.executable, *pretrain_args(toy_world[0], out, "--steps", "400", "--workers", "2")],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)                     # its own process group, as a job's
    wait_for(lambda: log_lines(out) >= 3, victim, "its third step")
    # while it runs, a second run into its folder is refused, naming the folder and the process that holds it
    second = run(pretrain_args(toy_world[0], out, "--steps", "400", "--resume", "auto"), check=False)
    line = second.stderr.strip().splitlines()[-1]
    assert second.returncode != 0 and str(out) in line and str(victim.pid) in line, second.stderr
    os.killpg(victim.pid, signal.SIGTERM)
    stdout, stderr = victim.communicate(timeout=120)
    assert victim.returncode == 143 and "Traceback" not in stderr, stderr[-2000:]
    step = load_checkpoint(str(out / "checkpoint.pt"))["step"]
    assert 3 <= step < 400 and log_lines(out) == step and f"stopped at step {step}" in stdout


@pytest.mark.slow                       # two finetunings of 80 steps
def test_sigterm_stops_finetuning_mid_epoch_and_the_resumed_run_is_the_straight_one(toy_world, tmp_path):
    world, epochs = toy_world[0], ["--epochs", "20", "--seed", "1"]
    victim = start(finetune_args(world, tmp_path / "stopped", *epochs))
    wait_for(lambda: os.path.exists(tmp_path / "stopped" / "checkpoint.pt"), victim, "its first epoch")
    victim.send_signal(signal.SIGTERM)
    out, err = victim.communicate(timeout=300)
    assert victim.returncode == 143 and "Traceback" not in err, err[-2000:]
    state = load_checkpoint(str(tmp_path / "stopped" / "checkpoint.pt"))
    total = int(out.split("steps 0..")[1].split(";")[0])
    assert 0 < state["step"] < total and f"stopped at step {state['step']} of {total}" in out
    assert not os.path.exists(tmp_path / "stopped" / "results.json")                # not scored: not finished
    run(finetune_args(world, tmp_path / "stopped", *epochs, "--resume", "auto"))
    run(finetune_args(world, tmp_path / "straight", *epochs))
    assert same_weights(tmp_path / "straight" / "checkpoint.pt", tmp_path / "stopped" / "checkpoint.pt")
    assert same_weights(tmp_path / "straight" / "best.pt", tmp_path / "stopped" / "best.pt")


HOLDER = "import sys, time; from runs import hold_folder; hold_folder(sys.argv[1]); print('held', flush=True); " \
         "time.sleep(300)"


@pytest.mark.parametrize("script", ["pretrain", "finetune", "interpolate", "eval_ood"])
def test_a_folder_another_process_holds_is_refused_in_one_line_naming_it(script, toy_world, tmp_path, capsys):
    import importlib
    world, out = str(toy_world[0]), tmp_path / "held"
    flags = {"pretrain": pretrain_args(world, out, "--steps", "1")[1:],
             "finetune": finetune_args(world, out, "--epochs", "1")[1:],
             "interpolate": ["--setting", "toy", "--ckpt", MAE, "--world", world, "--child", "A", "--clips", "2",
                             "--out", str(out)],
             "eval_ood": ["--setting", "toy", "--data_root", f"{world}/ood", "--ckpt", MAE, "--out", str(out)]}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        module = importlib.import_module(script)
        with pytest.raises(SystemExit) as stopped:
            module.main(module.parse_args(flags[script]))
        lines = capsys.readouterr().err.strip().splitlines()
        assert stopped.value.code not in (0, None)
        assert str(out) in lines[-1] and f"in use by process {holder.pid}" in lines[-1], lines
    finally:
        holder.kill()
        holder.wait()
    hold_folder(out)                                        # the lock died with its process: the folder is free
    release_folder(out)


def test_the_lock_is_the_operating_system_s_and_dies_with_a_killed_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    taken = run(["-c", "import sys; from runs import hold_folder; hold_folder(sys.argv[1])", str(tmp_path)],
                check=False)
    assert taken.returncode != 0 and f"in use by process {holder.pid}" in taken.stderr
    holder.send_signal(signal.SIGKILL)                      # no chance to clean up
    holder.wait()
    run(["-c", "import sys; from runs import hold_folder; hold_folder(sys.argv[1])", str(tmp_path)])


def test_max_minutes_stops_before_a_step_would_cross_the_limit(toy_world, tmp_path):
    # a limit of 6 ms: the setup alone passes it, so the run stops after its first step, with a checkpoint
    result = run(pretrain_args(toy_world[0], tmp_path / "out", "--steps", "50", "--max_minutes", "0.0001"))
    assert load_checkpoint(str(tmp_path / "out" / "checkpoint.pt"))["step"] == 1
    assert "done: step 1" in result.stdout


def small_files(limit):
    """For a child process: files may not grow past `limit` bytes, and a write past it fails with EFBIG instead of
    killing the process (SIGXFSZ): a full disk, as far as the checkpoint's writer can tell."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous_checkpoint(toy_world, tmp_path):
    out = tmp_path / "out"
    run(pretrain_args(toy_world[0], out, "--steps", "4", "--stop_at", "2"))
    before = (out / "checkpoint.pt").read_bytes()
    result = run(pretrain_args(toy_world[0], out, "--steps", "4", "--resume", "auto"), check=False,
                 preexec_fn=small_files(1_000_000))                     # a checkpoint is ~14 MB, the log far less
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"cannot write {out / 'checkpoint.pt'}" in last
    assert f"the last good checkpoint is {out / 'checkpoint.pt'}" in last
    assert (out / "checkpoint.pt").read_bytes() == before                  # the previous checkpoint, untouched
    assert not [name for name in os.listdir(out) if ".tmp" in name]        # and no half-written file beside it


@pytest.fixture(scope="module")
def finetuned(toy_world, tmp_path_factory):
    """A finished finetuning run (one epoch from scratch) to resume with other flags."""
    out = tmp_path_factory.mktemp("finetuned")
    run(["finetune.py", "--setting", "toy", "--world", str(toy_world[0]), "--task", "ssv2", "--shots", "10",
         "--select_shots", "0", "--epochs", "1", "--out", str(out)])
    return out


@pytest.mark.parametrize("changed, named", [
    (["--shots", "20"], "--shots 10 (this run: 20)"),
    (["--lr", "0.01"], "--lr 0.001 (this run: 0.01)"),
    (["--epochs", "2"], "--epochs 1.0 (this run: 2.0)"),
    (["--preset", "small_patch16"], "--preset toy (this run: small_patch16)"),     # not a size-mismatch traceback
    (["--img_size", "32"], "--img_size 64 (this run: 32)"),
])
def test_a_finetuning_resume_with_other_run_defining_flags_is_refused(changed, named, finetuned, toy_world, capsys):
    import finetune
    flags = ["--setting", "toy", "--world", str(toy_world[0]), "--task", "ssv2", "--shots", "10", "--select_shots",
             "0", "--epochs", "1", "--out", str(finetuned), "--resume", "auto"]
    with pytest.raises(SystemExit) as stopped:
        finetune.main(finetune.parse_args(flags + changed))
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code not in (0, None) and named in lines[-1] and "Traceback" not in "\n".join(lines)
    finetune.main(finetune.parse_args(flags + ["--workers", "0", "--eval_batch", "7"]))   # these may change


def test_an_explicit_flag_beats_the_setting_also_where_the_setting_set_a_related_one():
    import pretrain
    assert pretrain.parse_args(["--setting", "toy"]).steps == 1800                  # the setting's length
    by_epochs = pretrain.parse_args(["--setting", "toy", "--epochs", "1"])
    assert by_epochs.steps is None and by_epochs.epochs == 1                       # --epochs 1 is one epoch
    assert pretrain.parse_args(["--setting", "toy", "--epochs", "1", "--steps", "5"]).steps == 5
