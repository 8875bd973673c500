"""
Pretraining a spatiotemporal masked autoencoder (ST-MAE), the paper's self-supervised stage.

    torchrun --nproc_per_node=4 pretrain.py --data S --data_root /data/saycam          # the paper (4 GPUs)
    python pretrain.py --setting toy --out runs/toy_S                                   # the toy world on a CPU

Each step: every process takes its videos (1 per GPU by default), decodes one 16-frame clip of each at 3.75 fps and
makes R = 16 randomly cropped views of it (repeated augmentation: one decode feeds 16 training clips), hides 90% of
each view's tube tokens at random, and learns to predict the hidden pixels. The defaults are the paper's (ViT-H/14,
16x224x224, AdamW (0.9, 0.95), wd 0.05, constant lr 1e-4, grad clip 0.1); --setting picks other bundles of
defaults: hvm1 (448x448, mask 0.95), image (the image-MAE baseline: single frames, mask 0.8), toy (the toy world on
a CPU), combinable as --setting toy,image. Explicit flags override a setting.

Outputs in --out: checkpoint.pt (the latest, written atomically; --resume continues from it exactly), log.jsonl,
loss.png and reconstruction.png (original / masked / reconstruction, as the paper's Figure 1).
"""

import argparse
import math
import os
import sys
import time
from dataclasses import asdict

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from augment import VIDEO_MEAN, VIDEO_STD, augment
from data import ClipDataset, first_readable, make_loader, pretraining_items
from figures import completion_rows, curves
from mask import make_mask
from checkpoints import checkpoint_config, load_checkpoint, load_model
from model import MaskedAutoencoder, ViTConfig, make_config, param_groups, training_flops
from runs import (RunLog, StopRequests, all_finite, check_out_folder, check_resumed_flags,
                  hold_folder, prepare_run_folder, release_folder, save_checkpoint, workers_gone)
from settings import TOY_FRAME, TOY_WORLD, parse_with_settings
from step import backward, global_batch_crops, my_slice, next_readable, update
from training import (ArgumentParser, Processes, StepSampler, fail, final_learning_rate_flag,
                      fraction, generator, learning_rate, learning_rate_flag, nonnegative_float,
                      nonnegative_int, open_fraction, positive_float, positive_int, require_order,
                      resolve_precision, run_script, seed_int, set_lr, unwrap)

# Bundles of defaults. The argparse defaults below are the paper's; a setting replaces some of them.
SETTINGS = {
    "paper": {},
    "hvm1": dict(img_size=448, mask_ratio=0.95),                  # HVM-1@448: 8 x 32 x 32 = 8192 tokens
    "image": dict(frames=1, t_patch=1, mask_ratio=0.8),           # the image-MAE baseline on single frames
    # the toy world on a 2-core CPU: 64x64 frames, the toy preset (128 tokens), 8 videos x 4 views per step. Mask
    # 0.75, not the paper's 0.9: 32 visible tokens of 128 are too few for a model this small to place moving objects
    # (a screen of the hidden frames' PSNR preferred 0.75, with lr 3e-3 over 1e-3)
    "toy": dict(data="toy", data_root=TOY_WORLD, preset="toy", img_size=TOY_FRAME, canvas=TOY_FRAME,
                batch_videos=8, repeats=4, lr=3e-3, mask_ratio=0.75, schedule="cosine", warmup_steps=100, steps=1800,
                clip_grad=1.0, workers=1, log_every=25, figure_every=500, save_every=250),
}
# A resumed run continues one run: every flag must be the checkpoint's but these (where things are, how the work
# is spread, when to stop, what to write along the way, and the lr and clipping: lowering them is how a run that
# diverged gets past the spot). The batch may change with the number of GPUs: a note says so.
MAY_CHANGE = {"data_root", "workers", "cache", "batch_videos", "accum", "steps", "epochs", "stop_at", "max_minutes",
              "precision", "compile", "activation_checkpointing", "device", "out", "resume", "overwrite", "init",
              "log_every", "save_every", "figure_every", "setting", "lr", "min_lr", "clip_grad"}
