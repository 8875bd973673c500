"""Every script's bad flags: a non-zero exit and one line on stderr that names the flag (or the file), never a
traceback. The scripts run in this process (their main(parse_args(argv)), as `python script.py` runs them), so that
the whole audit costs seconds; an exception other than the clean exit fails the test as a traceback would. The
scripts whose flags are read under `if __name__ == "__main__"` run as a user runs them, in a fresh process."""

import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAE = os.path.join(ROOT, "assets", "toy_mae_S.pt")              # a real MAE checkpoint, shipped with the project


@pytest.fixture(scope="module")
def places(toy_world, tmp_path_factory):
    """A toy world, a plain file to point --out at, a file to put a folder under, checkpoints that hold no model,
    and folders holding the results of earlier evaluations."""
    import torch
    tmp = tmp_path_factory.mktemp("bad_flags")
    (tmp / "a_file").write_text("not a folder")
    torch.save({"weights": {}}, tmp / "no_model.pt")
    torch.save({"model": "not a state dict", "step": 3}, tmp / "not_a_model.pt")
    for folder, results in (("done_ood", "ood.json"), ("done_interp", "interpolation.json")):
        (tmp / folder).mkdir()
        (tmp / folder / results).write_text("{}")
    return {"WORLD": str(toy_world[0]), "FILE": str(tmp / "a_file"), "UNDER_FILE": str(tmp / "a_file" / "run"),
            "TMP": str(tmp), "MAE": MAE, "NO_MODEL": str(tmp / "no_model.pt"),
            "NOT_A_MODEL": str(tmp / "not_a_model.pt")}


PRETRAIN = ["--setting", "toy", "--data_root", "WORLD", "--workers", "0", "--steps", "1", "--out", "TMP/pt"]
FINETUNE = ["--setting", "toy", "--world", "WORLD", "--task", "ssv2", "--epochs", "1", "--out", "TMP/ft"]
INTERPOLATE = ["--setting", "toy", "--ckpt", "MAE", "--world", "WORLD", "--child", "A", "--clips", "2",
               "--out", "TMP/interp"]
PROBE = ["--setting", "toy", "--world", "WORLD", "--ckpt", "MAE", "--out", "TMP/probe.json"]
OOD = ["--setting", "toy", "--data_root", "WORLD/ood", "--ckpt", "MAE", "--out", "TMP/ood"]
SCALING = ["--point", "1=TMP/none/*.json", "--out", "TMP/scaling"]
MINIATURE = ["--world", "WORLD", "--out", "TMP/mini", "--report", "TMP/report"]

