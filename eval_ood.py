"""
Out-of-distribution object recognition: the paper's Result 5. A classifier finetuned on ImageNet
(or on the toy world's 16 objects) is scored on model-vs-human's 17 OOD datasets (Geirhos et al.
2021): edges, silhouettes, cue-conflict (one object's shape with another's texture), stylized
images, sketches, and parametric distortions (colour, contrast, low- and high-pass filtering,
noise, phase scrambling, eidolons, rotation, ...).

    python eval_ood.py --data_root /data/model-vs-human/datasets \\
        --ckpt runs/S-Vid/best.pt runs/S-Img/best.pt --names "S-Vid|S-Img" --attention
    # the toy world's OOD set
    python eval_ood.py --setting toy --ckpt runs/toy_vid/best.pt runs/toy_img/best.pt

The rules are model-vs-human's:
  - each image is shown as a static 16-frame clip to a video model (a single frame to an image
    model), resized to 256 and centre-cropped to 224, with ImageNet's normalisation;
  - a 1000-way ImageNet classifier's softmax is turned into 16 categories by averaging the
    probabilities of each category's ImageNet classes (assets/imagenet16_mapping.json); a model
    trained on the 16 categories themselves (the toy world) is read directly, by class name;
  - the category is the 5th '_'-field of a file name
    (dnn/session-1/<trial>_<expt>_<subj>_<condition>_<category>_..) or, for edge, silhouette and
    cue-conflict, the folder; a cue-conflict image counts as right when the model names its
    *shape* (the folder), and its shape bias is shape / (shape + texture) decisions on the images
    whose shape and texture differ;
  - the undistorted conditions and those where humans score under 20% are left out (OOD_EXCLUDED);
  - accuracy is pooled over a dataset's remaining images; the summary is the plain mean over the
    datasets.
Datasets that are not under --data_root are skipped with a note. Outputs in --out: ood.json (every
accuracy, per condition too), ood.png (the paper's Figure 6b: models side by side, and the first
minus the second), and with --attention, attention.png (Figure 6c: the last layer's class-token
attention of two models on the same images).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from augment import IMAGENET_MEAN, IMAGENET_STD, VIDEO_MEAN, VIDEO_STD, augment
from checkpoints import load_checkpoint, load_model, read_checkpoint
from data import ASSETS, IMAGE_EXTENSIONS, ImageClipDataset, make_items, make_loader, require_dir
from figures import attention_figure, bar_chart
from runs import check_results_folder, hold_folder
from settings import TOY_FRAME, TOY_WORLD, parse_with_settings
from training import (ArgumentParser, Processes, autocast_for, fail, fraction, nonnegative_int,
                      positive_int, run_script)

SETTINGS = {
    "paper": {},
    "toy": dict(data_root=os.path.join(TOY_WORLD, "ood"), canvas=TOY_FRAME, eval_crop=1.0,
                workers=0, batch_size=128),
}
NORMALISATION = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "video": (VIDEO_MEAN, VIDEO_STD)}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", nargs="+", required=True,
                   help="classifier checkpoints (ours or the authors' released, "
                   "files or names: vit_hvm1_imagenet-2pt; checkpoints.py --list)")
    p.add_argument("--names", default=None,
                   help="'|'-separated model names (default: their run folders)")
    p.add_argument("--data_root", default="model-vs-human/datasets",
                   help="the folder holding the datasets' folders")
    p.add_argument("--datasets", default=",".join(OOD_CONDITIONS),
                   help="comma-separated: which of the 17")
    p.add_argument("--norm", default="auto", choices=("auto", "imagenet", "video"),
                   help="auto: ImageNet's mean/std for ImageNet classifiers and released files, "
                   "else the video one")
    p.add_argument("--canvas", type=positive_int, default=256,
                   help="resize the short side to this, centre square")
    p.add_argument("--eval_crop", type=fraction, default=0.875,
                   help="the centre fraction of the canvas (224 of 256)")
    p.add_argument("--batch_size", type=positive_int, default=64)
    p.add_argument("--workers", type=nonnegative_int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--attention", action="store_true",
                   help="draw the class-token attention of the first two models")
    p.add_argument("--attention_dataset", default="cue-conflict", help="the images for --attention")
    p.add_argument("--attention_images", type=positive_int, default=6)
    p.add_argument("--out", default="runs/ood")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    args = parse_with_settings(p, SETTINGS, argv)
    args.names = args.names.split("|") if args.names else [run_name(path) for path in args.ckpt]
    if len(args.names) != len(args.ckpt):
        p.error(f"--names gives {len(args.names)} names for {len(args.ckpt)} checkpoints")
    if args.attention and len(args.ckpt) < 2:
        p.error("--attention draws two models side by side: give two --ckpt")
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.datasets if d not in OOD_CONDITIONS]
    if unknown:
        p.error(f"--datasets: {unknown[0]!r} is not one of model-vs-human's: "
                f"{', '.join(OOD_CONDITIONS)}")
    return args


def run_name(path):
    """runs/S-Vid/best.pt -> 'S-Vid'; my_model.pt -> 'my_model'."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return (os.path.basename(os.path.dirname(os.path.abspath(path)))
            if stem in ("best", "checkpoint") else stem)