# Memory for one step's clips may not exceed this share of the machine's, checked before anything is allocated
MEMORY_SHARE = 0.5


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # data
    p.add_argument("--data", default="S", help="S, A, Y, SAY (headcam children), kinetics, kinetics-200h, toy, a "
                   "folder of videos, or several of these comma-separated (a mixture)")
    p.add_argument("--data_root", default=None, help="the data's folder, or name=folder pairs per source, e.g. "
                   "S=/data/saycam,kinetics=/data/k700 (headcam: the folder holding S/, A/, Y/); default: "
                   "data/saycam for the headcam children, data/kinetics for Kinetics")
    p.add_argument("--data_frac", type=fraction, default=1.0, help="use this fraction of the videos (scaling runs)")
    p.add_argument("--frac_mode", default="prefix", choices=("prefix", "random"),
                   help="prefix: the chronologically first videos (the authors'); random: a seeded choice")
    p.add_argument("--canvas", type=positive_int, default=256, help="decode frames to this square canvas (short side)")
    p.add_argument("--repeats", type=positive_int, default=16, help="augmented views per decoded video")
    p.add_argument("--repeat_mode", default="crops", choices=("crops", "windows"),
                   help="crops: R crops of one 4.3 s window; windows: R random windows of one decoded minute")
    p.add_argument("--workers", type=nonnegative_int, default=8, help="data loading processes per GPU")
    p.add_argument("--cache", action="store_true", help="keep every decoded video in memory (each file is decoded "
                   "once; one copy per worker process): for small datasets such as the toy world, never for real ones")
    # model
    p.add_argument("--preset", default="huge_patch14")
    p.add_argument("--patch", type=positive_int, default=None, help="spatial patch size (default: the preset's)")
    p.add_argument("--decoder_heads", type=positive_int, default=None,
                   help="the decoder's attention heads (default: the "
                   "preset's)")
    p.add_argument("--img_size", type=positive_int, default=224)
    p.add_argument("--frames", type=positive_int, default=16)
    p.add_argument("--t_patch", type=positive_int, default=2)
    p.add_argument("--mask_ratio", type=open_fraction, default=0.9, help="the fraction of tokens hidden")
    p.add_argument("--mask_type", default="random", choices=("random", "tube", "center", "future"))
    # optimisation
    p.add_argument("--batch_videos", type=positive_int, default=1, help="videos per process per step (x repeats clips)")
    p.add_argument("--accum", type=positive_int, default=1, help="gradient accumulation: micro-batches per step")
    p.add_argument("--lr", type=learning_rate_flag, default=1e-4,
                   help="absolute learning rate (not scaled by batch size)")
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--warmup_steps", type=nonnegative_int, default=0)
    p.add_argument("--min_lr", type=final_learning_rate_flag, default=0.0, help="the cosine schedule's final lr")
    p.add_argument("--weight_decay", type=nonnegative_float, default=0.05)
    p.add_argument("--betas", type=open_fraction, nargs=2, default=(0.9, 0.95))
    p.add_argument("--clip_grad", type=positive_float, default=0.1)
    p.add_argument("--crop_scale", type=fraction, nargs=2, default=(0.5, 1.0), help="the crops' smallest and largest "
                   "share of the frame's area")
    p.add_argument("--epochs", type=positive_float, default=250, help="passes over the videos (S: ~250 in the paper)")
    p.add_argument("--steps", type=positive_int, default=None, help="optimisation steps (overrides --epochs)")
    p.add_argument("--stop_at", type=positive_int, default=None, help="stop (with a checkpoint) at this step, the "
                   "schedule still that of --steps: a long run in pieces, or its first steps checked")
    p.add_argument("--max_minutes", type=positive_float, default=None, help="stop (with a checkpoint) after this long")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                   help="auto: bf16 autocast on GPUs, fp32 on CPUs")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--activation_checkpointing", action="store_true", help="recompute each block's activations in "
                   "the backward pass: about 1/3 more compute for much less memory (HVM-1@448 with large batches)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    # outputs
    p.add_argument("--out", default=None, help="run folder (default runs/<data>_<preset>)")
    p.add_argument("--resume", default=None, help="a checkpoint to continue, or 'auto' for <out>/checkpoint.pt if any")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (without it, a folder that "
                   "holds a run is refused unless --resume is given)")
    p.add_argument("--init", default=None, help="start from these MAE weights (a fresh optimizer and step 0): our "
                   "checkpoint, or the authors' released MAE, a file or its name (mae_s_none: checkpoints.py --list)")
    p.add_argument("--log_every", type=positive_int, default=50)
    p.add_argument("--save_every", type=positive_int, default=1000)
    p.add_argument("--figure_every", type=positive_int, default=5000)
    args = parse_with_settings(p, SETTINGS, argv, related={"epochs": ["steps"]})     # --epochs beats a setting's steps
    if args.out is None:
        args.out = os.path.join("runs", f"{args.data.replace(',', '+').replace(os.sep, '_')}_{args.preset}")
    require_order(p, "crop_scale", args.crop_scale)
    if args.stop_at is not None and args.steps is not None and args.stop_at > args.steps:
        p.error(f"argument --stop_at: {args.stop_at} is past the run's last step (--steps {args.steps})")
    return args


