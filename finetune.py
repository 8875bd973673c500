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

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from augment import augment
from checkpoints import checkpoint_config, load_checkpoint, load_model
from data import empty_classes, first_readable, make_loader
from evaluate import TASKS, clip_source, embed, eval_source, few_shot, predict, read_subset, scores, task_items
from figures import curves
from model import VideoClassifier, make_config, param_groups
from runs import (RunLog, StopRequests, all_finite, check_out_folder, check_resumed_flags, hold_folder,
                  prepare_run_folder, release_folder, rng_states, save_checkpoint, set_rng_states, workers_gone)
from settings import TOY_FRAME, TOY_WORLD, parse_with_settings
from step import backward, global_batch_crops, next_readable, update
from training import (ArgumentParser, Processes, StepSampler, fail, fraction, learning_rate, learning_rate_flag,
                      nonnegative_float, nonnegative_int, positive_float, positive_int, require_order, run_script,
                      seed_int, set_lr, unit_interval, unwrap)


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
# the model


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

# -----------------------------------------------------------------------------
# one step


def train_step(model, optimizer, batches, step, lr, procs, args, unreadable):
    """One optimisation step. Each of --accum micro-batches: the next clips of this process with their labels,
    randomly cropped (and flipped, where the task's labels allow it), classified; the cross-entropy's gradient is
    added up. Then one clipped AdamW update. Returns the micro-batches' mean loss and the gradient's norm before
    clipping, as tensors on the device (no host sync)."""
    set_lr(optimizer, lr)
    _, _, flip, (mean, std) = TASKS[args.task]
    img_size = unwrap(model).cfg.img_size
    loss_sum = torch.zeros((), device=procs.device)
    for micro in range(args.accum):
        batch = next_readable(batches, unreadable)
        clips = batch.clips.to(procs.device, non_blocking=True)            # (N, T, S, S, 3) uint8
        labels = batch.labels.to(procs.device)                              # (N,)
        crops = global_batch_crops(len(clips), procs, (args.seed, step, micro), args.crop_scale, flip,
                                   procs.device)
        video = augment(clips, train=True, img_size=img_size, mean=mean, std=std, crops=crops)   # (N, 3, T, s, s)
        forward = lambda: F.cross_entropy(model(video).float(), labels, label_smoothing=args.label_smoothing)
        loss_sum += backward(model, procs, micro, args.accum, args.precision, forward)
    grad_norm = update(model, optimizer, args.clip_grad)
    return loss_sum / args.accum, grad_norm

# -----------------------------------------------------------------------------
# the run


class Run:
    """What the loop keeps and writes as it goes: the model and its optimizer, the best epoch so far, the checkpoint,
    best.pt, the log, the progress bar, and the newest checkpoint known to be sound (named when a run must stop)."""

    def __init__(self, args, procs, model, optimizer, task, restored, total_steps, steps_per_epoch):
        self.args, self.procs, self.model, self.optimizer, self.task = args, procs, model, optimizer, task
        self.start_step, self.best, resume = restored
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.checkpoint = os.path.join(args.out, "checkpoint.pt")
        self.last_good = resume if self.start_step else None
        self.log = RunLog(os.path.join(args.out, "log.jsonl"), procs.main, self.start_step or None)
        self.bar = tqdm(total=total_steps, initial=self.start_step, disable=not procs.main, desc="finetune",
                        dynamic_ncols=True)
        self.began = time.time()

    def stop(self, reason, step):
        self.bar.close()
        good = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written"
        fail(f"{reason} at step {step}; stopping without saving; {good}")

    def save(self, path, step, with_optimizer):
        model, args = unwrap(self.model), self.args
        if not all_finite(model.parameters()):                          # never write a NaN over a good one
            self.stop("the weights are not finite", step)
        state = {"model": model.state_dict(), "step": step, "best": self.best, "args": vars(args),
                 "config": checkpoint_config(model, class_names=self.task["train"].classes, task=args.task,
                                             shots=args.shots, init=args.init)}
        if with_optimizer:
            state.update(optimizer=self.optimizer.state_dict(), rng=rng_states())
        try:
            save_checkpoint(path, state)
        except OSError as e:                                            # a full disk: the last one stays whole
            self.stop(str(e), step)
        if with_optimizer:
            self.last_good = path

    def end_epoch(self, step, losses, nonfinite, grad_norm, unreadable):
        """After each epoch: check the loss and the gradients (the host syncs), score the selection set and keep
        the best epoch's weights, log, and save the checkpoint."""
        args, procs, train = self.args, self.procs, self.task["train"]
        mean_loss = torch.stack(losses).mean().item()
        if not math.isfinite(mean_loss):
            self.stop(f"the loss is {mean_loss}", step)
        if nonfinite > 0:
            self.stop("the gradient is not finite", step)
        if empty := empty_classes(train, unreadable):                   # every training file of a class is broken
            self.stop(f"class {empty[0]!r} has no readable training clip (its {args.shots} shots are "
                      f"unreadable)", step)
        record = dict(step=step, epoch=round(step / self.steps_per_epoch, 2), loss=round(mean_loss, 4),
                      grad_norm=round(float(grad_norm), 3), lr=self.optimizer.param_groups[-1]["lr"],
                      unreadable_files=len(unreadable))
        if self.task["select"] is not None:
            logits, y = predict(self.model, self.task["select_source"], args, procs)
            record["select_top1"] = round(scores(logits, y, train.classes)["top1"], 4)
            if record["select_top1"] > self.best["score"]:             # the same on every process
                self.best = {"score": record["select_top1"], "step": step}
                if procs.main:
                    self.save(os.path.join(args.out, "best.pt"), step, False)
            self.model.train()
        self.log.write(**record)
        self.bar.set_postfix(loss=f"{mean_loss:.3f}", select=record.get("select_top1", "-"))
        if procs.main:
            self.save(self.checkpoint, step, True)