# -----------------------------------------------------------------------------
# the datasets, in model-vs-human's layout


# The 17 datasets, their conditions as model-vs-human's experiment definitions spell them, and the
# conditions its OOD-accuracy benchmark leaves out: the undistorted control, and those where humans
# score under 20%.
OOD_CONDITIONS = {
    "colour": ["cr", "bw"], "contrast": ["c100", "c50", "c30", "c15", "c10", "c05", "c03", "c01"],
    "high-pass": ["inf", "3.0", "1.5", "1.0", "0.7", "0.55", "0.45", "0.4"],
    "low-pass": ["0", "1", "3", "5", "7", "10", "15", "40"],
    "phase-scrambling": ["0", "30", "60", "90", "120", "150", "180"],
    "power-equalisation": ["0", "pow"],
    "false-colour": ["True", "False"], "rotation": ["0", "90", "180", "270"],
    "eidolonI": [f"{2 ** i}-10-10" for i in range(8)],
    "eidolonII": [f"{2 ** i}-3-10" for i in range(8)],
    "eidolonIII": [f"{2 ** i}-0-10" for i in range(8)],
    "uniform-noise": ["0.0", "0.03", "0.05", "0.1", "0.2", "0.35", "0.6", "0.9"],
    "sketch": None, "stylized": None, "edge": None, "silhouette": None, "cue-conflict": None}
OOD_EXCLUDED = {
    "colour": ["cr"], "contrast": ["c100", "c03", "c01"],
    "high-pass": ["inf", "0.55", "0.45", "0.4"], "low-pass": ["0", "15", "40"],
    "phase-scrambling": ["0", "150", "180"], "power-equalisation": ["0"], "false-colour": ["True"],
    "rotation": ["0"], "eidolonI": ["1-10-10", "64-10-10", "128-10-10"],
    "eidolonII": ["1-3-10", "32-3-10", "64-3-10", "128-3-10"],
    "eidolonIII": ["1-0-10", "16-0-10", "32-0-10", "64-0-10", "128-0-10"],
    "uniform-noise": ["0.0", "0.6", "0.9"]}
# <dataset>/<category>/*.png for these three; the rest are <dataset>/dnn/session-*/
OOD_BY_CATEGORY = ("edge", "silhouette", "cue-conflict")


def ood_condition(dataset, raw):
    """The condition as model-vs-human's lists spell it. The files write some differently ('0.00',
    '3', 'true'), so a raw field matches a listed one when both are the same number, or the same
    word in any case."""
    for listed in OOD_CONDITIONS[dataset] or []:
        try:
            if float(listed) == float(raw):
                return listed
        except ValueError:
            if listed.lower() == raw.lower():
                return listed
    if OOD_CONDITIONS[dataset] is not None:
        raise ValueError(f"{dataset}: unknown condition {raw!r}; "
                         f"model-vs-human lists {OOD_CONDITIONS[dataset]}")
    return raw