def check_memory(args, procs):
    """Stop with one line when one step's clips would not fit in memory (a typo such as --batch_videos 100000 would
    otherwise fill the machine before the first step): the decoded uint8 clips, with the loader's prefetched batches,
    and their float32 views."""
    clips = args.batch_videos * args.repeats                                # per process, per micro-batch
    decoded = clips * args.frames * args.canvas ** 2 * 3 * (1 + 4 * args.workers)
    views = clips * args.frames * args.img_size ** 2 * 3 * 4
    need, have = decoded + views, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > MEMORY_SHARE * have:
        fail(f"--batch_videos {args.batch_videos} x --repeats {args.repeats}: one step's clips need about "
             f"{need / 2**30:.0f} GiB, more than half of this machine's {have / 2**30:.0f} GiB of memory")

# -----------------------------------------------------------------------------
# pictures


def figure_clip(items, args, cfg, device):
    """A fixed clip for the figures: the centre clip of the first readable video, with a fixed mask; and the files
    before it, which could not be read (they count among the run's skipped files). Every process looks for it, so a
    dataset with no readable file stops every process with one line."""
    index, (clip, _) = first_readable(ClipDataset(items, train=False, num_frames=args.frames, size=args.canvas),
                                      args.data)
    video = augment(clip.to(device), train=False, img_size=args.img_size, eval_crop=1.0)     # (1, 3, T, H, W)
    mask = make_mask(args.mask_type, 1, cfg.grid, args.mask_ratio, device, generator(device, args.seed, "figure"))
    return (video, mask.ids_keep, mask.ids_restore), list(items.paths[:index])

# -----------------------------------------------------------------------------
# the run


def check_same_model(flag, config, cfg):
    """Stop unless a checkpoint's config (--resume's, --init's) is the model these flags build. The head counts change
    no weight's shape, so a mismatch there would load without complaint and compute something else. pos_init is left
    out: it only sets starting values, which the loaded weights replace."""
    differs = [f"{k} {v} (this run: {getattr(cfg, k)})" for k, v in config.items()
               if k in ViTConfig.__dataclass_fields__ and k != "pos_init" and v != getattr(cfg, k)]
    if differs:
        fail(f"{flag} holds another model: {', '.join(differs)}; give the flags it was made with")


def global_batch_views(clips, keys, procs, args, cfg):
    """This process's augmented views and masks, drawn for the global batch and sliced (step.py says why)."""
    n, device = clips.shape[0], clips.device                                # clips: (n, T, S, S, 3) uint8
    crops = global_batch_crops(n, procs, keys, args.crop_scale, True, device)
    video = augment(clips, train=True, img_size=args.img_size, crops=crops)           # (n, 3, T, H, W)
    mask = make_mask(args.mask_type, n * procs.world, cfg.grid, args.mask_ratio, device,
                     generator(device, *keys, "mask"))
    mine = my_slice(n, procs)
    return video, mask.ids_keep[mine], mask.ids_restore[mine]              # (n, L_keep), (n, L)

# -----------------------------------------------------------------------------
# one step