def train_epochs(run, batches, unreadable):
    """Epochs of steps until the last one, --stop_at or a signal. Returns the step it ended at, whether a signal
    ended it (on any process), and the requests (whose .signal names it, where this process received it)."""
    args, procs = run.args, run.procs
    warmup = round(args.warmup_epochs * run.steps_per_epoch)
    losses, nonfinite = [], torch.zeros((), device=procs.device)         # summed on the device between epochs
    step, asked, requests = run.start_step, False, StopRequests()       # SIGTERM, Ctrl-C: stop after the step
    run.model.train()
    while step < run.total_steps:
        lr = learning_rate(step, args.lr, args.schedule, warmup, run.total_steps)
        try:
            loss, grad_norm = train_step(run.model, run.optimizer, batches, step, lr, procs, args, unreadable)
        except RuntimeError as error:
            if not workers_gone(error, requests):
                raise
            asked = True                        # this step's update was not taken: the run stands at `step`
            if procs.main:
                run.save(run.checkpoint, step, True)
            break
        losses.append(loss)
        nonfinite += (~torch.isfinite(grad_norm)).float()
        step += 1
        run.bar.update(1)
        if step % run.steps_per_epoch == 0 or step == run.total_steps:
            run.end_epoch(step, losses, nonfinite, grad_norm, unreadable)
            losses = []
        asked = procs.any(requests.signal is not None)
        if (asked or step == args.stop_at) and step < run.total_steps:  # preempted, or a run in pieces
            if procs.main:
                run.save(run.checkpoint, step, True)
            break
    run.bar.close()
    requests.close()
    return step, asked, requests