CASES = [  # (script, its flags, the bad flags, what the one line must name)
    ("pretrain", PRETRAIN, ["--mask_ratio", "0"], "--mask_ratio"),
    ("pretrain", PRETRAIN, ["--mask_ratio", "1"], "--mask_ratio"),
    ("pretrain", PRETRAIN, ["--lr", "0"], "--lr"),
    ("pretrain", PRETRAIN, ["--lr", "fast"], "--lr"),
    ("pretrain", PRETRAIN, ["--lr", "nan"], "--lr"),
    ("pretrain", PRETRAIN, ["--steps", "0"], "--steps"),
    ("pretrain", PRETRAIN, ["--steps", "-1"], "--steps"),
    ("pretrain", PRETRAIN, ["--workers", "-1"], "--workers"),
    ("pretrain", PRETRAIN, ["--device", "cuda:0"], "--device"),
    ("pretrain", PRETRAIN, ["--device", "tpu"], "--device"),
    ("pretrain", PRETRAIN, ["--img_size", "0"], "--img_size"),
    ("pretrain", PRETRAIN, ["--canvas", "0"], "--canvas"),
    ("pretrain", PRETRAIN, ["--data_frac", "0"], "--data_frac"),
    ("pretrain", PRETRAIN, ["--data_frac", "1.5"], "--data_frac"),
    ("pretrain", PRETRAIN, ["--crop_scale", "0.9", "0.5"], "--crop_scale"),
    ("pretrain", PRETRAIN, ["--betas", "0.9", "1.5"], "--betas"),
    ("pretrain", PRETRAIN, ["--batch_videos", "0"], "--batch_videos"),
    ("pretrain", PRETRAIN, ["--data_root", "S=/x,kinetics"], "--data_root"),   # 'kinetics': no pair
    ("pretrain", PRETRAIN, ["--out", "FILE"], "FILE"),
    ("pretrain", PRETRAIN, ["--out", "UNDER_FILE"], "UNDER_FILE"),
    ("pretrain", PRETRAIN, ["--resume", "MAE", "--mask_type", "tube", "--preset", "small_patch16"], "--resume"),
    ("pretrain", PRETRAIN, ["--resume", "NOT_A_MODEL"], "NOT_A_MODEL"),      # a dict whose "model" is no model
    ("pretrain", PRETRAIN, ["--init", "NO_MODEL"], "NO_MODEL"),
    ("pretrain", PRETRAIN, ["--out", "/proc/x"], "/proc/x"),
    ("pretrain", PRETRAIN, ["--seed", str(2 ** 64)], "--seed"),
    ("pretrain", PRETRAIN, ["--lr", "1e300"], "--lr"),
    ("pretrain", PRETRAIN, ["--min_lr", "1e300"], "--min_lr"),
    ("pretrain", PRETRAIN, ["--batch_videos", "100000"], "--batch_videos"),  # checked before anything is allocated
    ("pretrain", PRETRAIN, ["--stop_at", "5"], "--stop_at"),                 # past --steps 1
    ("finetune", FINETUNE, ["--shots", "0"], "--shots"),
    ("finetune", FINETUNE, ["--shots", "0%"], "--shots"),
    ("finetune", FINETUNE, ["--shots", "ten"], "--shots"),
    ("finetune", FINETUNE, ["--lr", "-1"], "--lr"),
    ("finetune", FINETUNE, ["--resume", "MAE"], "MAE"),                 # an MAE is no finetuning run to continue
    ("finetune", FINETUNE, ["--out", "FILE"], "FILE"),
    ("finetune", FINETUNE, ["--out", "UNDER_FILE"], "UNDER_FILE"),
    ("finetune", FINETUNE, ["--workers", "-1"], "--workers"),
    ("finetune", FINETUNE, ["--device", "cuda"], "--device"),
    ("finetune", FINETUNE, ["--img_size", "0"], "--img_size"),
    ("finetune", FINETUNE, ["--canvas", "0"], "--canvas"),
    ("finetune", FINETUNE, ["--batch_size", "0"], "--batch_size"),
    ("finetune", FINETUNE, ["--dropout", "1"], "--dropout"),
    ("finetune", FINETUNE, ["--epochs", "0"], "--epochs"),
    ("finetune", FINETUNE, ["--init", "NO_MODEL"], "NO_MODEL"),
    ("finetune", FINETUNE, ["--init", "NOT_A_MODEL"], "NOT_A_MODEL"),
    ("finetune", FINETUNE, ["--out", "/proc/x"], "/proc/x"),
    ("finetune", FINETUNE, ["--seed", str(2 ** 64)], "--seed"),
    ("finetune", FINETUNE, ["--lr", "1e300"], "--lr"),
    ("finetune", FINETUNE, ["--batch_size", "100000"], "--batch_size"),
    ("interpolate", INTERPOLATE, ["--mask", "random", "--mask_ratio", "0"], "--mask_ratio"),
    ("interpolate", INTERPOLATE, ["--clips", "0"], "--clips"),
    ("interpolate", INTERPOLATE, ["--canvas", "0"], "--canvas"),
    ("interpolate", INTERPOLATE, ["--eval_crop", "0"], "--eval_crop"),
    ("interpolate", INTERPOLATE, ["--device", "cuda"], "--device"),
    ("interpolate", INTERPOLATE, ["--out", "FILE"], "FILE"),
    ("interpolate", INTERPOLATE, ["--out", "/proc/x"], "/proc/x"),
    ("interpolate", INTERPOLATE, ["--out", "TMP/done_interp"], "--overwrite"),   # earlier results are kept
    ("interpolate", INTERPOLATE, ["--seed", str(2 ** 64)], "--seed"),
    ("probe", PROBE, ["--C", "0"], "--C"),
    ("probe", PROBE, ["--max_per_class", "0"], "--max_per_class"),
    ("probe", PROBE, ["--workers", "-1"], "--workers"),
    ("probe", PROBE, ["--out", "UNDER_FILE"], "FILE"),
    ("probe", PROBE, ["--out", "TMP"], "TMP"),                           # a folder, not the JSON file
    ("eval_ood", OOD, ["--batch_size", "0"], "--batch_size"),
    ("eval_ood", OOD, ["--canvas", "0"], "--canvas"),
    ("eval_ood", OOD, ["--out", "FILE"], "FILE"),
    ("eval_ood", OOD, ["--out", "/proc/x"], "/proc/x"),
    ("eval_ood", OOD, ["--out", "TMP/done_ood"], "--overwrite"),
    ("scaling", SCALING, ["--level", "1.5"], "--level"),
    ("scaling", SCALING, ["--multiples", "-10"], "--multiples"),
    ("scaling", SCALING, ["--out", "FILE"], "FILE"),
    ("toy.miniature", MINIATURE, ["--jobs", "0"], "--jobs"),
    ("toy.miniature", MINIATURE, ["--seeds", "0"], "--seeds"),
    ("toy.miniature", MINIATURE, ["--pretrain_steps", "0"], "--pretrain_steps"),
    ("toy.miniature", MINIATURE, ["--out", "FILE"], "FILE"),
    ("toy.miniature", MINIATURE, ["--report", "UNDER_FILE"], "UNDER_FILE"),
]


