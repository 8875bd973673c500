"""
Linear probe: how much of a task an encoder's frozen features already carry, without any
finetuning.

    # the toy SSV2-like and Kinetics-like sets
    python probe.py --setting toy --ckpt runs/toy_S/checkpoint.pt
    # the same architecture, never trained
    python probe.py --setting toy --untrained toy
    # a checkpoint's architecture, untrained
    python probe.py --setting toy --untrained runs/toy_img/checkpoint.pt
    python probe.py --task ssv2 --data_root /data/ssv2 --ckpt runs/S/checkpoint.pt \\
        --max_per_class 50

Few-shot finetuning (finetune.py) changes every weight, so a good score there does not say whether
pretraining put the task's information into the features or only gave a good start. A linear probe
asks the first question alone: each clip's deterministic view (centre clip, centre crop) goes
through the frozen encoder; two features come out, the class token after the final LayerNorm (what
a classifier's head sees) and the mean of the other tokens; a logistic regression on the
standardised features of the training split is scored on the validation split.

The yardstick is the same architecture untrained (--untrained PRESET or CKPT, seeded): random
projections of the pixels keep much of what is in them, so a pretrained encoder has learnt
something useful for a task only where it beats its untrained self. An image model (1 frame) probes
each frame and averages the features over the clip's frames. Results: a table, and a JSON file
(--out) with top-1 per task and feature, the chance level and the counts.
"""

import argparse
import json
import os
import re

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from augment import augment
from checkpoints import load_model, read_checkpoint
from data import ClipDataset, kinetics_items, make_loader, ssv2_items
from model import VisionTransformer, frame_by_frame, make_config
from runs import check_out_folder
from settings import TOY_FRAME, TOY_WORLD, parse_with_settings
from training import (ArgumentParser, Processes, autocast_for, fail, fraction, nonnegative_int,
                      positive_float, positive_int, run_script)
from video import CLIP_FRAMES

SPLITS = {"ssv2": (ssv2_items, "train", "validation"),
          "kinetics": (kinetics_items, "train", "val")}
SETTINGS = {
    "paper": {},
    "toy": dict(world=TOY_WORLD, task="ssv2,kinetics", canvas=TOY_FRAME, eval_crop=1.0, workers=0),
}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default="ssv2", help="ssv2, kinetics, or both: 'ssv2,kinetics'")
    p.add_argument("--data_root", default=None, help="the task's folder (one task only)")
    p.add_argument("--world", default=None,
                   help="a toy world: each task's folder is WORLD/<task>")
    p.add_argument("--ckpt", default=None,
                   help="an MAE or classifier checkpoint (ours or the authors' released file, "
                   "or its name: checkpoints.py --list)")
    p.add_argument("--untrained", default=None, metavar="PRESET|CKPT",
                   help="instead of --ckpt: this preset's architecture, or this checkpoint's "
                   "(an image model's too), with fresh seeded weights")
    p.add_argument("--patch", type=positive_int, default=None,
                   help="with --untrained PRESET: the spatial tube size")
    p.add_argument("--t_patch", type=positive_int, default=None,
                   help="with --untrained PRESET: the temporal tube size")
    p.add_argument("--max_per_class", type=positive_int, default=None,
                   help="at most this many training clips per class "
                   "(seeded): a probe needs no more than a few hundred")
    p.add_argument("--C", type=positive_float, default=1.0,
                   help="the logistic regression's inverse L2 strength")
    p.add_argument("--canvas", type=positive_int, default=256,
                   help="decode frames to this square canvas (short side)")
    p.add_argument("--eval_crop", type=fraction, default=0.875,
                   help="the centre fraction of the canvas the model sees")
    p.add_argument("--batch_size", type=positive_int, default=64)
    p.add_argument("--workers", type=nonnegative_int, default=4)
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="the untrained weights and the --max_per_class choice")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None,
                   help="JSON file of the scores (default: probe_<checkpoint name>.json beside "
                   "the checkpoint; untrained: "
                   "runs/probe_untrained_<preset or run folder>[_p<patch>][_t<t_patch>]"
                   "_seed<seed>.json)")
    args = parse_with_settings(p, SETTINGS, argv)
    args.task = args.task.split(",")
    if unknown := [t for t in args.task if t not in SPLITS]:
        p.error(f"--task {','.join(unknown)}: choose from {', '.join(SPLITS)}")
    if (args.ckpt is None) == (args.untrained is None):
        p.error("give one of --ckpt and --untrained")
    if (args.patch or args.t_patch) and (args.ckpt or os.path.isfile(args.untrained)):
        p.error("--patch and --t_patch shape an untrained preset; a checkpoint carries its own")
    if args.data_root and len(args.task) > 1:
        p.error("--data_root names one task's folder; for several tasks use --world")
    if not args.data_root and not args.world:
        p.error("give --data_root (or --world for a toy world)")
    # beside it: runs/x/probe_checkpoint.json
    if args.out is None and args.ckpt and os.path.isfile(args.ckpt):
        stem = os.path.splitext(os.path.basename(args.ckpt))[0]
        args.out = os.path.join(os.path.dirname(args.ckpt), f"probe_{stem}.json")
    elif args.out is None and args.ckpt:               # a released name: runs/probe_<name>.json
        # hvm-1/vit_hvm1_none: hvm-1_vit_hvm1_none
        name = os.path.splitext(re.sub(r"[^\w@.-]+", "_", args.ckpt))[0]
        args.out = os.path.join("runs", f"probe_{name}.json")
    elif args.out is None:
        untrained = args.untrained
        if os.path.isfile(untrained):                  # runs/x/checkpoint.pt -> x
            untrained = os.path.basename(os.path.dirname(os.path.abspath(untrained)))
        tubes = ((f"_p{args.patch}" if args.patch else "")
                 + (f"_t{args.t_patch}" if args.t_patch else ""))
        args.out = os.path.join("runs", f"probe_untrained_{untrained}{tubes}_seed{args.seed}.json")
    return args