def parse_ood_name(dataset, path):
    """(condition, category) of one file.
    Session datasets: trial_experiment_subject_condition_category_xx_orig.png (the original's name
    may itself hold underscores). Edge and silhouette: the folder is the category, no condition.
    Cue-conflict <shape><k>-<texture><m>.png: the folder is the (shape) category, and we return the
    texture category as the condition, for the shape-bias analysis."""
    name = os.path.splitext(os.path.basename(path))[0]
    if dataset in OOD_BY_CATEGORY:
        category = os.path.basename(os.path.dirname(path))
        texture = name.split("-")[-1].rstrip("0123456789") if dataset == "cue-conflict" else ""
        return texture, category
    fields = name.split("_")
    if len(fields) < 6:
        raise ValueError(f"{path}: expected trial_experiment_subject_condition_category_..., "
                         f"got {name!r}")
    return ood_condition(dataset, fields[3]), fields[4]


def ood_items(root, dataset, classes=None):
    """One model-vs-human dataset under root: Items labelled by category and the (n,) conditions.
    classes: the category names labels index into (default: the sorted categories found)."""
    if dataset not in OOD_CONDITIONS:
        raise ValueError(f"unknown OOD dataset {dataset!r}; "
                         f"model-vs-human has {', '.join(OOD_CONDITIONS)}")
    folder = os.path.join(root, dataset)
    if dataset not in OOD_BY_CATEGORY:
        require_dir(os.path.join(folder, "dnn"), f"OOD dataset {dataset}")
        folder = os.path.join(folder, "dnn")
    require_dir(folder, f"OOD dataset {dataset}")
    paths = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(folder) for f in fs
                   if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    parsed = [parse_ood_name(dataset, p) for p in paths]
    classes = sorted({c for _, c in parsed}) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    for path, (_, category) in zip(paths, parsed):
        if category not in index:
            raise ValueError(f"{path}: category {category!r} is not one of the model's classes "
                             f"{classes}")
    items = make_items(paths, [index[c] for _, c in parsed], classes,
                       f"OOD dataset {dataset} under {root}")
    return items, np.array([condition for condition, _ in parsed], dtype=str)

# -----------------------------------------------------------------------------
# from the model's classes to the 16 categories


def read_mapping():
    """The 16 categories, and each one's ImageNet class indices and WNIDs
    (in torchvision's order: sorted WNIDs)."""
    with open(os.path.join(ASSETS, "imagenet16_mapping.json")) as f:
        mapping = json.load(f)
    return mapping["categories"], mapping["imagenet_indices"], mapping["imagenet_wnids_for_indices"]


def to_categories(probs, classes, categories):
    """probs (n, C) over the model's classes -> (n, 16) over the categories. A 1000-way ImageNet
    model: the mean of each category's ImageNet probabilities (model-vs-human's rule; a mean, not a
    sum, so 'dog', which holds 109 ImageNet classes, is not favoured over 'oven', which holds 1).
    Otherwise the model's own classes, by name."""
    if probs.shape[1] == 1000:
        indices = read_mapping()[1]
        return torch.stack([probs[:, indices[c]].mean(1) for c in categories], dim=1)
    return probs[:, [classes.index(c) for c in categories]]


def model_categories(classes, num_classes):
    """The 16 categories a model is scored on, and how its outputs map to them. A 1000-way model is
    taken to be an ImageNet classifier in the standard class order; ours name their classes (WNIDs,
    from finetune.py's sorted class folders), and those names must then agree with the mapping's."""
    if num_classes == 1000:
        categories, indices, wnids = read_mapping()
        for c in categories if classes is not None else []:
            wrong = [(i, w) for i, w in zip(indices[c], wnids[c]) if classes[i] != w]
            if wrong:
                raise ValueError(f"the model's class {wrong[0][0]} is {classes[wrong[0][0]]!r}, "
                                 f"ImageNet's is {wrong[0][1]!r} ({c}): not ImageNet's class order")
        return categories, "ImageNet-1000 probabilities averaged per category"
    if classes is None:
        raise ValueError(f"a {num_classes}-way classifier without class names: eval_ood reads "
                         "1000-way ImageNet classifiers, or ours, "
                         "whose checkpoints name their classes")
    return sorted(classes), "the model's own classes, by name"

# -----------------------------------------------------------------------------
# scoring