def train_step(model, optimizer, scaler, batches, step, total_steps, procs, args, cfg, unreadable):
    """One optimisation step. Each of --accum micro-batches: the next --batch_videos videos of this process, R views
    of each, every view with 90% (--mask_ratio) of its tokens hidden; the MAE predicts the hidden pixels and its
    loss's gradient is added up. Then one clipped AdamW update. Returns the micro-batches' summed loss and whether
    the gradient was not finite, as tensors on the device (no host sync)."""
    lr = learning_rate(step, args.lr, args.schedule, args.warmup_steps, total_steps, args.min_lr)
    set_lr(optimizer, lr)
    loss_sum = torch.zeros((), device=procs.device)
    for micro in range(args.accum):
        batch = next_readable(batches, unreadable)
        clips = batch.clips.to(procs.device, non_blocking=True)            # (B*R, T, S, S, 3) uint8
        video, ids_keep, ids_restore = global_batch_views(clips, (args.seed, step, micro), procs, args, cfg)
        # video (B*R, 3, T, H, W); ids_keep (B*R, L_keep): the visible tokens; ids_restore (B*R, L)
        forward = lambda: model(video, ids_keep=ids_keep, ids_restore=ids_restore)[0]   # the loss
        loss_sum += backward(model, procs, micro, args.accum, args.precision, forward, scaler).float()
    grad_norm = update(model, optimizer, args.clip_grad, scaler)
    # fp16's scaler skips a non-finite step itself and lowers its scale; in bf16 and fp32 it stops the run
    nonfinite = torch.zeros((), device=procs.device) if scaler.is_enabled() else (~torch.isfinite(grad_norm)).float()
    return loss_sum, nonfinite, grad_norm

# -----------------------------------------------------------------------------
# the run


class Run:
    """What the loop keeps and writes as it goes: the model and its optimizer, the checkpoint, the log, the figures,
    the progress bar, and the newest checkpoint known to be sound (named when a run must stop)."""

    def __init__(self, args, procs, cfg, model, optimizer, scaler, restored, figure, global_videos, total_steps):
        self.args, self.procs, self.cfg = args, procs, cfg
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.start_step, self.seconds_before, resume = restored
        self.figure, self.global_videos, self.total_steps = figure, global_videos, total_steps
        self.checkpoint, self.last_good = os.path.join(args.out, "checkpoint.pt"), resume
        self.log = RunLog(os.path.join(args.out, "log.jsonl"), procs.main, self.start_step if resume else None)
        self.bar = tqdm(total=total_steps, initial=self.start_step, disable=not procs.main, desc="pretrain",
                        dynamic_ncols=True)
        self.began = time.time()

    def stop(self, reason, step):
        self.bar.close()
        good = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written"
        lr = self.optimizer.param_groups[0]["lr"]
        fail(f"{reason} at step {step} (lr {lr:.2e}); stopping without saving; {good}")

    def check(self, running, step):
        """The mean loss since the last check, on every process; stops the run on a non-finite loss or gradient,
        before anything is written. A host sync: only when the run logs or saves."""
        totals = running.clone()                                            # (loss, micro-batches, non-finite)
        if self.procs.world > 1:
            torch.distributed.all_reduce(totals)
        mean_loss = (totals[0] / totals[1]).item()
        if not math.isfinite(mean_loss):
            self.stop(f"the loss is {mean_loss}", step)
        if totals[2] > 0:
            self.stop("the gradient is not finite", step)
        return mean_loss

    def save(self, step):
        model, args = unwrap(self.model), self.args
        if not all_finite(model.parameters()):                              # never write a NaN over a good one
            self.stop("the weights are not finite", step)
        state = {"model": model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict(), "step": step, "global_videos": self.global_videos,
                 "args": vars(args), "seconds": round(self.seconds_before + time.time() - self.began, 1),
                 "config": checkpoint_config(model, preset=args.preset, mask_ratio=args.mask_ratio, data=args.data)}
        try:
            save_checkpoint(self.checkpoint, state)
        except OSError as e:                                                # a full disk: the last one stays whole
            self.stop(str(e), step)
        self.last_good = self.checkpoint

    def draw(self, step):
        video, ids_keep, ids_restore = self.figure
        model = unwrap(self.model).eval()
        masked, filled = model.fill_in(video, ids_keep, ids_restore)
        completion_rows(video[0], masked[0], filled[0], VIDEO_MEAN, VIDEO_STD,
                        os.path.join(self.args.out, "reconstruction.png"),
                        f"{self.args.data}, step {step}, {self.args.mask_ratio:.0%} of tokens hidden")
        model.train()
        curves(self.log.records(), ["loss"], os.path.join(self.args.out, "loss.png"))


