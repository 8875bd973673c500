import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval_ood
from eval_ood import evaluate, find_datasets, model_categories, read_mapping, summary, to_categories
from checkpoints import checkpoint_config
from model import MaskedAutoencoder, VideoClassifier, make_config
from runs import save_checkpoint
from toy.images import CLASSES
from video import write_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    return subprocess.run([sys.executable, "eval_ood.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def imagenet_wnids():
    """1000 class names in ImageNet's order, as finetune.py names a 1000-way model (its sorted class folders): the
    mapping's real WNIDs at their indices, placeholders between them that sort in the same places."""
    categories, indices, wnids = read_mapping()
    known = {i: w for c in categories for i, w in zip(indices[c], wnids[c])}
    names, last = [], "n00000000"
    for i in range(1000):
        last = known.get(i, last + "x")                                # 'n0x..' + 'x' sorts right after 'n0x..'
        names.append(last)
    assert names == sorted(names)
    return names


IMAGENET_WNIDS = imagenet_wnids()


def test_imagenet_probabilities_are_averaged_per_category_not_summed():
    categories, indices, _ = read_mapping()
    assert len(categories) == 16 and len(indices["dog"]) > 100 and indices["airplane"] == [404]
    probs = torch.full((1, 1000), 0.2 / 1000)
    probs[0, 404] += 0.3                                               # airplane: its one ImageNet class
    probs[0, indices["dog"]] += 0.5 / len(indices["dog"])              # dog: more mass, spread over 109 classes
    sixteen = to_categories(probs, None, categories)
    assert torch.equal(to_categories(probs, IMAGENET_WNIDS, categories), sixteen)   # ours name them: the same
    expected = [probs[0, indices[c]].mean().item() for c in categories]
    assert torch.allclose(sixteen[0], torch.tensor(expected)) and categories[sixteen.argmax().item()] == "airplane"
    # a model of the 16 classes themselves (the toy world) is read by name, whatever order its classes are in
    assert model_categories(IMAGENET_WNIDS, 1000)[0] == categories
    shuffled = IMAGENET_WNIDS[1:] + IMAGENET_WNIDS[:1]
    with pytest.raises(ValueError, match="not ImageNet's class order"):
        model_categories(shuffled, 1000)
    mine = list(reversed(categories))
    assert torch.equal(to_categories(torch.eye(16), mine, categories), torch.eye(16).flip(1))


def fake_tree(root):
    """A few files named as model-vs-human names them, and the category each one is 'predicted' as."""
    said = {
        # contrast: c100 is the undistorted control (left out); c50 right twice; c05 right once, wrong once
        "contrast/dnn/session-1/0001_cop_dnn_c100_bear_10_n1_1.png": "cat",
        "contrast/dnn/session-1/0002_cop_dnn_c100_cat_10_n1_2.png": "bear",
        "contrast/dnn/session-1/0003_cop_dnn_c50_bear_10_n1_3.png": "bear",
        "contrast/dnn/session-1/0004_cop_dnn_c50_cat_10_n1_4.png": "cat",
        "contrast/dnn/session-1/0005_cop_dnn_c05_bear_10_n1_5.png": "bear",
        "contrast/dnn/session-1/0006_cop_dnn_c05_cat_10_n1_6.png": "dog",
        # cue-conflict: right means the shape (the folder); shape bias only where shape and texture differ
        "cue-conflict/airplane/airplane1-bear2.png": "bear",          # texture decision
        "cue-conflict/airplane/airplane3-airplane1.png": "airplane",  # no conflict: accuracy only
        "cue-conflict/bear/bear1-airplane2.png": "bear",              # shape decision
        "cue-conflict/bear/bear2-cat1.png": "dog",                    # neither
        # silhouette: the folder is the category
        "silhouette/bear/bear1.png": "bear",
        "silhouette/cat/cat1.png": "bear",
    }
    for path in said:
        os.makedirs(os.path.dirname(root / path), exist_ok=True)
        write_image(str(root / path), np.zeros((8, 8, 3), np.uint8))
    return said


def test_exclusions_shape_label_scoring_and_the_plain_mean_on_a_fake_tree(tmp_path):
    said = fake_tree(tmp_path)
    categories = read_mapping()[0]

    def probabilities_of(items):                                       # a 'model' whose answers are known
        probs = torch.zeros(len(items), 16)
        for row, path in enumerate(items.paths):
            probs[row, categories.index(said[os.path.relpath(path, tmp_path)])] = 1.0
        return probs
    present, missing = find_datasets(str(tmp_path), ["contrast", "cue-conflict", "silhouette", "sketch"])
    assert missing == ["sketch"]
    results = evaluate(probabilities_of, str(tmp_path), present, categories)
    contrast = results["contrast"]
    assert contrast["accuracy"] == 3 / 4 and contrast["n"] == 4 and contrast["excluded_conditions"] == ["c100"]
    assert contrast["per_condition"] == {"c100": 0.0, "c50": 1.0, "c05": 0.5}
    cue = results["cue-conflict"]
    assert cue["accuracy"] == 2 / 4 and cue["shape_decisions"] == 1 and cue["texture_decisions"] == 1
    assert cue["shape_bias"] == 0.5
    assert results["silhouette"]["accuracy"] == 0.5
    assert summary(results) == pytest.approx((3 / 4 + 2 / 4 + 1 / 2) / 3)


def test_unreadable_files_are_left_out_and_counted(tmp_path):
    said = fake_tree(tmp_path)
    (tmp_path / "silhouette/cat/cat2.png").write_bytes(b"not a png")
    categories = read_mapping()[0]

    def probabilities_of(items):
        probs = torch.zeros(len(items), 16)
        for row, path in enumerate(items.paths):
            rel = os.path.relpath(path, tmp_path)
            if rel in said:
                probs[row, categories.index(said[rel])] = 1.0
            else:
                probs[row] = float("nan")
        return probs
    results = evaluate(probabilities_of, str(tmp_path), ["silhouette"], categories)
    assert results["silhouette"]["unreadable"] == 1 and results["silhouette"]["n"] == 2


def test_bad_input_gives_one_line(tmp_path, capsys):
    fake_tree(tmp_path)
    mae = MaskedAutoencoder(make_config("toy"))
    save_checkpoint(str(tmp_path / "mae.pt"), {"model": mae.state_dict(), "config": checkpoint_config(mae)})
    unnamed = VideoClassifier(make_config("toy", num_classes=10))
    save_checkpoint(str(tmp_path / "ten.pt"), {"model": unnamed.state_dict()})      # like a released file
    result = run("--ckpt", str(tmp_path / "mae.pt"), "--data_root", str(tmp_path))  # once as a user sees it
    assert result.returncode != 0 and "is an MAE" in result.stderr and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr[-500:]   # one line, last
    for args, message in [                                             # the rest in this process, for speed
        (["--ckpt", str(tmp_path / "ten.pt"), "--data_root", str(tmp_path)], "without class names"),
        (["--ckpt", str(tmp_path / "nothing.pt"), "--data_root", str(tmp_path)], "no checkpoint at"),
        (["--ckpt", str(tmp_path / "mae.pt"), "--data_root", str(tmp_path / "nowhere")], "no such folder"),
        (["--ckpt", "a.pt", "--datasets", "edges"], "'edges' is not one of"),
        (["--ckpt", "a.pt", "--attention"], "give two --ckpt"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            eval_ood.main(eval_ood.parse_args(args + ["--out", str(tmp_path / "out")]))
        assert stopped.value.code != 0 and message in capsys.readouterr().err, args
    assert not (tmp_path / "out").exists()                             # nothing half-written


@pytest.mark.slow
def test_the_toy_ood_world_end_to_end_with_attention(toy_world, toy_image_classifier, tmp_path):
    trained = toy_image_classifier
    save_checkpoint(str(tmp_path / "trained.pt"), {"model": trained.state_dict(), "config": checkpoint_config(
        trained, class_names=CLASSES, task="imagenet")})
    torch.manual_seed(0)
    untrained = VideoClassifier(make_config("toy", num_classes=16, frames=2))
    save_checkpoint(str(tmp_path / "untrained.pt"), {"model": untrained.state_dict(), "config": checkpoint_config(
        untrained, class_names=CLASSES, task="imagenet")})
    result = run("--setting", "toy", "--data_root", str(toy_world[0] / "ood"), "--ckpt", str(tmp_path / "trained.pt"),
                 str(tmp_path / "untrained.pt"), "--out", str(tmp_path / "out"), "--attention")
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.load(open(tmp_path / "out" / "ood.json"))
    a, b = out["models"]
    built = {"colour", "contrast", "high-pass", "low-pass", "rotation", "uniform-noise", "stylized", "edge",
             "silhouette", "cue-conflict"}
    assert set(a["datasets"]) == built and len(a["missing"]) == 7 and "skipped" in result.stderr
    assert a["mean"] == pytest.approx(np.mean([r["accuracy"] for r in a["datasets"].values()]))
    print({d: round(r["accuracy"], 3) for d, r in a["datasets"].items()}, a["mean"], b["mean"])  # pytest -s
    colour = a["datasets"]["colour"]                                   # greyscale: the easiest distortion
    assert colour["excluded_conditions"] == ["cr"] and colour["per_condition"]["cr"] > 0.6
    assert colour["accuracy"] > a["datasets"]["stylized"]["accuracy"] + 0.15
    assert a["mean"] > 2 / 16 and b["mean"] < 0.15                    # the untrained one is at chance
    assert out["difference"]["mean"] == pytest.approx(a["mean"] - b["mean"])
    for figure in ("ood.png", "attention.png"):
        assert (tmp_path / "out" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "out" / figure).stat().st_size > 20_000
