"""The paper in miniature's shipped models (assets/toy/, made by `python -m toy.assets`): each loads, says how it was
made, and the command that made it reproduces its first steps."""
import json
import os
import shlex
import subprocess
import sys

import pytest
import torch

import pretrain
from checkpoints import load_model
from model import MaskedAutoencoder, make_config
from runs import RunLog
from toy.miniature import ASSETS, PRETRAIN_ORDER, PRETRAIN_STEPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, ASSETS)


def made():
    """The shipped models' record, {condition: how it was made}."""
    with open(os.path.join(SHIPPED, "made.json")) as f:
        return json.load(f)["files"]


def shipped(cond):
    return torch.load(os.path.join(SHIPPED, f"{cond}.pt"), map_location="cpu", weights_only=False)


def command_args(made_by):
    """The flags of the command that made a file, as pretrain.py parses them."""
    argv = shlex.split(made_by["command"])
    assert argv[:2] == ["python", "pretrain.py"], made_by["command"]
    return vars(pretrain.parse_args(argv[2:]))


def test_the_shipped_models_are_the_study_s_conditions_each_with_its_files():
    assert set(made()) == set(PRETRAIN_ORDER)                              # every condition the study starts from
    for cond in made():
        assert all(os.path.exists(os.path.join(SHIPPED, f"{cond}.{kind}")) for kind in ("pt", "png")), cond


@pytest.mark.parametrize("cond", PRETRAIN_ORDER)
def test_each_shipped_model_loads_in_half_precision_and_records_the_command_that_made_it(cond):
    ckpt = shipped(cond)
    made_by = ckpt["made_by"]
    assert set(made_by) >= {"command", "steps", "seconds", "first_steps", "final_loss", "hours_of_video", "label"}
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["args"] == command_args(made_by)                           # the run's flags are the command's
    steps = PRETRAIN_STEPS // 2 if cond == "Scenter" else PRETRAIN_STEPS
    assert ckpt["step"] == made_by["steps"] == ckpt["args"]["steps"] == steps
    assert made_by["seconds"] > 0 and [r["step"] for r in made_by["first_steps"]] == [25, 50]
    model = load_model(os.path.join(SHIPPED, f"{cond}.pt"))              # strict: every key, every shape
    image = cond == "SImg"
    expected = make_config("toy", **(dict(frames=1, t_patch=1) if image else {}))
    assert isinstance(model, MaskedAutoencoder) and model.cfg == expected
    assert made()[cond] == {**made_by, **{k: made()[cond][k] for k in ("jobs", "threads", "cpu")}}
    assert os.path.getsize(os.path.join(SHIPPED, f"{cond}.png")) > 1000   # its reconstruction, for the report


# The first 0.1%, 1% and 10% of S are the first 1, 10 and 100 of the full world's 1,000 videos of S, and the tests'
# smaller world (the same seed) holds those very videos: its first 200. So on it the commands that made these three
# files re-run their first 50 steps, choosing the same videos with the fraction that names them in 200.
@pytest.mark.slow
@pytest.mark.parametrize("cond", ["S0.1", "S1", "S10"])
def test_the_command_that_made_a_shipped_model_reproduces_its_first_steps(cond, toy_world, tmp_path):
    world, summary = toy_world
    made_by = shipped(cond)["made_by"]
    argv = shlex.split(made_by["command"])[2:]
    full_count = summary["sizes"]["saycam"]["S"] / summary["scale"]        # the full world's videos of S
    frac = float(argv[argv.index("--data_frac") + 1])
    count = max(1, round(full_count * frac))
    argv[argv.index("--data_frac") + 1] = str(count / summary["sizes"]["saycam"]["S"])
    argv[argv.index("--data_root") + 1] = os.path.join(str(world), "saycam")
    argv[argv.index("--out") + 1] = str(tmp_path / "run")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")      # as toy.assets ran it: one thread
    result = subprocess.run([sys.executable, "pretrain.py", *argv, "--stop_at", "50"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{count} videos" in result.stdout + result.stderr               # the same videos as the full world's
    logged = [r for r in RunLog(str(tmp_path / "run" / "log.jsonl"), main=False).records() if "loss" in r]
    for again, first in zip(logged, made_by["first_steps"], strict=True):
        # as logged (5 and 4 decimals); one unit of the last digit apart at most, for a CPU that sums in another order
        assert again["step"] == first["step"]
        assert again["loss"] == pytest.approx(first["loss"], abs=1e-5), (again, first)
        assert again["grad_norm"] == pytest.approx(first["grad_norm"], abs=1e-4), (again, first)


SECOND_SEEDS = sorted((int(name[4:]), cond) for name in os.listdir(SHIPPED) if name.startswith("seed")
                      for cond in json.load(open(os.path.join(SHIPPED, name, "made.json")))["files"])


@pytest.mark.parametrize("seed, cond", SECOND_SEEDS, ids=[f"seed{s}-{c}" for s, c in SECOND_SEEDS])
def test_a_second_pretraining_seed_is_the_same_command_with_another_seed_and_other_weights(seed, cond):
    """assets/toy/seed<N>/ (python -m toy.assets --seed N): each file is its condition's command with --seed N,
    the same model, and weights of its own."""
    folder = os.path.join(SHIPPED, f"seed{seed}")
    ckpt = torch.load(os.path.join(folder, f"{cond}.pt"), map_location="cpu", weights_only=False)
    made_by, first = ckpt["made_by"], shipped(cond)
    assert ckpt["args"] == command_args(made_by) and ckpt["args"]["seed"] == seed
    differs = {k for k in ckpt["args"] if ckpt["args"][k] != first["args"][k]} - {"seed", "out"}
    assert differs <= {"data_frac"} and (not differs or cond == "Kmatched")  # Kmatched: its seed's random draw
    assert ckpt["step"] == first["step"] and load_model(os.path.join(folder, f"{cond}.pt")).cfg == \
        load_model(os.path.join(SHIPPED, f"{cond}.pt")).cfg
    assert not torch.equal(ckpt["model"]["blocks.0.attn.qkv.weight"], first["model"]["blocks.0.attn.qkv.weight"])
    assert os.path.getsize(os.path.join(folder, f"{cond}.png")) > 1000
