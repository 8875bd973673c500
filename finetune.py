"""
Few-shot finetuning and evaluation: a pretrained encoder (or none) learns to classify actions or objects from k
labelled examples per class, and is scored on the full validation set. The paper's Results 1, 2 and 5.

    torchrun --nproc_per_node=1 finetune.py --task ssv2 --data_root /data/ssv2 --shots 10 --init runs/S/checkpoint.pt
    python finetune.py --setting toy --task ssv2 --shots 10 --init runs/toy_S/checkpoint.pt      # the toy world, CPU
    python finetune.py --setting toy --task ssv2 --embed runs/toy_S/checkpoint.pt runs/ft10/best.pt runs/ft50/best.pt

Tasks: ssv2 (actions told apart by motion), kinetics (train/<class>/ and val/<class>/ videos: Kinetics-700 or any
such folder), imagenet (images as static 16-frame clips). The defaults are the paper's: the whole model
is trained, layer-wise lr decay 0.8, lr 1.5e-4, weight decay 1e-4, label smoothing 0.1, dropout 0.3, drop path 0.1,
gradient clipping 5, random resized crops (0.08, 1) and flips (none on SSV2: its labels say left and right), 32
clips per step, 30 epochs. An image model (an image-MAE checkpoint, 1 frame) is trained on single frames and scored
on clips by averaging its logits over the 16 frames, as the paper's S-Img.

Model selection: after each epoch the model is scored on a selection set of k further labelled examples per class
from the training split, outside the k shots (the authors selected on the validation set). The best and the last
models are then both scored on the full validation set (centre clip, centre crop). Outputs in --out: checkpoint.pt
(the last, with the optimizer: --resume continues it exactly), best.pt, results.json, predictions.npz (the
validation set's log-probabilities, best and last), log.jsonl, curves.png.
"""

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from augment import IMAGENET_MEAN, IMAGENET_STD, VIDEO_MEAN, VIDEO_STD, augment, sample_crops
from data import (ClipDataset, ImageClipDataset, authors_split, empty_classes, first_readable, image_items,
                  kinetics_items, kshot_indices, make_loader, ssv2_items)
from figures import curves, embedding_panels
from checkpoints import checkpoint_config, load_checkpoint, load_model, resolve_checkpoint
from model import VideoClassifier, frame_by_frame, make_config, param_groups
from settings import TOY_FRAME, TOY_WORLD, parse_with_settings
from training import (ArgumentParser, Processes, RunLog, StepSampler, StopRequests, all_finite, autocast_for,
                      check_out_folder, check_resumed_flags, fail, fraction, generator, hold_folder, learning_rate,
                      learning_rate_flag, nonnegative_float, nonnegative_int, positive_float,
                      positive_int, prepare_run_folder, release_folder, require_order, rng_states, run_script,
                      save_checkpoint, seed_int, set_lr, set_rng_states, unit_interval, unwrap)

