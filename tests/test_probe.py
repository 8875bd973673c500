import json

import numpy as np
import pytest
import torch

import probe
from data import Items, kinetics_items


def test_an_untrained_encoder_reads_the_frame_telling_task_and_the_scores_are_written(toy_world, tmp_path):
    world, out = toy_world[0], tmp_path / "probe.json"
    probe.main(probe.parse_args(["--setting", "toy", "--world", str(world), "--untrained", "toy", "--task",
                                 "kinetics", "--max_per_class", "20", "--out", str(out)]))
    result = json.loads(out.read_text())
    assert result["untrained"] == "toy" and result["config"]["patch"] == 16
    scores = result["tasks"]["kinetics"]
    train = kinetics_items(str(world / "kinetics"), "train")
    per_class = np.bincount(train.labels)
    assert scores["num_train"] == np.minimum(per_class, 20).sum()
    assert scores["num_val"] == len(kinetics_items(str(world / "kinetics"), "val"))
    assert scores["chance"] == pytest.approx(1 / 8)
    # Kinetics-like classes are told by a single frame (scene, objects): random projections of the pixels keep that
    assert scores["cls_top1"] > 2 * scores["chance"] and scores["mean_top1"] > 2 * scores["chance"]


def test_default_outputs_do_not_collide(tmp_path):
    args = lambda *argv: probe.parse_args(["--world", "w", *argv])
    for child in "SY":                                                    # beside each run's checkpoint
        ckpt = tmp_path / child / "checkpoint.pt"
        ckpt.parent.mkdir()
        ckpt.write_bytes(b"")
        assert args("--ckpt", str(ckpt)).out == str(tmp_path / child / "probe_checkpoint.json")
    assert args("--ckpt", "mae_kinetics_none").out == "runs/probe_mae_kinetics_none.json"       # released names
    assert args("--ckpt", "hvm-1/mae_kinetics_none").out == "runs/probe_hvm-1_mae_kinetics_none.json"
    assert args("--untrained", "toy").out == "runs/probe_untrained_toy_seed0.json"
    finer = args("--untrained", "toy", "--patch", "8", "--t_patch", "4")
    assert finer.out == "runs/probe_untrained_toy_p8_t4_seed0.json"
    ckpt = tmp_path / "toy_img" / "checkpoint.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    assert args("--untrained", str(ckpt), "--seed", "1").out == "runs/probe_untrained_toy_img_seed1.json"


def test_an_untrained_checkpoint_architecture_is_the_checkpoints_own_with_fresh_weights(tmp_path):
    from checkpoints import checkpoint_config
    from model import MaskedAutoencoder, make_config
    torch.manual_seed(1)                                                  # the probe's untrained encoder uses seed 0
    image_mae = MaskedAutoencoder(make_config("toy", frames=1, t_patch=1))
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": image_mae.state_dict(), "config": checkpoint_config(image_mae)}, path)
    untrained = probe.encoder(probe.parse_args(["--world", "w", "--untrained", str(path)]), torch.device("cpu"))
    assert untrained.cfg == image_mae.cfg and untrained.cfg.frames == 1
    assert not torch.equal(untrained.blocks[0].attn.qkv.weight, image_mae.blocks[0].attn.qkv.weight)
    again = probe.encoder(probe.parse_args(["--world", "w", "--untrained", str(path)]), torch.device("cpu"))
    assert torch.equal(untrained.blocks[0].attn.qkv.weight, again.blocks[0].attn.qkv.weight)    # seeded


def test_the_regression_separates_what_is_separable_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    features = rng.normal(size=(200, 16)) + 6 * np.eye(4, 16)[labels]   # four blobs, one per class
    train, val = (features[::2], labels[::2]), (features[1::2], labels[1::2])
    assert probe.fit_and_score(train, val, 1.0) > 0.95
    shuffled = (features[::2], rng.permutation(labels[::2]))
    assert probe.fit_and_score(shuffled, val, 1.0) < 0.6             # chance is 0.25


def test_the_training_cap_takes_at_most_k_per_class_seeded_and_in_order():
    items = Items(np.array([f"{i}.mp4" for i in range(30)]), np.array([0] * 20 + [1] * 4 + [2] * 6), ["a", "b", "c"])
    capped = probe.per_class_cap(items, 5, seed=0)
    assert np.bincount(capped.labels).tolist() == [5, 4, 5]
    assert list(capped.paths) == sorted(capped.paths, key=lambda p: int(p.split(".")[0]))
    assert list(probe.per_class_cap(items, 5, seed=0).paths) == list(capped.paths)
    assert list(probe.per_class_cap(items, 5, seed=1).paths) != list(capped.paths)
    assert probe.per_class_cap(items, None, seed=0) is items


def test_bad_input_gives_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        probe.main(probe.parse_args(["--world", str(tmp_path), "--ckpt", str(tmp_path / "missing.pt")]))
    assert stop.value.code == 2
    missing = tmp_path / "missing.pt"
    assert capsys.readouterr().err.strip() == f"error: --ckpt: no checkpoint at {missing}"
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        probe.main(probe.parse_args(["--world", str(tmp_path), "--ckpt", str(broken)]))
    err = capsys.readouterr().err
    assert err.startswith(f"error: --ckpt: cannot read checkpoint {broken}") and len(err.strip().splitlines()) == 1
    for argv, message in ((["--world", "w"], "one of --ckpt and --untrained"),
                          (["--world", "w", "--untrained", "toy", "--task", "imagenet"], "--task imagenet"),
                          (["--untrained", "toy"], "--data_root"),
                          (["--world", "w", "--ckpt", "c.pt", "--patch", "8"], "a checkpoint carries its own"),
                          (["--world", "w", "--untrained", "toy", "--max_per_class", "0"], "--max_per_class")):
        with pytest.raises(SystemExit):
            probe.parse_args(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):                                       # a world without the task's folder
        probe.main(probe.parse_args(["--world", str(tmp_path), "--untrained", "toy", "--task", "ssv2"]))
    assert capsys.readouterr().err.startswith("error: --task ssv2:")