def score_dataset(probs16, labels, conditions, dataset, categories):
    """Accuracy of one dataset from (n, 16) category probabilities (NaN rows: unreadable files, left
    out), the category labels (n,) and the conditions (n,) as ood_items returns them."""
    readable = ~torch.isnan(probs16).any(1).numpy()
    pred = probs16.argmax(1).numpy()
    hit = pred == labels
    excluded = set(OOD_EXCLUDED.get(dataset, []))
    keep = readable & ~np.isin(conditions, list(excluded))
    result = {"accuracy": float(hit[keep].mean()) if keep.any() else float("nan"),
              "n": int(keep.sum()), "excluded_conditions": sorted(excluded & set(conditions)),
              "unreadable": int((~readable).sum())}
    if OOD_CONDITIONS[dataset]:                      # the parametric datasets: accuracy per level
        result["per_condition"] = {c: float(hit[readable & (conditions == c)].mean())
                                   for c in OOD_CONDITIONS[dataset]
                                   if (readable & (conditions == c)).any()}
    if dataset == "cue-conflict":                    # the condition is the texture's category
        texture = np.array([categories.index(c) for c in conditions])
        conflict = readable & (texture != labels)
        shape, tex = int((pred == labels)[conflict].sum()), int((pred == texture)[conflict].sum())
        result.update(shape_decisions=shape, texture_decisions=tex,
                      shape_bias=shape / (shape + tex) if shape + tex else float("nan"))
    return result


def find_datasets(root, datasets):
    """(present, missing): which of the datasets have their folder under root
    (session datasets: <name>/dnn/)."""
    where = lambda d: (os.path.join(root, d) if d in OOD_BY_CATEGORY
                       else os.path.join(root, d, "dnn"))
    return ([d for d in datasets if os.path.isdir(where(d))],
            [d for d in datasets if not os.path.isdir(where(d))])


def evaluate(probabilities_of, root, datasets, categories):
    """{dataset: result} for the (present) datasets under root.
    probabilities_of(items) -> (n, 16) category probabilities, NaN rows for unreadable files."""
    results = {}
    for dataset in datasets:
        items, conditions = ood_items(root, dataset, categories)
        results[dataset] = score_dataset(probabilities_of(items), items.labels, conditions, dataset,
                                         categories)
    return results


def summary(results):
    """The plain mean over datasets (each dataset counts once, however many images it has)."""
    scored = [r["accuracy"] for r in results.values() if not math.isnan(r["accuracy"])]
    return float(np.mean(scored)) if scored else float("nan")

# -----------------------------------------------------------------------------
# running a model on the images


@torch.no_grad()
def class_probabilities(model, items, mean_std, args, device):
    """Softmax over the model's classes for every image, (n, C); NaN rows for unreadable files.
    Images go in as static clips of the model's frame count (one frame for an image model)."""
    cfg = model.cfg
    indexed = items.relabel(np.arange(len(items)))   # the loader hands back each row's index
    loader = make_loader(ImageClipDataset(indexed, num_frames=cfg.frames, size=args.canvas),
                         args.batch_size, shuffle=False, drop_last=False, workers=args.workers)
    probs = torch.full((len(items), cfg.num_classes), float("nan"))
    for batch in loader:
        if batch.clips is None:                                   # every image of it unreadable
            continue
        clips, rows = batch.clips.to(device), batch.labels        # (N, T, S, S, 3) uint8
        video = augment(clips, train=False, img_size=cfg.img_size, eval_crop=args.eval_crop,
                        mean=mean_std[0], std=mean_std[1])        # (N, 3, T, s, s)
        with autocast_for(device, args.precision):
            probs[rows] = model(video).float().softmax(-1).cpu()
    return probs


def load_classifier(path, args, device):
    """(model, class names or None, normalisation) of a classifier checkpoint."""
    ckpt = load_checkpoint(path)                       # read once (a ViT-H file is 2.5 GB)
    kind, cfg, _, extra = read_checkpoint(ckpt)
    if kind != "classifier":
        raise ValueError(f"--ckpt {path} is an MAE; finetune it into a classifier first "
                         "(finetune.py --task imagenet)")
    norm = args.norm
    if norm == "auto":                                 # released files: their ImageNet finetuning
        norm = "imagenet" if extra.get("task", "imagenet") == "imagenet" else "video"
    model = load_model(ckpt).to(device).eval()
    return model, extra.get("class_names"), NORMALISATION[norm]