TASKS = {  # task: (training split, validation split, flip when training, normalisation)
    "ssv2": ("train", "validation", False, (VIDEO_MEAN, VIDEO_STD)),
    "kinetics": ("train", "val", True, (VIDEO_MEAN, VIDEO_STD)),
    "imagenet": ("train", "val", True, (IMAGENET_MEAN, IMAGENET_STD)),
}
SETTINGS = {
    "paper": {},
    # the toy world on a 2-core CPU: its folders, the toy preset from scratch, clips cached in memory
    "toy": dict(world=TOY_WORLD, preset="toy", img_size=TOY_FRAME, canvas=TOY_FRAME, eval_crop=1.0, workers=0,
                cache=True, lr=1e-3, epochs=40, eval_batch=128),
}
# A resumed run continues one run: every flag must be the checkpoint's but these (where things are, how they are
# read and how fast, and the arithmetic's precision)
MAY_CHANGE = {"data_root", "world", "workers", "cache", "cache_dir", "eval_batch", "precision", "device", "out",
              "resume", "overwrite", "setting", "stop_at"}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # data
    p.add_argument("--task", default="ssv2", choices=tuple(TASKS))
    p.add_argument("--data_root", default=None, help="the task's folder (SSV2: the one holding the json files)")
    p.add_argument("--world", default=None, help="a toy world: --data_root defaults to WORLD/<task>")
    p.add_argument("--shots", default="10", help="k labelled examples per class (10, 50, ...), 'all', a percentage "
                   "of the training set, class-balanced ('2%%': ImageNet-2%%), or the authors' split ('10shot')")
    p.add_argument("--select_shots", type=nonnegative_int, default=None,
                   help="examples per class for model selection, outside "
                   "the shots (default: as many as the shots; 0 = keep the last epoch)")
    p.add_argument("--canvas", type=positive_int, default=256, help="decode frames to this square canvas (short side)")
    p.add_argument("--frames", type=positive_int, default=16,
                   help="frames per clip when --init scratch; an image model "
                   "is scored on clips of this many")
    p.add_argument("--views", type=positive_int, default=1,
                   help="clips per validation video, spread evenly (softmax averaged)")
    p.add_argument("--eval_crop", type=fraction, default=0.875, help="validation: the centre fraction of the canvas")
    p.add_argument("--cache", action="store_true", help="keep decoded clips in memory (small few-shot sets)")
    p.add_argument("--cache_dir", default=None, help="also keep them on disk here (implies --cache), one file a "
                   "video, for later runs on the same videos (other seeds, other models)")
    p.add_argument("--workers", type=nonnegative_int, default=8)
    # model
    p.add_argument("--init", default="scratch", help="a checkpoint (our MAE or classifier, an image MAE, or the "
                   "authors' released file or its name: checkpoints.py --list), or 'scratch'")
    p.add_argument("--preset", default="huge_patch14", help="the architecture when --init scratch")
    p.add_argument("--img_size", type=positive_int, default=224, help="when --init scratch (checkpoints carry theirs)")
    p.add_argument("--patch", type=positive_int, default=None,
                   help="spatial patch size when --init scratch (default: the "
                   "preset's)")
    p.add_argument("--t_patch", type=positive_int, default=2,
                   help="when --init scratch (1 with --frames 1: an image model)")
    p.add_argument("--dropout", type=unit_interval, default=0.3)
    p.add_argument("--drop_path", type=unit_interval, default=0.1)
    # optimisation
    p.add_argument("--batch_size", type=positive_int, default=32, help="clips per step, over all processes")
    p.add_argument("--accum", type=positive_int, default=1, help="gradient accumulation: micro-batches per step")
    p.add_argument("--epochs", type=positive_float, default=30)
    p.add_argument("--stop_at", type=positive_int, default=None, help="stop (with a checkpoint, unscored) at this "
                   "step, the schedule still that of --epochs: a run in pieces, continued with --resume auto")
    p.add_argument("--lr", type=learning_rate_flag, default=1.5e-4, help="absolute learning rate of the head")
    p.add_argument("--layer_decay", type=fraction, default=0.8)
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--warmup_epochs", type=nonnegative_float, default=0)
    p.add_argument("--weight_decay", type=nonnegative_float, default=1e-4)
    p.add_argument("--label_smoothing", type=unit_interval, default=0.1)
    p.add_argument("--clip_grad", type=positive_float, default=5.0)
    p.add_argument("--crop_scale", type=fraction, nargs=2, default=(0.08, 1.0))
    p.add_argument("--seed", type=seed_int, default=0, help="which shots, the head's start, the data order")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    # evaluation and outputs
    p.add_argument("--eval_batch", type=positive_int, default=32)
    p.add_argument("--subset", default=None, help="class names ('|'-separated, or a file with one per line) to "
                   "report accuracy on apart (the paper's developmentally realistic SSV2 categories)")
    p.add_argument("--embed", nargs="+", default=None, metavar="CKPT", help="no training: pooled features of the "
                   "validation set from each checkpoint (a file or a released name), and a t-SNE figure of the "
                   "--subset classes side by side")
    p.add_argument("--embed_titles", default=None, help="'|'-separated panel titles (default: file names)")
    p.add_argument("--out", default=None, help="run folder (default runs/ft_<task>_<shots>_seed<seed>)")
    p.add_argument("--resume", default=None, help="a checkpoint to continue, or 'auto'")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (without it, a folder that "
                   "holds a run is refused unless --resume is given)")
    args = parse_with_settings(p, SETTINGS, argv)
    require_order(p, "crop_scale", args.crop_scale)
    args.cache = args.cache or args.cache_dir is not None
    if args.cache_dir is not None:
        try:
            os.makedirs(args.cache_dir, exist_ok=True)
        except OSError as e:
            p.error(f"--cache_dir {args.cache_dir}: cannot make the folder ({e.strerror})")
    if args.data_root is None and args.world:
        args.data_root = os.path.join(args.world, args.task)
    if args.patch is not None and args.init != "scratch":
        p.error("--patch is for --init scratch: a checkpoint carries its own patch size")
    if args.data_root is None:
        p.error(f"--task {args.task} needs --data_root (or --world for a toy world)")
    args.out = args.out or os.path.join("runs", f"ft_{args.task}_{args.shots.replace('%', 'pct')}_seed{args.seed}")
    return args

