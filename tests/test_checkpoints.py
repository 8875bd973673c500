import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import interpolate
from helpers import released_format, small_cfg
from checkpoints import (checkpoint_config, infer_config, load_checkpoint, load_model, print_released,
                         resolve_checkpoint)
from mask import random_mask
from model import MaskedAutoencoder, VideoClassifier, make_config
from video import write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_released_checkpoint_format_loads_strictly_and_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = small_cfg(pos_init="normal")           # how embeddings start is not in the weights: the default is inferred
    mae = MaskedAutoencoder(cfg).eval()
    path = tmp_path / "released_mae.pth"
    torch.save({"model": released_format(mae.state_dict()), "epoch": 7}, path)   # no config, separate q/k/v

    # The shapes give everything but the number of heads (the presets' value for the width is assumed:
    # 16 for ViT-H/14 and its decoder), so this odd little model passes its heads.
    loaded = load_model(str(path), heads=2, decoder_heads=2).eval()
    assert isinstance(loaded, MaskedAutoencoder) and loaded.cfg == cfg   # the rest inferred from the shapes
    video = torch.randn(2, 3, cfg.frames, cfg.img_size, cfg.img_size)
    m = random_mask(2, cfg.grid, 0.75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = mae(video, ids_keep=m.ids_keep, ids_restore=m.ids_restore)
        out = loaded(video, ids_keep=m.ids_keep, ids_restore=m.ids_restore)
    assert torch.equal(ref[1], out[1]) and torch.equal(ref[0], out[0])

    # a finetuned classifier (with its head) loads the same way, DDP's 'module.' prefix and all
    clf = VideoClassifier(small_cfg(num_classes=5)).eval()
    sd = {"module." + k: v for k, v in released_format(clf.state_dict()).items()}
    loaded_clf = load_model({"model": sd}, heads=2).eval()
    assert loaded_clf.cfg.num_classes == 5
    with torch.no_grad():
        assert torch.equal(clf(video), loaded_clf(video))


def test_a_wrong_or_missing_key_fails_with_a_message_naming_it():
    mae = MaskedAutoencoder(small_cfg())
    sd = released_format(mae.state_dict())
    sd["blocks.1.mlp.fc2.weight"] = torch.zeros(32, 100)
    with pytest.raises(ValueError, match=r"'blocks.1.mlp.fc2.weight' has shape \(32, 100\)"):
        load_model({"model": sd})
    sd = released_format(mae.state_dict())
    del sd["decoder_norm.bias"]
    with pytest.raises(ValueError, match="missing key 'decoder_norm.bias'"):
        load_model({"model": sd})
    sd = released_format(mae.state_dict())
    del sd["blocks.0.attn.v.weight"]
    with pytest.raises(ValueError, match="blocks.0.attn.v.weight"):
        load_model({"model": sd})
    sd = released_format(mae.state_dict())
    sd["decoder_extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="unexpected key 'decoder_extra.weight'"):
        load_model({"model": sd})
    with pytest.raises(ValueError, match="no 'model' entry"):
        load_model({"state_dict": sd})


def test_released_vit_h14_config_is_inferred_from_shapes():
    with torch.device("meta"):
        mae = MaskedAutoencoder(make_config("huge_patch14"))
        clf448 = VideoClassifier(make_config("huge_patch14", img_size=448, num_classes=174))
    kind, cfg = infer_config(released_format_meta(mae.state_dict()))
    assert kind == "mae" and cfg == make_config("huge_patch14")
    kind, cfg = infer_config(released_format_meta(clf448.state_dict()))
    assert kind == "classifier" and cfg == make_config("huge_patch14", img_size=448, num_classes=174)


def released_format_meta(state_dict):
    """Like released_format, but for meta tensors (shapes only)."""
    out = {}
    for k, v in state_dict.items():
        if ".attn.qkv." in k:
            base, leaf = k.split(".attn.qkv.")
            for name in "qkv":
                out[f"{base}.attn.{name}.{leaf}"] = torch.empty(v.shape[0] // 3, *v.shape[1:], device="meta")
        else:
            out[k] = v
    return out


def test_our_checkpoints_round_trip_and_an_mae_loads_into_a_classifier(tmp_path):
    torch.manual_seed(0)
    mae = MaskedAutoencoder(small_cfg()).eval()
    path = tmp_path / "mae.pt"
    torch.save({"model": mae.state_dict(), "config": checkpoint_config(mae, preset="toy"), "step": 3}, path)
    again = load_model(str(path)).eval()
    assert again.cfg == mae.cfg
    for k, v in mae.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    clf = load_model(str(path), kind="classifier", num_classes=7, dropout=0.3, drop_path=0.1).eval()
    assert isinstance(clf, VideoClassifier) and clf.head.out_features == 7
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():   # same encoder weights: its class token equals the MAE encoder's on all tokens
        assert torch.allclose(clf.features(video), mae.forward_features(video)[:, 0])
    assert clf.blocks[1].drop_path == pytest.approx(0.1) and clf.blocks[0].drop_path == 0.0

    torch.save({"model": clf.state_dict(), "config": checkpoint_config(clf, class_names=list("abcdefg"))}, path)
    clf2 = load_model(str(path)).eval()
    with torch.no_grad():
        assert torch.equal(clf(video), clf2(video))
    with pytest.raises(ValueError, match="cannot be loaded as an MAE"):
        load_model(str(path), kind="mae")


# --- the released models by name, from a Hugging Face cache, offline -----------------------------------------------

COMMIT = "3f2a6b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"     # any commit hash: the cache's refs/main names it
# A tiny MAE whose whole config a released file implies: the toy widths' heads (4 for the encoder, 16 for a decoder
# 16 divides) and pos_init's default, which no weight records.
TINY = make_config("toy", depth=1, decoder_depth=1, decoder_heads=16, pos_init="normal")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache and the Hub offline: through the environment for the scripts a test starts, and
    through huggingface_hub's constants for this process (the library read its environment when it was imported)."""
    import huggingface_hub.constants
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def put_in_hub_cache(cache, repo_id, filename, model):
    """Save a model in the authors' format where huggingface_hub keeps a download: models--OWNER--NAME/snapshots/
    <commit>/FILE, with refs/main naming the commit, which is how hf_hub_download finds a file when it cannot ask
    the Hub (a real download's file links to blobs/<etag>; a plain file reads the same)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / COMMIT).mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    torch.save({"model": released_format(model.state_dict()), "epoch": 7}, repo / "snapshots" / COMMIT / filename)


def same_weights(a, b):
    return a.state_dict().keys() == b.state_dict().keys() and all(
        torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_released_name_loads_through_huggingface_hubs_cache_offline(hub_cache):
    torch.manual_seed(0)
    mae = MaskedAutoencoder(TINY)
    ssv2 = VideoClassifier(replace(TINY, num_classes=174))
    put_in_hub_cache(hub_cache, "eminorhan/video-models", "s_none.pth", mae)
    put_in_hub_cache(hub_cache, "eminorhan/video-models", "s_ssv2-10shot.pth", ssv2)

    for name in ("mae_s_none", "video-models/mae_s_none", "eminorhan/video-models/mae_s_none",
                 "hf:eminorhan/video-models/s_none.pth"):
        loaded = load_model(name)
        assert isinstance(loaded, MaskedAutoencoder) and loaded.cfg == TINY and same_weights(loaded, mae), name
    assert os.path.samefile(resolve_checkpoint("mae_s_none"),
                            hub_cache / "models--eminorhan--video-models" / "snapshots" / COMMIT / "s_none.pth")

    encoder = load_model("vit_s_none", kind="classifier", num_classes=5)      # the MAE file: its encoder, a new head
    assert torch.equal(encoder.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)
    finetuned = load_model("vit_s_ssv2-10shot", kind="classifier", num_classes=174)   # the task's classes: its head
    assert same_weights(finetuned, ssv2)
    other_task = load_model("vit_s_ssv2-10shot", kind="classifier", num_classes=700)
    assert other_task.head.out_features == 700 and torch.equal(other_task.pos_embed_spatial, ssv2.pos_embed_spatial)


def test_a_bare_name_both_repositories_hold_means_video_models_and_says_so(hub_cache, capsys):
    torch.manual_seed(0)
    orhan_2024, hvm1 = MaskedAutoencoder(TINY), MaskedAutoencoder(TINY)     # two different models, one name
    put_in_hub_cache(hub_cache, "eminorhan/video-models", "kinetics_none.pth", orhan_2024)
    put_in_hub_cache(hub_cache, "eminorhan/hvm-1", "kinetics_none.pth", hvm1)
    assert same_weights(load_model("mae_kinetics_none"), orhan_2024)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and "eminorhan/video-models" in note[0] and "hvm-1/mae_kinetics_none" in note[0]
    assert same_weights(load_model("hvm-1/mae_kinetics_none"), hvm1) and capsys.readouterr().err == ""
    assert same_weights(load_model("video-models/mae_kinetics_none"), orhan_2024) and capsys.readouterr().err == ""


def one_line(raises, call, *args):
    with pytest.raises(raises) as error:
        call(*args)
    assert "\n" not in str(error.value), str(error.value)
    return str(error.value)


def test_unknown_names_uncached_files_and_missing_ones_each_fail_with_one_clear_line(hub_cache, tmp_path):
    assert "did you mean mae_s_none" in one_line(ValueError, resolve_checkpoint, "mae_s_nnoe")
    assert "checkpoints.py --list" in one_line(ValueError, resolve_checkpoint, "hvm-1/mae_s_none")    # not in HVM-1
    offline = one_line(FileNotFoundError, resolve_checkpoint, "vit_s_ssv2-10shot")
    assert "eminorhan/video-models/s_ssv2-10shot.pth" in offline and "HF_HUB_OFFLINE is set" in offline
    assert str(hub_cache) in offline and "not in the Hugging Face cache" in offline
    assert "not in the Hugging Face cache" in one_line(FileNotFoundError, resolve_checkpoint, "hf:someone/repo/x.pt")
    assert "hf:OWNER/REPO/FILE" in one_line(ValueError, resolve_checkpoint, "hf:eminorhan/s_none.pth")
    assert one_line(FileNotFoundError, load_checkpoint, "runs/x/missing.pt") == "no checkpoint at runs/x/missing.pt"
    notes = str(tmp_path / "notes.pt")
    open(notes, "w").write("not a checkpoint")
    assert f"cannot read checkpoint {notes}" in one_line(ValueError, load_checkpoint, notes)
    torch.save([1, 2], tmp_path / "list.pt")
    assert "is not a checkpoint" in one_line(ValueError, load_model, str(tmp_path / "list.pt"))


def test_every_listed_name_resolves_to_the_file_the_list_gives(hub_cache, capsys):
    print_released()
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")][1:]  # no header
    assert len(rows) == 24 + 21                        # video-models: 4 MAEs + 4 x 5 ViTs; hvm-1: 3 + 3 x 6
    listed = {name: (file, " ".join(rest)) for name, file, *rest in rows}
    assert listed["mae_s_none"] == ("s_none.pth", "MAE")
    assert listed["hvm-1/mae_kinetics_none"][0] == "kinetics_none.pth"
    assert listed["vit_hvm1@448_imagenet-2pt"][1].endswith("1000 classes (ImageNet)")
    assert listed["vit_say_kinetics-50shot"][1].endswith("700 classes (Kinetics-700)")
    for name, (file, _) in listed.items():            # uncached, offline: each fails naming its repository and file
        repo = "hvm-1" if name.startswith("hvm-1/") or "hvm1" in name or "imagenet" in name else "video-models"
        assert f"eminorhan/{repo}/{file}" in one_line(FileNotFoundError, resolve_checkpoint, name)


def test_a_script_takes_a_released_name_and_stops_with_one_line_on_a_bad_one(hub_cache, tmp_path, capsys):
    torch.manual_seed(0)
    put_in_hub_cache(hub_cache, "eminorhan/video-models", "s_none.pth", MaskedAutoencoder(TINY))
    video, out = str(tmp_path / "clip.mp4"), tmp_path / "out"
    write_video(video, np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8), fps=3.75)
    flags = ["--setting", "toy", "--videos", video, "--clips", "1", "--figures", "0", "--no-untrained",
             "--out", str(out)]
    result = subprocess.run([sys.executable, "interpolate.py", "--ckpt", "mae_s_none", *flags], cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads((out / "interpolation.json").read_text())
    assert found["model_config"] == {"img_size": 64, "frames": 16, "t_patch": 2, "patch": 16}, found["model_config"]
    assert found["num_clips"] == 1 and found["settings"]["ckpt"] == "mae_s_none"
    for name, message in (("mae_s_nnoe", "did you mean mae_s_none"), ("mae_say_none", "HF_HUB_OFFLINE is set")):
        with pytest.raises(SystemExit) as stop:
            interpolate.main(interpolate.parse_args(["--ckpt", name, *flags, "--overwrite"]))   # out holds results
        lines = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code != 0 and len(lines) == 1 and lines[0].startswith("error: --ckpt: "), lines
        assert message in lines[0], lines
