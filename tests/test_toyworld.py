import hashlib
import os

import numpy as np
import pytest
import torch

from data import ClipDataset, fraction_subset, headcam_items, kinetics_items, ssv2_items
from helpers import train_classifier, within_pair_accuracy
from toy.kinetics import KINETICS_CLASSES, MOTIONS, SCENES, kinetics_clips
from toy.world import ACTION_PAIRS, action_classes, generate, render_action
from video import video_info

LEARNABLE = 0.5         # validation accuracy it must reach in VIDEO_STEPS steps


def digest(folder):
    """Every file's bytes, by relative path."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(d, f)
            if f != "world.json":                                   # it records the generation time
                out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_every_part_loads_through_the_real_loaders(toy_world):
    out, summary = toy_world
    sizes = summary["sizes"]
    for child in "SAY":
        items = headcam_items(out / "saycam", child)
        assert len(items) == sizes["saycam"][child]
        assert list(items.paths) == sorted(items.paths)            # dated names: sorted = chronological
    assert len(headcam_items(out / "saycam", "SAY")) == sum(sizes["saycam"].values())
    train, val = ssv2_items(out / "ssv2", "train"), ssv2_items(out / "ssv2", "validation")
    assert train.classes == action_classes() and len(train.classes) == 14
    assert np.bincount(train.labels, minlength=14).min() >= 1 and len(val) == sizes["ssv2"]["validation"]
    kinetics = kinetics_items(out / "kinetics", "train")
    assert kinetics.classes == sorted(KINETICS_CLASSES) and len(kinetics) == sizes["kinetics"]["train"]
    clip, label = ClipDataset(val, train=False, size=64)[0]
    assert clip.shape == (1, 16, 64, 64, 3) and label == val.labels[0]
    assert video_info(val.paths[0]) == pytest.approx((16 / 3.75, 3.75), abs=0.05)
    for sheet in ("saycam", "ssv2", "kinetics"):
        assert (out / f"{sheet}_contact_sheet.png").stat().st_size > 1000


def test_the_smallest_scaling_subset_of_s_still_holds_several_clips(toy_world):
    out, _ = toy_world
    s = headcam_items(out / "saycam", "S")
    tiny = fraction_subset(s, 0.001)
    duration, _ = video_info(tiny.paths[0])
    assert len(tiny) == 1 and duration / (16 / 3.75) >= 3      # at least 3 disjoint 4.3 s clips


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        generate(str(tmp_path / name), seed=seed, scale=0.004, workers=2)
    a, b, c = (digest(tmp_path / n) for n in "abc")
    assert a == b and len(a) > 40
    common = set(a) & set(c)                                       # (another seed gives other class folders)
    assert len(common) > 20 and sum(a[k] != c[k] for k in common) > 0.9 * len(common)


@pytest.mark.parametrize("pair", range(len(ACTION_PAIRS)))
def test_mirror_classes_are_exact_time_reversals(pair):
    forwards, backwards = ACTION_PAIRS[pair]
    a = render_action(forwards, 3, torch.Generator().manual_seed(pair))
    b = render_action(backwards, 3, torch.Generator().manual_seed(pair))
    assert torch.equal(b, a.flip(1))                                # the same frames, in reverse order
    assert (a[:, 0] - a[:, -1]).abs().mean() > 0.01                 # and something does move


def test_objects_are_at_least_one_patch_across_and_moves_are_large():
    # on a black background the object's extent can be measured from the frames themselves
    from toy import world
    g = torch.Generator().manual_seed(0)
    saved = world.backgrounds
    world.backgrounds = lambda n, H, W, g, dim=0.0: torch.zeros(n, H, W, 3)
    try:
        clips = render_action("Moving [something] from left to right", 20, g)
    finally:
        world.backgrounds = saved
    drawn = clips.sum(-1) > 0.05                                    # (n, T, H, W)
    width = drawn.any(2).sum(-1).float()                            # columns touched, per frame
    assert width.median() >= 16                                     # a patch of the toy preset is 16 pixels
    cols = torch.arange(64).float()
    centre = (drawn.any(2) * cols).sum(-1) / drawn.any(2).sum(-1).clamp(min=1)
    assert (centre[:, -1] - centre[:, 0]).median() >= 20            # crosses a good part of the 64-pixel frame


@pytest.mark.slow
def test_the_action_set_is_learnable_from_scratch(action_models):
    video, _, labels = action_models
    accuracy = (video.argmax(1) == labels).float().mean().item()
    assert accuracy >= LEARNABLE, accuracy                          # chance is 1/14


@pytest.mark.slow
def test_actions_are_motion_defined_single_frames_cannot_split_mirror_pairs(action_models):
    video, image, labels = action_models
    classes = action_classes()
    image_pairs = within_pair_accuracy(image, labels, classes)
    video_pairs = within_pair_accuracy(video, labels, classes)
    assert 0.3 <= np.mean(image_pairs) <= 0.7, image_pairs           # a coin flip within each pair (0.46)
    assert np.mean(video_pairs) >= 0.75, video_pairs                 # the video model tells the order (0.87)
    # but a single frame does tell which *pair* a clip belongs to: the image model is far above 1/14 on pairs
    pair_of = torch.tensor([next(p for p, pair in enumerate(ACTION_PAIRS) if c in pair) for c in classes])
    image_pair_accuracy = (pair_of[image.argmax(1)] == pair_of[labels]).float().mean().item()
    assert image_pair_accuracy > 0.3, image_pair_accuracy          # chance is 1/7 (we measured 0.42)


@pytest.mark.slow
def test_kinetics_like_scene_is_in_every_frame_and_the_pair_in_the_motion():
    frames, labels = kinetics_clips(800, torch.Generator().manual_seed(1), frames=16)
    val_frames, val_labels = kinetics_clips(160, torch.Generator().manual_seed(2), frames=16)
    classes = sorted(KINETICS_CLASSES)
    scene_of = torch.tensor([SCENES.index(KINETICS_CLASSES[c][0]) for c in classes])
    motion_of = torch.tensor([MOTIONS.index(KINETICS_CLASSES[c][1]) for c in classes])
    assert np.bincount(scene_of).tolist() == [2] * 4 and np.bincount(motion_of).tolist() == [2] * 4
    logits = train_classifier(frames, labels, val_frames, steps=200, single_frames=True)
    scene_accuracy = (scene_of[logits.argmax(1)] == scene_of[val_labels]).float().mean().item()
    assert scene_accuracy > 0.8, scene_accuracy                     # one frame shows the scene (chance 1/4)
    # within a scene, what tells the two classes apart is what the objects do: still ones never change a pixel
    change = (frames[:, 1:] - frames[:, :-1]).abs().amax(dim=(1, 2, 3, 4))        # (n,)
    still = motion_of[labels] == MOTIONS.index("still")
    assert still.any() and (change[still] == 0).all() and (change[~still] > 0.1).all()


@pytest.mark.slow                       # writes a tiny world three times through the command line (about 13 s)
def test_reuse_keeps_the_same_world_and_rewrites_a_stale_one(tmp_path):
    """`python -m toy.world --reuse` (what quickstart.sh runs): the same version, seed and scale are kept untouched;
    a world that world.json says is older is replaced whole."""
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    write = lambda: subprocess.run([sys.executable, "-m", "toy.world", "--out", str(tmp_path / "w"), "--scale", "0.005",
                                    "--reuse"], cwd=root, capture_output=True, text=True, check=True).stdout
    write()
    described = tmp_path / "w" / "world.json"
    stamp = described.stat().st_mtime_ns
    assert "already holds this world" in write() and described.stat().st_mtime_ns == stamp
    summary = json.loads(described.read_text())
    described.write_text(json.dumps({**summary, "version": summary["version"] - 1}))
    (tmp_path / "w" / "stale.txt").write_text("left by an older world")
    assert "holds another world" in write()
    assert json.loads(described.read_text())["version"] == summary["version"]
    assert not (tmp_path / "w" / "stale.txt").exists()