def fill(words, places):
    """Put the fixture's places into the flags (longest names first: UNDER_FILE before FILE)."""
    out = []
    for word in words:
        for name in sorted(places, key=len, reverse=True):
            word = word.replace(name, places[name])
        out.append(word)
    return out


@pytest.mark.parametrize("script, flags, bad, named", CASES, ids=[f"{c[0]} {' '.join(c[2])}" for c in CASES])
def test_a_bad_flag_stops_the_script_with_one_line_naming_it(script, flags, bad, named, places, capsys):
    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as stopped:
        module.main(module.parse_args(fill(flags + bad, places)))
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code not in (0, None)
    assert len(lines) == 1 and fill([named], places)[0] in lines[0], lines


MAIN_CASES = [  # scripts whose flags are read in their __main__ block: run as a user runs them
    (["-m", "toy.world", "--out", "TMP/w", "--scale", "0"], "--scale"),
    (["-m", "toy.world", "--out", "TMP/w", "--workers", "0"], "--workers"),
    (["-m", "toy.world", "--out", "UNDER_FILE"], "UNDER_FILE"),
    (["video.py", "prepare", "TMP", "TMP/p", "--workers", "0"], "--workers"),
    (["video.py", "prepare", "TMP", "TMP/p", "--crf", "99"], "--crf"),
    (["video.py", "prepare", "TMP/missing", "TMP/p"], "TMP/missing"),
    (["video.py", "prepare", "WORLD", "FILE"], "FILE"),                  # DST: a file, not a folder
    (["video.py", "prepare", "WORLD", "UNDER_FILE"], "UNDER_FILE"),
    (["checkpoints.py", "--lsit"], "--lsit"),
    (["bench.py", "step", "--batch", "0"], "--batch"),
    (["bench.py", "step", "--mask_ratio", "1.5"], "--mask_ratio"),
    (["bench.py", "gpu", "--budget_minutes", "0"], "--budget_minutes"),
    (["bench.py", "io", "--videos", "TMP/missing"], "TMP/missing"),
]


@pytest.mark.parametrize("argv, named", MAIN_CASES, ids=[" ".join(c[0]) for c in MAIN_CASES])
def test_a_bad_flag_of_a_command_stops_it_with_one_line_and_no_traceback(argv, named, places):
    result = subprocess.run([sys.executable, *fill(argv, places)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(lines) == 1 and fill([named], places)[0] in lines[0], result.stderr