# -----------------------------------------------------------------------------
# which examples


def task_items(task, root, split):
    if task == "ssv2":
        return ssv2_items(root, split)
    return (image_items if task == "imagenet" else kinetics_items)(root, split)


def few_shot(items, shots, select_shots, seed, task):
    """(training items, selection items or None). k-shot sets are nested across k for one seed (10 inside 50); the
    selection set is the next k' examples of each class, so it never overlaps the training shots."""
    labels = items.labels
    if shots == "all":
        return items, None
    if shots in ("10shot", "50shot"):                                 # the authors' exact training videos
        train = authors_split(items, task, shots)
        k = int(shots[:2]) if select_shots is None else select_shots
        if not k:
            return train, None
        pool = np.flatnonzero(~np.isin(items.paths, train.paths))        # the training videos outside the split
        select = items.select(pool[kshot_indices(items.labels[pool], k, seed)])
        to_theirs = np.array([train.classes.index(c) for c in items.classes])  # our class order -> the authors'
        return train, select.relabel(to_theirs[select.labels], train.classes)
    try:
        if shots.endswith("%"):                                       # class-balanced: the same k for every class
            share = float(shots[:-1])
            k = max(1, round(share / 100 * len(labels) / len(items.classes))) if 0 < share <= 100 else 0
        else:
            k = int(shots)
    except ValueError:
        k = 0
    if k < 1:
        raise ValueError(f"--shots {shots!r}: give a number >= 1, a percentage in (0, 100] ('2%'), 'all', '10shot' "
                         f"or '50shot'")
    k_select = k if select_shots is None else select_shots
    try:
        train = items.select(kshot_indices(labels, k, seed, classes=items.classes))     # every class, or one line
        if not k_select:
            return train, None
        return train, items.select(kshot_indices(labels, k_select, seed, skip=k, classes=items.classes))
    except ValueError as e:                                           # too few examples of some class
        raise ValueError(f"--shots {shots} with {k_select} per class for selection: {e}") from None


def read_subset(spec, classes):
    """Class names from '|'-separated text or a file with one per line, checked against the task's classes."""
    if not spec:
        return []
    names = open(spec).read().splitlines() if os.path.isfile(spec) else spec.split("|")
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ValueError(f"--subset: {unknown[0]!r} is not a class of this task (e.g. {classes[0]!r})")
    return names

# -----------------------------------------------------------------------------
# the model and its clips


def build_model(args, num_classes):
    """(classifier, what it started from). Checkpoints carry their own architecture; a new head when the classes
    differ (an MAE always)."""
    heads = dict(num_classes=num_classes, dropout=args.dropout, drop_path=args.drop_path)
    if args.init == "scratch":
        try:
            cfg = make_config(args.preset, img_size=args.img_size, frames=args.frames, t_patch=args.t_patch,
                              patch=args.patch, **heads)
        except ValueError as e:                                        # name the flags that shape a scratch model
            raise ValueError(f"--init scratch (--preset, --img_size, --frames, --patch, --t_patch): {e}") from None
        torch.manual_seed(args.seed)
        return VideoClassifier(cfg), "scratch"
    ckpt = load_checkpoint(args.init)
    kind = ckpt.get("config", {}).get("kind", "released")
    torch.manual_seed(args.seed)                                      # the new head's start
    return load_model(ckpt, kind="classifier", source=args.init, **heads), kind