def score(run, step, unreadable, trained_s):
    """The full validation set, for the last and the best model: results.json, predictions.npz, curves.png."""
    args, procs, task = run.args, run.procs, run.task
    model, train, val = run.model, task["train"], task["val"]
    best = run.best
    if task["select"] is None:                                          # no selection set: the last is the best
        if procs.main:
            run.save(os.path.join(args.out, "best.pt"), step, False)
        best = {"score": None, "step": step}                            # on every process: they score alike
    results = {"task": args.task, "shots": args.shots, "seed": args.seed, "init": args.init,
               "init_kind": task["init_kind"], "image_model": unwrap(model).cfg.frames == 1,
               "classes": train.classes, "subset": task["subset"], "num_train": len(train),
               "num_select": len(task["select"]) if task["select"] else 0, "num_val": len(val), "steps": step,
               "unreadable_training_files": len(unreadable), "train_seconds": round(trained_s, 1)}
    val_source, predictions = eval_source(val, args, procs, unwrap(model).cfg), {}
    for name in ("last", "best"):
        if name == "last" or best["step"] != step:                      # a best that is the last is scored already
            if name == "best":
                if procs.world > 1:
                    dist.barrier()                                        # rank 0 has written best.pt
                best_state = load_checkpoint(os.path.join(args.out, "best.pt"), procs.device)["model"]
                unwrap(model).load_state_dict(best_state)
            logits, y = predict(model, val_source, args, procs)
        predictions.update({f"{name}_log_probs": logits.numpy(), "labels": y.numpy()})
        results[name] = {"step": step if name == "last" else best["step"],
                         "select_top1": best["score"] if name == "best" else None,
                         **scores(logits, y, train.classes, task["subset"])}
    results["eval_seconds"] = round(time.time() - run.began - trained_s, 1)
    if procs.main:
        path = os.path.join(args.out, "results.json")
        with open(path + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(path + ".tmp", path)
        np.savez(os.path.join(args.out, "predictions.npz"), classes=np.array(train.classes), **predictions)
        curves(run.log.records(), ["loss", "select_top1"], os.path.join(args.out, "curves.png"), log_y=False)
    return results

# -----------------------------------------------------------------------------
# setting up


def load_task(args):
    """The task's splits, the k shots and the selection set, the subset's names, and the model to finetune."""
    train_split, val_split = TASKS[args.task][:2]
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
    return dict(train=train, select=select, val=val, subset=subset, init_kind=init_kind), model


def restore(args, procs, model, optimizer):
    """Continue --resume's checkpoint: its weights, optimizer, step, best epoch and random states. Returns (the step
    to start at, the best epoch so far, the checkpoint continued or None)."""
    resume = os.path.join(args.out, "checkpoint.pt") if args.resume == "auto" else args.resume
    if args.resume == "auto":
        procs.print(f"--resume auto: continuing {resume}" if os.path.exists(resume) else
                    f"--resume auto: no checkpoint in {args.out}, starting at step 0")
    if not resume or not os.path.exists(resume):
        if resume and args.resume != "auto":
            fail(f"--resume: no checkpoint at {resume}")
        return 0, {"score": -1.0, "step": 0}, None
    try:
        state = load_checkpoint(resume, procs.device)
    except ValueError as e:
        fail(f"--resume: {e}")
    if not {"optimizer", "best", "rng"} <= set(state):
        fail(f"--resume {resume} is not a finetuning checkpoint with its optimizer (a checkpoint.pt that "
             f"finetune.py wrote); to start from {os.path.basename(resume)}'s weights, give it as --init")
    check_resumed_flags(state.get("args", {}), args, MAY_CHANGE, resume)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_states(state["rng"])                                         # dropout and drop path continue exactly
    if args.stop_at is not None and args.stop_at <= state["step"]:
        fail(f"--stop_at {args.stop_at}: {resume} is at step {state['step']} already")
    return state["step"], state["best"], resume


def main(args):
    procs = Processes(args.device)
    device = procs.device
    check_out_folder(args.out)                          # before any work; the folder is made once the checks pass
    if args.embed:
        return embed(args, procs)
    task, model = load_task(args)
    train, select, cfg = task["train"], task["select"], model.cfg
    model.to(device)
    per_process = args.batch_size // (procs.world * args.accum)
    if per_process < 1 or per_process * procs.world * args.accum != args.batch_size:
        fail(f"--batch_size {args.batch_size} must split evenly over {procs.world} processes x {args.accum} accum")
    if args.batch_size > len(train):
        fail(f"--batch_size {args.batch_size} is more than the {len(train)} training clips of --shots {args.shots}")
    steps_per_epoch = max(1, round(len(train) / args.batch_size))
    total_steps = max(1, round(args.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, args.layer_decay), lr=args.lr,
                                  fused=device.type == "cuda")
    restored = restore(args, procs, model, optimizer)
    if procs.main:                                      # one run per folder: a second is refused, naming the first
        hold_folder(args.out)
    prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite,
                       holds=("checkpoint.pt", "best.pt", "log.jsonl", "results.json"))
    if procs.world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    dataset = clip_source(train, args, True, 1 if cfg.frames == 1 else cfg.frames)   # an image model: 1 frame
    try:
        first_readable(dataset, f"the {args.shots}-shot training set under {args.data_root}")
    except FileNotFoundError as e:
        fail(str(e))
    task["select_source"] = eval_source(select, args, procs, cfg) if select is not None else None
    sampler = StepSampler(len(train), per_process, procs.rank, procs.world, args.seed, restored[0] * args.accum)
    batches = iter(make_loader(dataset, per_process, shuffle=False, workers=args.workers, sampler=sampler))
    kind = "image model, frame-wise" if cfg.frames == 1 else "video model"
    procs.print(f"finetuning {task['init_kind']} ({kind}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
                f"parameters) on {args.task} {args.shots}-shot: {len(train)} training, "
                f"{len(select) if select else 0} selection, {len(task['val'])} validation clips, "
                f"{len(train.classes)} classes; steps {restored[0]}..{total_steps}; out: {args.out}")
    run = Run(args, procs, model, optimizer, task, restored, total_steps, steps_per_epoch)
    unreadable = set()                                                   # training files the loader could not read
    step, asked, requests = train_epochs(run, batches, unreadable)
    if step < total_steps:                                               # preempted, or --stop_at: saved
        why = f"{requests.name or 'SIGTERM'}: stopped" if asked else "--stop_at: stopped"
        procs.print(f"{why} at step {step} of {total_steps}, checkpoint {run.checkpoint} written; continue with "
                    f"--resume auto")
        procs.close()
        release_folder(args.out)
        if asked:                                                        # as pretrain.py: 143 or 130
            sys.exit(requests.exit_code if requests.signal else 143)
        return None
    trained_s = time.time() - run.began
    results = score(run, step, unreadable, trained_s)
    skipped = (f"\n  skipped {len(unreadable)} unreadable training file(s), named in the warnings above"
               if unreadable else "")
    procs.print(f"done in {trained_s:.0f} s: validation top-1 / top-5 best {results['best']['top1']:.1%} / "
                f"{results['best']['top5']:.1%} (step {results['best']['step']}), last "
                f"{results['last']['top1']:.1%} / {results['last']['top5']:.1%}\n  results "
                f"{os.path.join(args.out, 'results.json')}{skipped}")
    procs.close()
    release_folder(args.out)
    return results


if __name__ == "__main__":
    run_script(main, parse_args, "stopped by Ctrl-C, without saving; --resume auto continues from the last checkpoint")
