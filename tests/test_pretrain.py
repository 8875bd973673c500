import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from augment import augment
from data import ClipDataset, fraction_subset, headcam_items
from mask import make_mask, patchify
from checkpoints import load_checkpoint, load_model
from runs import RunLog, save_checkpoint
from training import StepSampler, learning_rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, check=True, cwd=ROOT):
    """pretrain.py (or torchrun) in a fresh process, as a user runs it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


def toy_args(world, out, *extra):
    return ["pretrain.py", "--setting", "toy", "--data_root", str(world), "--out", str(out), "--workers", "0",
            "--log_every", "1", "--save_every", "1", "--figure_every", "1000", "--batch_videos", "2", "--repeats", "2",
            *extra]


def weights(path):
    return load_checkpoint(path)["model"]


def losses(folder):
    return [json.loads(line) for line in open(os.path.join(folder, "log.jsonl"))]


@pytest.mark.slow                       # pretrains the session's tiny MAE (about 4 minutes)
def test_the_pretrained_mae_beats_the_best_constant_predictor_on_held_out_clips(tiny_mae, toy_world):
    """Masked-token loss on held-out clips at most 0.6x that of the per-position mean of the training clips."""
    videos = headcam_items(toy_world[0] / "saycam", "S")
    train, held_out = fraction_subset(videos, 0.8), videos.select(np.arange(round(0.8 * len(videos)), len(videos)))
    view = lambda items: augment(torch.cat([ClipDataset(items, train=True, size=64)[(i, seed)][0]      # 4 clips each
                                            for i in range(len(items)) for seed in range(4)]),
                                 train=False, img_size=64, eval_crop=1.0)
    mean_clip = view(train).mean(0, keepdim=True)                          # (1, 3, T, H, W): the best constant
    model = load_model(str(tiny_mae / "checkpoint.pt")).eval()
    clips = view(held_out)
    mask = make_mask("random", len(clips), model.cfg.grid, 0.9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mae_loss, _, hidden = model(clips, ids_keep=mask.ids_keep, ids_restore=mask.ids_restore)
    target, constant = patchify(clips, 2, 16), patchify(mean_clip.expand_as(clips), 2, 16)
    constant_loss = ((constant - target) ** 2).mean(-1)[hidden.bool()].mean()
    assert mae_loss < 0.6 * constant_loss, (mae_loss.item(), constant_loss.item())
    for name in ("reconstruction.png", "loss.png", "log.jsonl"):
        assert (tiny_mae / name).stat().st_size > 100


def test_the_step_sampler_splits_each_global_batch_across_processes_without_repeats():
    one = StepSampler(10, 4, seed=3)
    ranks = [StepSampler(10, 2, rank=r, world=2, seed=3) for r in range(2)]
    take = lambda sampler, n: [next(it) for it in [iter(sampler)] for _ in range(n)]
    stream = take(one, 12)                                                  # 3 global batches of 4
    per_rank = [take(s, 6) for s in ranks]
    for step in range(3):                                                   # rank r: its half of each batch
        assert stream[4 * step:4 * step + 4] == per_rank[0][2 * step:2 * step + 2] + per_rank[1][2 * step:2 * step + 2]
    assert sorted(i for i, _ in stream[:10]) == list(range(10))             # one epoch: every item once
    assert take(StepSampler(10, 4, seed=3, start_step=2), 4) == stream[8:12]  # resuming skips, no decoding


def test_learning_rate_schedules():
    assert learning_rate(0, 1e-4) == learning_rate(10 ** 6, 1e-4) == 1e-4  # the paper's: constant
    cosine = [learning_rate(s, 1.0, "cosine", 10, 110, 0.1) for s in range(110)]
    assert cosine[0] == pytest.approx(0.1) and cosine[9] == pytest.approx(1.0)
    assert cosine[10] == pytest.approx(1.0) and cosine[60] == pytest.approx(0.55) and cosine[-1] > 0.1
    assert all(a >= b for a, b in zip(cosine[10:], cosine[11:]))


def test_checkpoints_are_written_atomically(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(str(path), {"step": 1})
    real_save = torch.save

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt
    torch.save = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(str(path), {"step": 2})
    finally:
        torch.save = real_save
    assert load_checkpoint(str(path))["step"] == 1                          # the old one, whole


def test_the_log_is_strict_json_and_a_resume_keeps_its_good_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    log = RunLog(str(path))
    for step, loss in ((1, 0.5), (2, float("nan")), (3, 0.25)):
        log.write(step=step, loss=loss, grad_norm=float("inf"))
    assert [json.loads(line)["loss"] for line in path.read_text().splitlines()] == [0.5, None, 0.25]   # no bare NaN
    path.write_text(path.read_text() + '{"step": 4, "lo')                        # a line cut short by a kill
    assert [r["step"] for r in RunLog(str(path), resume_step=3).records()] == [1, 2, 3]
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_weights(toy_world, tmp_path):
    steps = ["--steps", "8"]
    run(*toy_args(toy_world[0], tmp_path / "straight", *steps))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    victim = subprocess.Popen([sys.executable, *toy_args(toy_world[0], tmp_path / "killed", *steps)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = load_checkpoint(str(tmp_path / "killed" / "checkpoint.pt"))["step"]
    assert 1 <= killed_at < 8                                               # killed mid-run
    run(*toy_args(toy_world[0], tmp_path / "killed", *steps, "--resume", "auto"))
    a, b = weights(tmp_path / "straight" / "checkpoint.pt"), weights(tmp_path / "killed" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in losses(tmp_path / "straight")] == [r["loss"] for r in losses(tmp_path / "killed")]


def test_a_run_stopped_at_a_step_and_resumed_is_the_uninterrupted_run(toy_world, tmp_path):
    steps = ["--steps", "8"]
    run(*toy_args(toy_world[0], tmp_path / "straight", *steps))
    run(*toy_args(toy_world[0], tmp_path / "pieces", *steps, "--stop_at", "5"))
    first = load_checkpoint(str(tmp_path / "pieces" / "checkpoint.pt"))
    assert first["step"] == 5 and first["seconds"] > 0                     # seconds of training, for the record
    run(*toy_args(toy_world[0], tmp_path / "pieces", *steps, "--resume", "auto"))
    a, b = weights(tmp_path / "straight" / "checkpoint.pt"), weights(tmp_path / "pieces" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)                          # the schedule was the 8 steps' all along
    assert load_checkpoint(str(tmp_path / "pieces" / "checkpoint.pt"))["seconds"] > first["seconds"]


@pytest.mark.slow
@pytest.mark.parametrize("accum", ["1", "2"])             # 2: DDP's no_sync between micro-batches
def test_two_gloo_processes_make_the_update_of_one_process_on_both_batches(accum, toy_world, tmp_path):
    steps = ["--steps", "3", "--clip_grad", "100", "--accum", accum]
    run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        *toy_args(toy_world[0], tmp_path / "two", *steps, "--batch_videos", "1"))
    run(*toy_args(toy_world[0], tmp_path / "one", *steps, "--batch_videos", "2"))
    a, b = weights(tmp_path / "two" / "checkpoint.pt"), weights(tmp_path / "one" / "checkpoint.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    for x, y in zip(two, one):                 # the same loss, and the same gradient (its norm, before clipping)
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-3)


@pytest.mark.parametrize("flags, message", [
    (["--data", "nonsense"], "--data 'nonsense'"),
    (["--data", "EMPTY"], "no files found"),
    (["--resume", "missing.pt"], "no checkpoint at missing.pt"),
    (["--init", "README.md"], "cannot read checkpoint README.md"),      # a file, but not a checkpoint
    (["--setting", "toy,nope"], "--setting 'nope'"),
    (["--decoder_heads", "3"], "decoder heads 3"),                       # 64 wide: 3 heads do not divide it
])
def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(flags, message, toy_world, tmp_path):
    (tmp_path / "empty").mkdir()
    flags = [str(tmp_path / "empty") if f == "EMPTY" else f for f in flags]
    result = run(*toy_args(toy_world[0], tmp_path / "out"), *flags, "--steps", "1", check=False)
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1], result.stderr


def test_the_decoder_heads_flag_reaches_the_checkpoint_and_a_resume_or_init_must_match_it(toy_world, tmp_path):
    run(*toy_args(toy_world[0], tmp_path / "out", "--steps", "1", "--decoder_heads", "2"))
    model = load_model(str(tmp_path / "out" / "checkpoint.pt"))
    assert model.cfg.decoder_heads == 2 and model.decoder_blocks[0].attn.heads == 2
    # the same weights' shapes with the toy preset's 1 head: without the check they would load and mean something else
    refused_init = ["--init", str(tmp_path / "out" / "checkpoint.pt"), "--out", str(tmp_path / "b")]
    for flags in (["--resume", "auto"], refused_init):
        result = run(*toy_args(toy_world[0], tmp_path / "out", "--steps", "2"), *flags, check=False)
        assert result.returncode != 0 and "decoder_heads 2 (this run: 1)" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "b").exists()                                   # nothing written for a refused --init


def test_init_continues_the_authors_released_mae_and_refuses_a_classifier(toy_world, tmp_path):
    from model import MaskedAutoencoder, VideoClassifier, make_config
    from helpers import released_format
    torch.manual_seed(1)                                                  # the run's own init draws with seed 0
    mae = MaskedAutoencoder(make_config("toy", decoder_heads=16))         # the decoder heads a released file implies
    torch.save({"model": released_format(mae.state_dict()), "epoch": 7}, tmp_path / "released_mae.pth")
    run(*toy_args(toy_world[0], tmp_path / "out", "--steps", "1", "--decoder_heads", "16",
                  "--init", str(tmp_path / "released_mae.pth")))
    after = weights(tmp_path / "out" / "checkpoint.pt")
    # one AdamW step moves each weight by at most about the lr (3e-3, and warmed up: 3e-5): it started from the file
    assert all((after[k] - v).abs().max() <= 1e-3 for k, v in mae.state_dict().items())

    clf = VideoClassifier(make_config("toy", num_classes=3))
    torch.save({"model": released_format(clf.state_dict())}, tmp_path / "released_clf.pth")
    refused = ["--steps", "1", "--init", str(tmp_path / "released_clf.pth")]
    result = run(*toy_args(toy_world[0], tmp_path / "clf", *refused), check=False)
    assert result.returncode != 0 and "cannot be loaded as an MAE" in result.stderr.strip().splitlines()[-1]


def test_a_diverging_loss_stops_the_run_without_a_poisoned_checkpoint(toy_world, tmp_path):
    result = run(*toy_args(toy_world[0], tmp_path / "out", "--steps", "20", "--lr", "1e30", "--clip_grad", "1e30",
                           "--warmup_steps", "0"), check=False)
    assert result.returncode != 0 and "stopping without saving" in result.stderr
    saved = tmp_path / "out" / "checkpoint.pt"
    if saved.exists():
        state = load_checkpoint(str(saved))
        assert state["step"] < 20 and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.slow                       # several runs of pretrain.py in fresh processes
def test_a_non_finite_gradient_stops_the_run_and_names_a_good_checkpoint(toy_world, tmp_path):
    """A step whose loss is finite but whose gradient is not: the run stops before it writes the ruined weights, and
    names the checkpoint that is still good."""
    run(*toy_args(toy_world[0], tmp_path / "out", "--steps", "2", "--save_every", "2"))
    result = run(*toy_args(toy_world[0], tmp_path / "out", "--steps", "12", "--save_every", "2", "--lr", "1e6",
                           "--resume", "auto"), check=False)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "not finite" in last and "stopping without saving" in last, result.stderr
    named = last.rsplit("the last good checkpoint is ", 1)[1]
    assert named == str(tmp_path / "out" / "checkpoint.pt")
    state = load_checkpoint(named)
    assert state["step"] >= 2 and all(torch.isfinite(v).all() for v in state["model"].values())
    run(*toy_args(toy_world[0], tmp_path / "out", "--steps", str(state["step"] + 1), "--resume", "auto"))  # resumable


@pytest.mark.slow                       # several runs of pretrain.py in fresh processes
def test_a_folder_holding_a_run_is_refused_without_resume_and_kept_whole(toy_world, tmp_path):
    out = tmp_path / "out"
    run(*toy_args(toy_world[0], out, "--steps", "2"))
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "log.jsonl")}
    result = run(*toy_args(toy_world[0], out, "--steps", "2"), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and str(out) in lines[0], result.stderr
    assert "--resume auto" in lines[0] and "another --out" in lines[0]
    assert {name: (out / name).read_bytes() for name in before} == before          # nothing touched
    (out / "checkpoint.pt.tmp999999999").write_bytes(b"half a checkpoint")       # left by a killed process
    run(*toy_args(toy_world[0], out, "--steps", "3", "--resume", "auto"))
    assert load_checkpoint(str(out / "checkpoint.pt"))["step"] == 3
    assert not (out / "checkpoint.pt.tmp999999999").exists()
    run(*toy_args(toy_world[0], out, "--steps", "1", "--overwrite"))              # said to replace it
    assert load_checkpoint(str(out / "checkpoint.pt"))["step"] == 1 and len(losses(out)) == 1


@pytest.mark.slow                       # several runs of pretrain.py in fresh processes
def test_unreadable_files_are_skipped_wherever_they_sort_and_counted(toy_world, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "0_broken.mp4").write_bytes(b"not a video")                         # sorts first: the figure's clip
    for path in sorted((toy_world[0] / "saycam" / "S").rglob("*.mp4"))[:3]:
        (videos / path.name).write_bytes(path.read_bytes())
    result = run(*toy_args(toy_world[0], tmp_path / "out", "--steps", "4", "--data", str(videos)))
    assert "skipped 1 unreadable file" in result.stdout
    assert losses(tmp_path / "out")[-1]["unreadable_files"] == 1
    for path in videos.glob("*.mp4"):
        path.write_bytes(b"not a video either")
    result = run(*toy_args(toy_world[0], tmp_path / "none", "--steps", "2", "--data", str(videos)), check=False)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and str(videos) in last and "readable" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.slow                       # several runs of pretrain.py in fresh processes
def test_the_cards_command_finds_the_headcam_data_in_its_default_place(toy_world, tmp_path):
    """`pretrain.py --data S` with no --data_root reads data/saycam (from where it runs), or names that place."""
    small = [os.path.join(ROOT, "pretrain.py"), "--data", "S", "--preset", "toy", "--img_size", "64", "--canvas", "64",
             "--batch_videos", "2", "--repeats", "2", "--steps", "1", "--workers", "0", "--out", "run"]
    result = run(*small, check=False, cwd=tmp_path)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and os.path.join("data", "saycam") in last and "--data_root" in last, result.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "saycam").symlink_to(toy_world[0] / "saycam")
    run(*small, cwd=tmp_path)
    assert load_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))["config"]["data"] == "S"