def clip_source(items, args, train, frames):
    if args.task == "imagenet":                                       # an image, repeated into a static clip
        return ImageClipDataset(items, num_frames=frames, size=args.canvas)
    return ClipDataset(items, train=train, num_frames=frames, size=args.canvas, views=1 if train else args.views,
                       cache=args.cache, cache_dir=args.cache_dir)


def eval_source(items, args, procs, cfg):
    """This process's shard of an evaluation set, built once (so a cache outlives each evaluation). An image model
    is scored on whole clips of --frames frames, frame by frame; a static image is the same in every frame."""
    frames = args.frames if cfg.frames == 1 and args.task != "imagenet" else cfg.frames
    return clip_source(items.select(np.arange(procs.rank, len(items), procs.world)), args, False, frames)


@torch.no_grad()
def predict(model, dataset, args, procs, features=False):
    """Log-probabilities (or pooled features) and labels of every readable item of an eval_source, gathered on
    every process. An image model scores each frame and averages its logits (S-Img); views average softmax."""
    model = unwrap(model).eval()
    cfg, mean_std = model.cfg, TASKS[args.task][3]
    loader = make_loader(dataset, args.eval_batch, shuffle=False, drop_last=False,
                         workers=0 if args.cache else min(args.workers, 4))
    outputs, labels = [], []
    for batch in loader:
        if batch.clips is None:                                         # every file of it unreadable
            continue
        clips, y = batch.clips.to(procs.device), batch.labels                 # (N*V, T, S, S, 3)
        video = augment(clips, train=False, img_size=cfg.img_size, eval_crop=args.eval_crop, mean=mean_std[0],
                        std=mean_std[1])                               # (N*V, 3, T, s, s)
        score = lambda v: (model.features(v) if features else model(v)).float()
        with autocast_for(procs.device, args.precision):
            out = frame_by_frame(score, video, cfg.frames)             # (N*V, C); an image model's frames averaged
        views = 1 if args.task == "imagenet" else args.views
        if not features:
            out = out.softmax(-1).view(-1, views, out.shape[-1]).mean(1).log()   # (N, C): views averaged
        else:
            out = out.view(-1, views, out.shape[-1]).mean(1)
        outputs.append(out.cpu())
        labels.append(y[::views])
    out = (torch.cat(outputs), torch.cat(labels))
    if procs.world > 1:
        parts = [None] * procs.world
        dist.all_gather_object(parts, out)
        out = tuple(torch.cat([part[i] for part in parts]) for i in range(2))
    return out

# -----------------------------------------------------------------------------
# scores


def scores(logits, labels, classes, subset=()):
    """top-1, top-5 (top-k of at most the number of classes), accuracy per class, and on the subset vs the rest."""
    k = min(5, len(classes))
    topk = logits.topk(k, dim=1).indices                               # (n, k)
    hit1, hitk = topk[:, 0] == labels, (topk == labels[:, None]).any(1)
    result = {"top1": hit1.float().mean().item(), "top5": hitk.float().mean().item(), "n": len(labels),
              "per_class": {c: hit1[labels == i].float().mean().item() for i, c in enumerate(classes)
                            if (labels == i).any()}}
    if subset:
        inside = torch.isin(labels, torch.tensor([classes.index(c) for c in subset]))
        for name, rows in (("subset", inside), ("rest", ~inside)):
            result[name] = {"top1": hit1[rows].float().mean().item(), "top5": hitk[rows].float().mean().item(),
                            "n": int(rows.sum())}
    return result


