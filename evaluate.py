"""
A few-shot task's examples and scores: which folders a task reads, its k-shot training and selection
sets, the clips of an evaluation set (the centre clip, the centre crop), the model's predictions
gathered over processes, top-1 / top-5 / per-class scores, and the features of the validation set
with their t-SNE (the paper's Figure 3: `finetune.py --embed`).

An image model (one frame: the paper's S-Img) is scored on whole clips: it classifies each frame and
its logits are averaged over the frames.
"""

import json
import os
import warnings

import numpy as np
import torch
import torch.distributed as dist

from augment import IMAGENET_MEAN, IMAGENET_STD, VIDEO_MEAN, VIDEO_STD, augment
from checkpoints import load_model, resolve_checkpoint
from data import (ASSETS, ClipDataset, ImageClipDataset, Items, image_items, kinetics_items,
                  make_items, make_loader, ssv2_items)
from figures import embedding_panels
from model import frame_by_frame
from runs import hold_folder
from training import autocast_for, fail, unwrap

AUTHORS_SPLITS = {"ssv2": "ssv2_fewshot_splits.json", "kinetics": "kinetics700_fewshot_splits.json"}
TASKS = {  # task: (training split, validation split, flip when training, normalisation)
    "ssv2": ("train", "validation", False, (VIDEO_MEAN, VIDEO_STD)),
    "kinetics": ("train", "val", True, (VIDEO_MEAN, VIDEO_STD)),
    "imagenet": ("train", "val", True, (IMAGENET_MEAN, IMAGENET_STD)),
}


def task_items(task, root, split):
    if task == "ssv2":
        return ssv2_items(root, split)
    return (image_items if task == "imagenet" else kinetics_items)(root, split)


def kshot_indices(labels, k, seed=0, skip=0, classes=None) -> np.ndarray:
    """k examples per class, seeded. Each class's examples are shuffled once by (seed, class), and
    we take positions [skip, skip + k): so the 10-shot set lies inside the 50-shot set, and skip=k
    gives k further examples (e.g. a model-selection set) disjoint from the first k."""
    labels, chosen = np.asarray(labels), []
    for c in range(len(classes)) if classes is not None else np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        if len(members) < skip + k:
            c = c if classes is None else repr(classes[c])    # `classes`: none missed, one named
            raise ValueError(f"class {c} has {len(members)} examples; "
                             f"{skip + k} are needed for k={k}, skip={skip}")
        order = np.random.default_rng([seed, int(c)]).permutation(len(members))
        chosen.append(members[order[skip:skip + k]])
    return np.sort(np.concatenate(chosen or [np.zeros(0, np.int64)]))


def authors_split(items: Items, dataset: str, name: str) -> Items:
    """The authors' exact few-shot training subset ('10shot' or '50shot') of SSV2 or Kinetics-700,
    matched by stem, labels indexed in their sorted class list (which orders their heads too)."""
    if dataset not in AUTHORS_SPLITS:
        raise ValueError(f"the authors' splits exist for {', '.join(AUTHORS_SPLITS)}, "
                         f"not {dataset!r}")
    with open(os.path.join(ASSETS, AUTHORS_SPLITS[dataset])) as f:
        spec = json.load(f)
    if name not in spec["splits"]:
        raise ValueError(f"unknown split {name!r}; choose from {', '.join(spec['splits'])}")
    classes = spec["class_names_sorted"]
    wanted = {stem: classes.index(c) for c, stems in spec["splits"][name].items() for stem in stems}
    stems = [os.path.splitext(os.path.basename(p))[0] for p in items.paths]
    keep = [i for i, s in enumerate(stems) if s in wanted]
    if len(keep) < len(wanted):
        warnings.warn(f"{dataset} {name}: {len(wanted) - len(keep)} of {len(wanted)} "
                      "split videos are missing")
    labels = [wanted[stems[i]] for i in keep]
    return make_items(items.paths[keep], labels, classes, f"{dataset} {name}")


def few_shot(items, shots, select_shots, seed, task):
    """(training items, selection items or None). k-shot sets are nested across k for one seed (10
    inside 50); the selection set is the next k' examples of each class, so it never overlaps the
    training shots."""
    labels = items.labels
    if shots == "all":
        return items, None
    # the authors' exact training videos
    if shots in ("10shot", "50shot"):
        train = authors_split(items, task, shots)
        k = int(shots[:2]) if select_shots is None else select_shots
        if not k:
            return train, None
        # the training videos outside the split
        pool = np.flatnonzero(~np.isin(items.paths, train.paths))
        select = items.select(pool[kshot_indices(items.labels[pool], k, seed)])
        # our class order -> the authors'
        to_theirs = np.array([train.classes.index(c) for c in items.classes])
        return train, select.relabel(to_theirs[select.labels], train.classes)
    try:
        # class-balanced: the same k for every class
        if shots.endswith("%"):
            share = float(shots[:-1])
            k = (max(1, round(share / 100 * len(labels) / len(items.classes)))
                 if 0 < share <= 100 else 0)
        else:
            k = int(shots)
    except ValueError:
        k = 0
    if k < 1:
        raise ValueError(f"--shots {shots!r}: give a number >= 1, "
                         f"a percentage in (0, 100] ('2%'), 'all', '10shot' "
                         f"or '50shot'")
    k_select = k if select_shots is None else select_shots
    try:
        # every class, or one line
        train = items.select(kshot_indices(labels, k, seed, classes=items.classes))
        if not k_select:
            return train, None
        return train, items.select(kshot_indices(labels, k_select, seed, skip=k,
                                                 classes=items.classes))
    except ValueError as e:  # too few examples of some class
        raise ValueError(f"--shots {shots} with {k_select} per class for selection: {e}") from None