def encoder(args, device):
    """The frozen encoder: a checkpoint's (its decoder or head unused), or an untrained one of a
    preset's or a checkpoint's architecture (the encoder's weights are drawn first, so an MAE of the
    same seed has the same ones)."""
    try:
        if args.ckpt:
            model = load_model(args.ckpt)          # a file or a released model's name
        else:
            like = os.path.isfile(args.untrained)  # a checkpoint's architecture, or a preset's
            cfg = (read_checkpoint(args.untrained)[1] if like else
                   make_config(args.untrained, patch=args.patch, t_patch=args.t_patch))
            torch.manual_seed(args.seed)
            model = VisionTransformer(cfg)
    except (ValueError, FileNotFoundError) as e:
        fail(f"{'--ckpt' if args.ckpt else '--untrained'}: {e}")
    return model.to(device).eval()


def per_class_cap(items, cap, seed):
    """At most `cap` items per class, chosen with a seeded generator, in their original order."""
    if cap is None:
        return items
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(items.labels == c))[:cap]
            for c in range(len(items.classes))]
    return items.select(np.sort(np.concatenate(keep)))


@torch.no_grad()
def features(model, items, args, device, desc):
    """(class-token features (n, D), mean-token features (n, D), labels (n,))
    of every readable clip."""
    cfg = model.cfg
    frames = CLIP_FRAMES if cfg.frames == 1 else cfg.frames   # an image model: each of 16 frames
    loader = make_loader(ClipDataset(items, train=False, num_frames=frames, size=args.canvas),
                         args.batch_size, shuffle=False, workers=args.workers, drop_last=False)
    cls, mean, labels = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False):
        if batch.clips is None:                           # every clip of it unreadable
            continue
        video = augment(batch.clips.to(device), train=False, img_size=cfg.img_size,
                        eval_crop=args.eval_crop)         # (N, 3, T, s, s)
        with autocast_for(device):
            # (N, 1 + L, D)
            x = frame_by_frame(lambda v: model.forward_features(v).float(), video, cfg.frames)
        cls.append(x[:, 0].cpu())                         # (N, D)
        mean.append(x[:, 1:].mean(1).cpu())               # (N, D)
        labels.append(batch.labels)
    if not labels:
        fail(f"{desc}: not one of its {len(items)} clips could be read")
    return torch.cat(cls).numpy(), torch.cat(mean).numpy(), torch.cat(labels).numpy()


def fit_and_score(train, val, C):
    """Top-1 of a logistic regression on standardised features (train, val: (features, labels));
    its solver (L-BFGS) draws nothing at random: the score is a function of the features alone."""
    scaler = StandardScaler().fit(train[0])
    classifier = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(train[0]), train[1])
    return float(classifier.score(scaler.transform(val[0]), val[1]))


def main(args):
    device = Processes(args.device).device
    if os.path.isdir(args.out):
        fail(f"--out {args.out} is a folder; give the JSON file to write")
    check_out_folder(os.path.dirname(os.path.abspath(args.out)))   # before the features, not after
    model = encoder(args, device)
    config = {k: getattr(model.cfg, k)
              for k in ("width", "depth", "patch", "t_patch", "img_size", "frames")}
    result = {"ckpt": args.ckpt, "untrained": args.untrained, "config": config, "tasks": {}}
    for task in args.task:
        read, train_split, val_split = SPLITS[task]
        root = args.data_root or os.path.join(args.world, task)
        try:
            train = per_class_cap(read(root, train_split), args.max_per_class, args.seed)
            val = read(root, val_split)
        except (FileNotFoundError, ValueError) as e:
            fail(f"--task {task}: {e}")
        cls_tr, mean_tr, y_tr = features(model, train, args, device, f"{task} train")
        cls_va, mean_va, y_va = features(model, val, args, device, f"{task} val")
        cls_top1 = fit_and_score((cls_tr, y_tr), (cls_va, y_va), args.C)
        mean_top1 = fit_and_score((mean_tr, y_tr), (mean_va, y_va), args.C)
        result["tasks"][task] = {"classes": len(train.classes), "chance": 1 / len(train.classes),
                                 "num_train": len(y_tr), "num_val": len(y_va),
                                 "cls_top1": cls_top1, "mean_top1": mean_top1}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"linear probe of {args.ckpt or 'the untrained ' + args.untrained}, "
          f"top-1 on the validation split (written to {args.out}):")
    print(f"{'task':<10}{'classes':>8}{'train':>7}{'val':>6}{'chance':>8}{'class token':>13}"
          f"{'token mean':>12}")
    for task, r in result["tasks"].items():
        print(f"{task:<10}{r['classes']:>8}{r['num_train']:>7}{r['num_val']:>6}{r['chance']:>8.1%}"
              f"{r['cls_top1']:>13.1%}{r['mean_top1']:>12.1%}")


if __name__ == "__main__":
    run_script(main, parse_args)