def train(run, batches, sampler, unreadable):
    """Steps until the last one, --stop_at, --max_minutes or a signal, checking, logging, saving and drawing along
    the way. Returns the step it ended at and whether a signal (SIGTERM, Ctrl-C) ended it."""
    args, procs, device = run.args, run.procs, run.procs.device
    running = torch.zeros(3, device=device)          # summed on the device: loss, micro-batches, non-finite steps
    new_unreadable, last_time, last_step = set(), time.time(), run.start_step
    step, asked, requests = run.start_step, False, StopRequests()           # SIGTERM, Ctrl-C: stop after the step
    while step < run.total_steps:
        step_began = time.time()
        try:
            loss_sum, nonfinite, grad_norm = train_step(run.model, run.optimizer, run.scaler, batches, step,
                                                        run.total_steps, procs, args, run.cfg, new_unreadable)
        except RuntimeError as error:
            if not workers_gone(error, requests):
                raise
            asked = True                        # this step's update was not taken: the run stands at `step`
            if procs.main:
                run.save(step)
            break
        running[0] += loss_sum
        running[1] += args.accum
        running[2] += nonfinite
        step += 1
        run.bar.update(1)
        # --max_minutes: stop when one more step like this one would end past the limit (the setup counts too)
        now = time.time()
        late = args.max_minutes is not None and now + (now - step_began) - procs.started > 60 * args.max_minutes
        asked, late = procs.any(requests.signal is not None, late)          # every process stops at the same step
        stopping = step in (run.total_steps, args.stop_at) or asked or late
        logging = step % args.log_every == 0 or stopping
        if logging or step % args.save_every == 0 or device.type == "cpu":
            mean_loss = run.check(running, step)
        if logging:
            if procs.world > 1:
                gathered = [None] * procs.world
                torch.distributed.all_gather_object(gathered, new_unreadable)
                new_unreadable = {path for part in gathered for path in part}
            unreadable.update(new_unreadable)
            new_unreadable = set()
            running.zero_()
            now = time.time()
            clips_per_s = (step - last_step) * run.global_videos * args.repeats / (now - last_time)
            last_time, last_step = now, step
            run.log.write(step=step, loss=round(mean_loss, 5), lr=run.optimizer.param_groups[0]["lr"],
                          grad_norm=round(float(grad_norm), 4), clips_per_s=round(clips_per_s, 1),
                          epoch=round(sampler.epoch_at(step * args.accum), 3), unreadable_files=len(unreadable))
            run.bar.set_postfix(loss=f"{mean_loss:.4f}", clips_s=f"{clips_per_s:.0f}")
        if procs.main and (step % args.save_every == 0 or stopping):
            run.save(step)
        if procs.main and (step % args.figure_every == 0 or stopping):
            run.draw(step)
        if stopping:
            break
    run.bar.close()
    requests.close()
    return step, asked, requests

# -----------------------------------------------------------------------------
# setting up


def find_data(args):
    try:
        return pretraining_items(args.data, args.data_root, args.data_frac, args.frac_mode, args.seed)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


def model_config(args):
    try:
        return make_config(args.preset, patch=args.patch, img_size=args.img_size, frames=args.frames,
                           t_patch=args.t_patch, decoder_heads=args.decoder_heads)
    except ValueError as e:
        fail(f"--preset {args.preset} with these flags: {e}")


def restore(args, procs, cfg, model, optimizer, scaler, global_videos):
    """Continue --resume's checkpoint (its weights, optimizer and step) or start from --init's weights, or from
    scratch. Returns (the step to start at, seconds of training before, the checkpoint continued or None)."""
    resume = args.resume
    if resume == "auto":
        found = os.path.join(args.out, "checkpoint.pt")
        resume = found if os.path.exists(found) else None
        procs.print(f"--resume auto: continuing {found}" if resume else
                    f"--resume auto: no checkpoint in {args.out}, starting at step 0")
    try:
        if resume:
            state = load_checkpoint(resume, procs.device)
            if not isinstance(state.get("model"), dict):
                fail(f"--resume {resume}: not a pretrain.py checkpoint (its 'model' is not a model's weights)")
            check_same_model(f"--resume {resume}", state.get("config", {}), cfg)
            check_resumed_flags(state.get("args", {}), args, MAY_CHANGE, resume)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            if state.get("global_videos") != global_videos:
                procs.print(f"note: {resume} was trained with {state.get('global_videos')} videos per step, this run "
                            f"takes {global_videos}: the data order will differ from the original run's")
            return state["step"], state.get("seconds", 0.0), resume
        if args.init:                       # ours or the authors' (its config read off the shapes), a file or a name
            init = load_model(args.init, kind="mae")
            check_same_model(f"--init {args.init}", asdict(init.cfg), cfg)
            model.load_state_dict(init.state_dict())
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    except KeyError as e:
        fail(f"--resume {resume}: not a pretrain.py checkpoint (it has no {e})")
    except RuntimeError as e:                                               # load_state_dict: another model's keys
        fail(f"--resume {resume}: its weights are not this model's ({str(e).splitlines()[0].rstrip(':.')})")
    return 0, 0.0, None