def read_subset(spec, classes):
    """Class names from '|'-separated text or a file with
    one per line, checked against the task's classes."""
    if not spec:
        return []
    names = open(spec).read().splitlines() if os.path.isfile(spec) else spec.split("|")
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ValueError(f"--subset: {unknown[0]!r} is not a class of this task "
                         f"(e.g. {classes[0]!r})")
    return names


def clip_source(items, args, train, frames):
    # an image, repeated into a static clip
    if args.task == "imagenet":
        return ImageClipDataset(items, num_frames=frames, size=args.canvas)
    return ClipDataset(items, train=train, num_frames=frames, size=args.canvas,
                       views=1 if train else args.views,
                       cache=args.cache, cache_dir=args.cache_dir)


def eval_source(items, args, procs, cfg):
    """This process's shard of an evaluation set, built once (so a cache outlives each evaluation).
    An image model is scored on whole clips of --frames frames, frame by frame; a static image is
    the same in every frame."""
    frames = args.frames if cfg.frames == 1 and args.task != "imagenet" else cfg.frames
    return clip_source(items.select(np.arange(procs.rank, len(items), procs.world)),
                       args, False, frames)


@torch.no_grad()
def predict(model, dataset, args, procs, features=False):
    """Log-probabilities (or pooled features) and labels of every readable item of an eval_source,
    gathered on every process. An image model scores each frame and averages its logits (S-Img);
    views average softmax."""
    model = unwrap(model).eval()
    cfg, mean_std = model.cfg, TASKS[args.task][3]
    loader = make_loader(dataset, args.eval_batch, shuffle=False, drop_last=False,
                         workers=0 if args.cache else min(args.workers, 4))
    outputs, labels = [], []
    for batch in loader:
        # every file of it unreadable
        if batch.clips is None:
            continue
        clips, y = batch.clips.to(procs.device), batch.labels                 # (N*V, T, S, S, 3)
        # (N*V, 3, T, s, s)
        video = augment(clips, train=False, img_size=cfg.img_size, eval_crop=args.eval_crop,
                        mean=mean_std[0], std=mean_std[1])
        score = lambda v: (model.features(v) if features else model(v)).float()
        with autocast_for(procs.device, args.precision):
            # (N*V, C); an image model's frames averaged
            out = frame_by_frame(score, video, cfg.frames)
        views = 1 if args.task == "imagenet" else args.views
        if not features:
            # (N, C): views averaged
            out = out.softmax(-1).view(-1, views, out.shape[-1]).mean(1).log()
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


def scores(logits, labels, classes, subset=()):
    """top-1, top-5 (top-k of at most the number of classes),
    accuracy per class, and on the subset vs the rest."""
    k = min(5, len(classes))
    topk = logits.topk(k, dim=1).indices                               # (n, k)
    hit1, hitk = topk[:, 0] == labels, (topk == labels[:, None]).any(1)
    result = {"top1": hit1.float().mean().item(), "top5": hitk.float().mean().item(),
              "n": len(labels),
              "per_class": {c: hit1[labels == i].float().mean().item()
                            for i, c in enumerate(classes) if (labels == i).any()}}
    if subset:
        inside = torch.isin(labels, torch.tensor([classes.index(c) for c in subset]))
        for name, rows in (("subset", inside), ("rest", ~inside)):
            result[name] = {"top1": hit1[rows].float().mean().item(),
                            "top5": hitk[rows].float().mean().item(),
                            "n": int(rows.sum())}
    return result


def embed(args, procs):
    """Pooled features (the class token after the final LayerNorm: what the head sees) of the
    validation set, from each checkpoint, and t-SNE panels of the --subset classes (all classes when
    none) side by side: Figure 3."""
    try:
        val = task_items(args.task, args.data_root, TASKS[args.task][1])
        names = read_subset(args.subset, val.classes) or val.classes
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    # files, or released names (downloaded now): all there before any work
    try:
        files = [resolve_checkpoint(p) for p in args.embed]
    except (ValueError, FileNotFoundError) as e:
        fail(f"--embed: {e}")
    if procs.main:
        hold_folder(args.out)
    keep = np.flatnonzero(np.isin(val.labels, [val.classes.index(c) for c in names]))
    titles = (args.embed_titles.split("|") if args.embed_titles
              else [os.path.basename(p) for p in args.embed])
    panels = []
    for path, file, title in zip(args.embed, files, titles):
        try:
            model = load_model(file, kind="classifier", num_classes=len(val.classes))
        except ValueError as e:
            fail(f"--embed: {e}")
        model = model.to(procs.device)
        feats, labels = predict(model, eval_source(val.select(keep), args, procs, model.cfg),
                                args, procs, True)
        stem = os.path.splitext(os.path.basename(path))[0]
        if procs.main:
            os.makedirs(args.out, exist_ok=True)
            np.savez(os.path.join(args.out, f"features_{len(panels)}_{stem}.npz"),
                     features=feats.numpy(), labels=labels.numpy(),
                     classes=np.array(val.classes), checkpoint=path)
        panels.append((title, feats.numpy(), labels.numpy()))
    if procs.main:
        figure = os.path.join(args.out, "tsne.png")
        embedding_panels(panels, val.classes, figure, seed=args.seed)
        procs.print(f"features and t-SNE of {len(keep)} validation clips "
                    f"({len(names)} classes): {figure}")