def embed(args, procs):
    """Pooled features (the class token after the final LayerNorm: what the head sees) of the validation set, from
    each checkpoint, and t-SNE panels of the --subset classes (all classes when none) side by side: Figure 3."""
    try:
        val = task_items(args.task, args.data_root, TASKS[args.task][1])
        names = read_subset(args.subset, val.classes) or val.classes
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    try:                                        # files, or released names (downloaded now): all there before any work
        files = [resolve_checkpoint(p) for p in args.embed]
    except (ValueError, FileNotFoundError) as e:
        fail(f"--embed: {e}")
    if procs.main:
        hold_folder(args.out)
    keep = np.flatnonzero(np.isin(val.labels, [val.classes.index(c) for c in names]))
    titles = args.embed_titles.split("|") if args.embed_titles else [os.path.basename(p) for p in args.embed]
    panels = []
    for path, file, title in zip(args.embed, files, titles):
        try:
            model = load_model(file, kind="classifier", num_classes=len(val.classes))
        except ValueError as e:
            fail(f"--embed: {e}")
        model = model.to(procs.device)
        feats, labels = predict(model, eval_source(val.select(keep), args, procs, model.cfg), args, procs, True)
        stem = os.path.splitext(os.path.basename(path))[0]
        if procs.main:
            os.makedirs(args.out, exist_ok=True)
            np.savez(os.path.join(args.out, f"features_{len(panels)}_{stem}.npz"), features=feats.numpy(),
                     labels=labels.numpy(), classes=np.array(val.classes), checkpoint=path)
        panels.append((title, feats.numpy(), labels.numpy()))
    if procs.main:
        figure = os.path.join(args.out, "tsne.png")
        embedding_panels(panels, val.classes, figure, seed=args.seed)
        procs.print(f"features and t-SNE of {len(keep)} validation clips ({len(names)} classes): {figure}")

# -----------------------------------------------------------------------------
# the run