def main(args):
    procs = Processes(args.device)
    device = procs.device
    check_out_folder(args.out)                          # before any work; the folder is made once the checks pass
    check_memory(args, procs)
    items, cfg = find_data(args), model_config(args)
    torch.manual_seed(args.seed)                                            # the same initial weights on every rank
    model = MaskedAutoencoder(cfg).to(device)
    scaler = torch.amp.GradScaler(enabled=resolve_precision(device, args.precision) == "fp16")
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=tuple(args.betas),
                                  fused=device.type == "cuda")
    global_videos = args.batch_videos * procs.world * args.accum            # videos per optimisation step
    total_steps = args.steps or max(1, math.ceil(args.epochs * len(items) / global_videos))
    restored = restore(args, procs, cfg, model, optimizer, scaler, global_videos)
    start_step = restored[0]
    if args.stop_at is not None and args.stop_at <= start_step:
        fail(f"--stop_at {args.stop_at}: {restored[2]} is at step {start_step} already")
    try:
        figure, skipped = figure_clip(items, args, cfg, device)             # also: is any file readable?
    except FileNotFoundError as e:
        fail(str(e))
    if procs.main:                                      # one run per folder: a second is refused, naming the first
        hold_folder(args.out)
    prepare_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)
    model.activation_checkpointing = args.activation_checkpointing
    if args.compile:
        model = torch.compile(model)
    if procs.world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    dataset = ClipDataset(items, train=True, repeats=args.repeats, repeat_mode=args.repeat_mode,
                          num_frames=args.frames, size=args.canvas, cache=args.cache)
    sampler = StepSampler(len(items), args.batch_videos, procs.rank, procs.world, args.seed, start_step * args.accum)
    batches = iter(make_loader(dataset, args.batch_videos, shuffle=False, workers=args.workers, sampler=sampler))
    procs.print(f"pretraining {args.preset} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
                f"parameters) on {len(items)} videos of {args.data}, {procs.world} process(es) on {device}, "
                f"{global_videos * args.repeats} clips per step, steps {start_step}..{total_steps}, out: {args.out}")
    run = Run(args, procs, cfg, model, optimizer, scaler, restored, figure, global_videos, total_steps)
    model.train()
    unreadable = set(skipped)                                               # the files that could not be read
    step, asked, requests = train(run, batches, sampler, unreadable)
    if asked:                                                               # preempted: the checkpoint is written
        procs.print(f"{requests.name or 'SIGTERM'}: stopped at step {step} of {total_steps}, checkpoint "
                    f"{run.checkpoint} written; continue with --resume auto")
        procs.close()
        release_folder(args.out)
        sys.exit(requests.exit_code if requests.signal else 143)
    flops = training_flops(cfg, args.mask_ratio)
    skipped = f"\n  skipped {len(unreadable)} unreadable file(s), named in the warnings above" if unreadable else ""
    procs.print(f"done: step {step}, {time.time() - run.began:.0f} s ({flops / 1e9:.1f} GFLOP per clip){skipped}\n"
                f"  checkpoint      {run.checkpoint}\n"
                f"  reconstruction  {os.path.join(args.out, 'reconstruction.png')}\n"
                f"  loss curve      {os.path.join(args.out, 'loss.png')}\n"
                f"  log             {os.path.join(args.out, 'log.jsonl')}")
    procs.close()
    release_folder(args.out)


if __name__ == "__main__":
    run_script(main, parse_args, "stopped by Ctrl-C, without saving; --resume auto continues from the last checkpoint")