# -----------------------------------------------------------------------------
# the run


def main(args):
    device = Processes(args.device).device               # one process: 17 datasets fit one GPU
    check_results_folder(args.out, ["ood.json"], args.overwrite)   # before evaluating, not after
    if not os.path.isdir(args.data_root):
        fail(f"--data_root {args.data_root}: no such folder "
             "(model-vs-human's datasets, or a toy world's ood/)")
    present, missing = find_datasets(args.data_root, args.datasets)
    if not present:
        fail(f"--data_root {args.data_root}: "
             f"none of the datasets {', '.join(args.datasets)} is there")
    hold_folder(args.out)                                # one evaluation writes a folder at a time
    if missing:
        print(f"not under {args.data_root}, skipped: {', '.join(missing)}", file=sys.stderr)
    models, loaded = [], []
    for name, path in zip(args.names, args.ckpt):
        try:
            model, classes, mean_std = load_classifier(path, args, device)
            categories, rule = model_categories(classes, model.cfg.num_classes)
            bar = tqdm(present, desc=f"ood {name}", dynamic_ncols=True)
            probabilities_of = lambda items: to_categories(
                class_probabilities(model, items, mean_std, args, device), classes, categories)
            results = evaluate(probabilities_of, args.data_root, bar, categories)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
        models.append({"name": name, "ckpt": path, "mapping": rule, "frames": model.cfg.frames,
                       "normalisation": "imagenet" if mean_std[0] == IMAGENET_MEAN else "video",
                       "datasets": results, "missing": missing, "mean": summary(results),
                       "mean_over": f"{len(results)} of {len(OOD_CONDITIONS)} datasets"})
        loaded.append((name, model, classes, mean_std))

    out = {"data_root": args.data_root, "eval_crop": args.eval_crop, "canvas": args.canvas,
           "models": models}
    if len(models) > 1:                                          # the paper's "S-Vid minus S-Img"
        first, second = models[0], models[1]
        shared = [d for d in first["datasets"] if d in second["datasets"]]
        accuracy = lambda m, d: m["datasets"][d]["accuracy"]
        out["difference"] = {"of": f"{first['name']} - {second['name']}",
                             "mean": first["mean"] - second["mean"],
                             "per_dataset": {d: accuracy(first, d) - accuracy(second, d)
                                             for d in shared}}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ood.json.tmp"), "w") as f:
        json.dump(out, f, indent=1)
    os.replace(os.path.join(args.out, "ood.json.tmp"), os.path.join(args.out, "ood.json"))
    bar_chart(models, OOD_CONDITIONS, os.path.join(args.out, "ood.png"))

    shown = [d for d in OOD_CONDITIONS if any(d in m["datasets"] for m in models)]
    print(f"{'dataset':<20}" + "".join(f"{m['name'][:12]:>13}" for m in models) +
          (f"{'difference':>13}" if len(models) > 1 else ""))
    for d in shown + ["mean"]:
        row = [100 * (m["mean"] if d == "mean"
                      else m["datasets"].get(d, {}).get("accuracy", np.nan)) for m in models]
        difference = f"{row[0] - row[1]:>+12.1f}" if len(row) > 1 else ""
        print(f"{d:<20}" + "".join(f"{v:>12.1f}%" for v in row) + difference)
    print(f"results {os.path.join(args.out, 'ood.json')}\n"
          f"figure  {os.path.join(args.out, 'ood.png')}")
    if args.attention:
        try:
            categories = model_categories(loaded[0][2], loaded[0][1].cfg.num_classes)[0]
            items, _ = ood_items(args.data_root, args.attention_dataset, categories)
        except (ValueError, FileNotFoundError) as e:
            fail(f"--attention_dataset: {e}")
        path = os.path.join(args.out, "attention.png")
        attention_figure(loaded[:2], items, args, device, path)
        print(f"attention {path}")
    return out


if __name__ == "__main__":
    run_script(main, parse_args)