def main(args):
    procs = Processes(args.device)
    device = procs.device
    check_out_folder(args.out)                          # before any work; the folder is made once the checks pass
    if args.embed:
        return embed(args, procs)
    train_split, val_split, flip, (mean, std) = TASKS[args.task]
    try:
        items = task_items(args.task, args.data_root, train_split)
        val = task_items(args.task, args.data_root, val_split)
        if empty := empty_classes(items):           # it would train without that class and score 0% on it
            raise ValueError(f"--data_root {args.data_root}: {len(empty)} class(es) with no readable training "
                             f"video, e.g. {empty[0]!r} (its folder is empty or unreadable)")
        train, select = few_shot(items, args.shots, args.select_shots, args.seed, args.task)
        subset = read_subset(args.subset, train.classes)
        model, init_kind = build_model(args, len(train.classes))
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    if train.classes != val.classes:
        fail(f"{args.data_root}: the training and validation splits have different classes")
    model.to(device)
    cfg = model.cfg
    image_model = cfg.frames == 1                                      # trained on single frames, scored frame-wise
    per_process = args.batch_size // (procs.world * args.accum)
    if per_process < 1 or per_process * procs.world * args.accum != args.batch_size:
        fail(f"--batch_size {args.batch_size} must split evenly over {procs.world} processes x {args.accum} accum")
    if args.batch_size > len(train):
        fail(f"--batch_size {args.batch_size} is more than the {len(train)} training clips of --shots {args.shots}")
    steps_per_epoch = max(1, round(len(train) / args.batch_size))
    total_steps = max(1, round(args.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, args.layer_decay), lr=args.lr,
                                  fused=device.type == "cuda")
    start_step, best = 0, {"score": -1.0, "step": 0}
    resume = os.path.join(args.out, "checkpoint.pt") if args.resume == "auto" else args.resume
    if args.resume == "auto":
        procs.print(f"--resume auto: continuing {resume}" if os.path.exists(resume) else
                    f"--resume auto: no checkpoint in {args.out}, starting at step 0")
    if resume and os.path.exists(resume):
        try:
            state = load_checkpoint(resume, device)
        except ValueError as e:
            fail(f"--resume: {e}")
        if not {"optimizer", "best", "rng"} <= set(state):
            fail(f"--resume {resume} is not a finetuning checkpoint with its optimizer (a checkpoint.pt that "
                 f"finetune.py wrote); to start from {os.path.basename(resume)}'s weights, give it as --init")
        check_resumed_flags(state.get("args", {}), args, MAY_CHANGE, resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, best = state["step"], state["best"]
        set_rng_states(state["rng"])                                     # dropout and drop path continue exactly
        if args.stop_at is not None and args.stop_at <= start_step:
            fail(f"--stop_at {args.stop_at}: {resume} is at step {start_step} already")
    elif resume and args.resume != "auto":
        fail(f"--resume: no checkpoint at {resume}")
    if procs.main:                                      # one run per folder: a second is refused, naming the first
        hold_folder(args.out)
    prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite,
                       holds=("checkpoint.pt", "best.pt", "log.jsonl", "results.json"))
    if procs.world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    frames = 1 if image_model else cfg.frames
    dataset = clip_source(train, args, True, frames)
    try:
        first_readable(dataset, f"the {args.shots}-shot training set under {args.data_root}")
    except FileNotFoundError as e:
        fail(str(e))
    select_source = eval_source(select, args, procs, cfg) if select is not None else None
    sampler = StepSampler(len(train), per_process, procs.rank, procs.world, args.seed, start_step * args.accum)
    batches = iter(make_loader(dataset, per_process, shuffle=False, workers=args.workers, sampler=sampler))
    log = RunLog(os.path.join(args.out, "log.jsonl"), procs.main, start_step if start_step else None)
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    last_good = resume if start_step else None                         # the newest checkpoint known to be sound
    if procs.main:
        procs.print(f"finetuning {init_kind} ({'image model, frame-wise' if image_model else 'video model'}, "
                    f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) on {args.task} "
                    f"{args.shots}-shot: {len(train)} training, {len(select) if select else 0} selection, {len(val)} "
                    f"validation clips, {len(train.classes)} classes; steps {start_step}..{total_steps}; "
                    f"out: {args.out}")

    def stop(reason):
        bar.close()
        good = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written"
        fail(f"{reason} at step {step}; stopping without saving; {good}")

    def save(path, step, with_optimizer):
        if not all_finite(unwrap(model).parameters()):                  # never write a NaN over a good checkpoint
            stop("the weights are not finite")
        state = {"model": unwrap(model).state_dict(), "step": step, "best": best, "args": vars(args),
                 "config": checkpoint_config(unwrap(model), class_names=train.classes, task=args.task,
                                             shots=args.shots, init=args.init)}
        if with_optimizer:
            state.update(optimizer=optimizer.state_dict(), rng=rng_states())
        try:
            save_checkpoint(path, state)
        except OSError as e:                                            # a full disk: the last one stays whole
            stop(str(e))

    began, warmup = time.time(), round(args.warmup_epochs * steps_per_epoch)
    bar = tqdm(total=total_steps, initial=start_step, disable=not procs.main, desc="finetune", dynamic_ncols=True)
    step, running, nonfinite_steps = start_step, [], torch.zeros((), device=device)
    unreadable = set()                                                   # training files the loader could not read
    requests = StopRequests()                                            # SIGTERM, Ctrl-C: stop after the step
    model.train()
    while step < total_steps:
        set_lr(optimizer, learning_rate(step, args.lr, args.schedule, warmup, total_steps))
        for micro in range(args.accum):
            batch = next(batches)
            unreadable.update(batch.unreadable)
            while batch.clips is None:                                  # every file of it unreadable
                batch = next(batches)
                unreadable.update(batch.unreadable)
            clips, labels = batch.clips.to(device, non_blocking=True), batch.labels.to(device)
            n, keys = clips.shape[0], (args.seed, step, micro)
            # crops are drawn for the global batch and sliced, so N processes = 1 process on N batches
            boxes, flips = sample_crops(n * procs.world, tuple(args.crop_scale), flip=flip,
                                        generator=generator(device, *keys, "crop"), device=device)
            mine = slice(procs.rank * n, (procs.rank + 1) * n)
            video = augment(clips, train=True, img_size=cfg.img_size, mean=mean, std=std,
                            crops=(boxes[mine], flips[mine]))                # (N, 3, T, s, s)
            # DDP averages gradients over processes in backward; between micro-batches that is wasted work
            with model.no_sync() if procs.world > 1 and micro < args.accum - 1 else nullcontext():
                with autocast_for(device, args.precision):
                    loss = F.cross_entropy(model(video).float(), labels, label_smoothing=args.label_smoothing)
                (loss / args.accum).backward()
            running.append(loss.detach())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        nonfinite_steps += (~torch.isfinite(grad_norm)).float()            # checked on the host once an epoch
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % steps_per_epoch == 0 or step == total_steps:         # an epoch: check, select, save
            mean_loss = torch.stack(running).mean().item()
            running = []
            if not math.isfinite(mean_loss):
                stop(f"the loss is {mean_loss}")
            if nonfinite_steps > 0:
                stop("the gradient is not finite")
            if empty := empty_classes(train, unreadable):               # every training file of a class is broken
                stop(f"class {empty[0]!r} has no readable training clip (its {args.shots} shots are unreadable)")
            record = dict(step=step, epoch=round(step / steps_per_epoch, 2), loss=round(mean_loss, 4),
                          grad_norm=round(float(grad_norm), 3), lr=optimizer.param_groups[-1]["lr"],
                          unreadable_files=len(unreadable))
            if select is not None:
                logits, y = predict(model, select_source, args, procs)
                record["select_top1"] = round(scores(logits, y, train.classes)["top1"], 4)
                if record["select_top1"] > best["score"]:                # the same on every process
                    best = {"score": record["select_top1"], "step": step}
                    if procs.main:
                        save(os.path.join(args.out, "best.pt"), step, False)
                model.train()
            log.write(**record)
            bar.set_postfix(loss=f"{mean_loss:.3f}", select=record.get("select_top1", "-"))
            if procs.main:
                save(checkpoint, step, True)
                last_good = checkpoint
        asked = procs.any(requests.signal is not None)
        if (asked or step == args.stop_at) and step < total_steps:     # preempted, or a run in pieces: save, exit
            bar.close()
            if procs.main:
                save(checkpoint, step, True)
            why = f"{requests.name or 'SIGTERM'}: stopped" if asked else "--stop_at: stopped"
            procs.print(f"{why} at step {step} of {total_steps}, checkpoint {checkpoint} written; continue with "
                        f"--resume auto")
            requests.close()
            procs.close()
            release_folder(args.out)
            if asked:
                sys.exit(requests.exit_code if requests.signal else 143)
            return None
    bar.close()
    requests.close()
    if select is None:                                                  # no selection set: the last is the best
        if procs.main:
            save(os.path.join(args.out, "best.pt"), step, False)
        best = {"score": None, "step": step}                            # on every process: they score alike
    trained_s = time.time() - began

    # the full validation set, for the last and the best model
    results = {"task": args.task, "shots": args.shots, "seed": args.seed, "init": args.init, "init_kind": init_kind,
               "image_model": image_model, "classes": train.classes, "subset": subset, "num_train": len(train),
               "num_select": len(select) if select else 0, "num_val": len(val), "steps": step,
               "unreadable_training_files": len(unreadable), "train_seconds": round(trained_s, 1)}
    val_source, predictions = eval_source(val, args, procs, cfg), {}
    for name in ("last", "best"):
        if name == "last" or best["step"] != step:                      # a best that is the last is scored already
            if name == "best":
                if procs.world > 1:
                    dist.barrier()                                        # rank 0 has written best.pt
                unwrap(model).load_state_dict(load_checkpoint(os.path.join(args.out, "best.pt"), device)["model"])
            logits, y = predict(model, val_source, args, procs)
        predictions.update({f"{name}_log_probs": logits.numpy(), "labels": y.numpy()})
        results[name] = {"step": step if name == "last" else best["step"], "select_top1": best["score"]
                         if name == "best" else None, **scores(logits, y, train.classes, subset)}
    results["eval_seconds"] = round(time.time() - began - trained_s, 1)
    if procs.main:
        path = os.path.join(args.out, "results.json")
        with open(path + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(path + ".tmp", path)
        np.savez(os.path.join(args.out, "predictions.npz"), classes=np.array(train.classes), **predictions)
        curves(log.records(), ["loss", "select_top1"], os.path.join(args.out, "curves.png"), log_y=False)
        procs.print(f"done in {trained_s:.0f} s: validation top-1 / top-5 best {results['best']['top1']:.1%} / "
                    f"{results['best']['top5']:.1%} (step {results['best']['step']}), last "
                    f"{results['last']['top1']:.1%} / {results['last']['top5']:.1%}\n  results {path}"
                    + (f"\n  skipped {len(unreadable)} unreadable training file(s), named in the warnings above"
                       if unreadable else ""))
    procs.close()
    release_folder(args.out)
    return results


if __name__ == "__main__":
    run_script(main, parse_args, "stopped by Ctrl-C, without saving; --resume auto continues from the last checkpoint")
