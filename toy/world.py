"""
The toy world: a procedurally generated child's-eye video world, written to disk in the real
datasets' formats.

Real SAYCam, Kinetics and SSV2 cannot ship, so `python -m toy.world --out DIR` makes small stand-ins
that the real loaders read unchanged, in which the paper's questions are real ones:
  DIR/saycam/{S,A,Y}/...mp4        headcam streams: a panning view of a textured room, objects that
                                   slide, fall, bounce and get occluded, a hand that pushes; A and Y
                                   have other object mixes and dark or blurry stretches (the paper's
                                   conjecture about A and Y)
  DIR/ssv2/                        an SSV2-like action set: 14 classes defined by motion alone, in 7
                                   mirror pairs that are exact time reversals (one frame cannot tell
                                   a pair apart)
  DIR/kinetics/<split>/<class>/    a Kinetics-like set: a scene (which one frame shows) and what the
                                   objects do
  DIR/imagenet/, DIR/ood/          part 2 (toy/images.py): 16 object classes, each a shape with a
                                   typical texture, in the ImageNet layout, and OOD versions in
                                   model-vs-human's layout
  DIR/*_contact_sheet.png          the world at a glance
Everything is drawn with vectorised torch from one seed: the same seed writes byte-identical files.

The chapter: the action set -> the headcam streams -> writing them. The Kinetics-like set is
toy/kinetics.py, the drawing kit (shapes, textures and objects) toy/shapes.py.
"""

import argparse
import datetime
import json
import math
import os
import shutil
import time
from multiprocessing import Pool

import numpy as np
import torch
from tqdm import tqdm

from runs import check_out_folder
from toy import FRAME
from toy.images import image_jobs
from toy.kinetics import KINETICS_CLASSES, kinetics_clips
from toy.shapes import (COLOURS, MOVERS, appearance, backgrounds, chunk_seed, draw_objects,
                        to_uint8, uniform)
from training import ArgumentParser, nonnegative_int, positive_float, positive_int
from video import find_videos, read_frames, write_image, write_video

FPS = 3.75      # files are written at the clip rate directly (loaders read the rate from the file)
T = 16          # frames per action clip
# bumped when the same seed draws a different world (4: ImageNet's 1,300 images a class)
VERSION = 4
CHUNK = 64      # clips drawn at once: bounds memory (the shapes' distance fields are per pixel)

# -----------------------------------------------------------------------------
# the SSV2-like action set: classes defined by motion alone


# Mirror pairs: the second class of each pair is the first one played backwards, so a single frame
# of one is distributed exactly as a single frame of the other; only the order of the frames tells
# them apart.
ACTION_PAIRS = (
    ("Moving [something] from left to right", "Moving [something] from right to left"),
    ("Moving [something] down", "Moving [something] up"),
    ("Rotating [something] clockwise", "Rotating [something] anticlockwise"),
    ("Approaching [something] with your camera", "Moving away from [something] with your camera"),
    ("Dropping [something]", "Throwing [something] upwards"),
    ("Covering [something] with [something]", "Uncovering [something]"),
    ("Pushing [something] so that it falls off the table", "Putting [something] onto the table"),
)


def action_pair_clips(pair, n, g, H=FRAME, W=FRAME):
    """n clips (n, T, H, W, 3) of the *first* class of mirror pair `pair`: the motion, played
    forwards. Appearance, position, background and a static distractor are drawn independently of
    the class."""
    tau = torch.linspace(-1, 1, T).view(1, T)             # centred time: the middle frame is 0
    canvas = backgrounds(n, H, W, g)[:, None].repeat(1, T, 1, 1, 1)
    has_distractor = torch.rand(n, generator=g) < 0.5     # a still object somewhere, half the time
    d_shape, d_colour, d_tex = appearance(n, g, MOVERS)
    draw_objects(canvas, uniform(g, n, 8, W - 8)[:, None].expand(n, T),
                 uniform(g, n, 8, H - 8)[:, None].expand(n, T),
                 uniform(g, n, 6, 9)[:, None].expand(n, T),
                 uniform(g, n, 0, 6.3)[:, None].expand(n, T),
                 d_shape, d_colour, d_tex, alpha=has_distractor.float()[:, None].expand(n, T))
    shape, colour, tex = appearance(n, g, MOVERS)
    r = uniform(g, n, 9, 13)[:, None]                     # radius: 18-26 px across, >= one patch
    angle = uniform(g, n, 0, 2 * math.pi)[:, None].expand(n, T)
    amp = uniform(g, n, 14, 20)[:, None]                  # a move crosses 28-40 of 64 pixels
    mx, my = (uniform(g, n, W / 2 - 6, W / 2 + 6)[:, None],
              uniform(g, n, H / 2 - 6, H / 2 + 6)[:, None])
    # a direction, for pairs 5 and 6
    side = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)[:, None]
    size = r.expand(n, T)
    if pair == 0:                                         # left -> right
        x, y = mx + amp * tau, my.expand(n, T)
    elif pair == 1:                                       # down
        x, y = mx.expand(n, T), my + amp * tau
    elif pair == 2:                                       # clockwise (y points down on screen)
        x, y = mx.expand(n, T), my.expand(n, T)
        # 180-360 degrees in all
        angle = angle + uniform(g, n, math.pi / 2, math.pi)[:, None] * tau
    elif pair == 3:                                       # approaching: grows 2-3x
        x, y = mx.expand(n, T), my.expand(n, T)
        start = uniform(g, n, 10, 12)[:, None]            # (drawn before the growth, as always)
        growth = uniform(g, n, math.log(2) / 2, math.log(3) / 2)[:, None]
        size = start * torch.exp(growth * tau)
    elif pair == 4:                                       # dropping: falls, accelerating, bounces
        fall = uniform(g, n, 28, 36)[:, None]
        s = (tau + 1) / 2 * 1.35                          # lands at s = 1, 3/4 of the way through
        # then one small bounce
        hop = 0.25 * fall * (1 - ((s - 1.175) / 0.175) ** 2).clamp(min=0)
        x, y = mx.expand(n, T), (H - r - 2 - fall) + fall * s.clamp(max=1) ** 2 - hop
    elif pair == 5:                                       # covering: a cloth slides over it
        x, y = mx.expand(n, T), my.expand(n, T)
    else:                                                 # pushed along a table, then falls off
        edge = mx + side * r * 0.5                        # the table ends just past the object
        ground = H - 24.0
        slide = (tau.clamp(max=0) + 1)                    # 0 -> 1 over the first half
        fall = tau.clamp(min=0)                           # 0 -> 1 over the second half
        x = edge - side * (amp + r) + side * (amp + r) * slide + side * 10 * fall
        y = ground - r + 26 * fall ** 2
        table_x = torch.arange(W, dtype=torch.float32).view(1, W)
        on_table = torch.where(side > 0, table_x < edge + 2, table_x > edge - 2)          # (n, W)
        band = torch.zeros(n, 1, H, W, 1)
        band[:, 0, int(ground):int(ground) + 4] = on_table[:, None, :, None].float()
        canvas.mul_(1 - band).add_(band * torch.tensor([0.45, 0.3, 0.15]))
    draw_objects(canvas, x, y, size, angle, shape, colour, tex)
    if pair == 5:
        arrive = ((tau + 1) / 1.4).clamp(max=1)           # arrives 70% of the way through, stays
        cloth_x = mx + side * 1.1 * W * (1 - arrive)      # off-screen -> centred on the object
        half = r + 4
        cols = torch.arange(W, dtype=torch.float32).view(1, 1, 1, W)
        # (n, T, 1, W)
        cloth = ((cols - cloth_x[..., None, None]).abs() < half[..., None, None]).float()
        cloth_colour = (COLOURS[torch.randint(len(COLOURS), (n,), generator=g)].view(n, 1, 1, 1, 3)
                        * 0.8)
        stripes = 0.85 + 0.15 * torch.sign(torch.sin(cols * 1.3)).unsqueeze(-1)
        canvas.mul_(1 - cloth[..., None]).add_(cloth[..., None] * cloth_colour * stripes)
    return canvas


def render_action(name, n, g, H=FRAME, W=FRAME):
    """n clips (n, T, H, W, 3) of action class `name`. The second class of a mirror pair is the
    first one's rendering played backwards: with the same generator state, exactly the same frames
    in reverse order."""
    for pair, (forwards, backwards) in enumerate(ACTION_PAIRS):
        if name in (forwards, backwards):
            clips = action_pair_clips(pair, n, g, H, W)
            return clips.flip(1) if name == backwards else clips
    raise ValueError(f"unknown action class {name!r}")


def action_clips(n, g, H=FRAME, W=FRAME):
    """n labelled action clips: (n, T, H, W, 3) float in [0, 1] and (n,) indices into
    action_classes()."""
    classes = action_classes()
    labels = torch.randperm(n, generator=g) % len(classes)
    frames = torch.empty(n, T, H, W, 3)
    for c, name in enumerate(classes):
        for idx in (labels == c).nonzero().flatten().split(CHUNK):
            frames[idx] = render_action(name, len(idx), g, H, W)
    return frames, labels


def action_classes():
    # class index = sorted name, as SSV2's
    return sorted(name for pair in ACTION_PAIRS for name in pair)

# -----------------------------------------------------------------------------
# headcam streams: a child's view of a room


# Each child sees other things: S every shape and colour;
# A and Y their own mixes, and dark or blurry stretches.
CHILDREN = {"S": dict(shapes=None, colours=None, dark=0.0, blur=0.0),
            "A": dict(shapes=(0, 1, 2, 3, 6), colours=(0, 2, 3, 7), dark=0.3, blur=0.1),
            "Y": dict(shapes=(1, 4, 5, 6, 7), colours=(1, 4, 5, 6), dark=0.2, blur=0.25)}
ROOM_H, ROOM_W = 128, 256         # the room panorama, in pixels; the camera sees a window of it
OBJECTS = 6                       # objects in the room at once
FLOOR = 0.6 * ROOM_H              # where the wall meets the floor
# the camera: random acceleration (room px per frame), chance of a jerk per frame
CAM_DRIFT, CAM_JERK = 0.4, 0.01


def room_textures(n, g):
    """(n, 3, ROOM_H, ROOM_W): a patterned wall, a window, a floor of planks."""
    rows = torch.arange(ROOM_H, dtype=torch.float32).view(1, ROOM_H, 1, 1)
    cols = torch.arange(ROOM_W, dtype=torch.float32).view(1, 1, ROOM_W, 1)
    wall_colour = 0.45 + 0.35 * torch.rand(n, 1, 1, 3, generator=g)
    period = uniform(g, n, 10, 24).view(n, 1, 1, 1)
    wall = wall_colour * (0.9 + 0.1 * torch.sign(torch.sin(cols * 2 * math.pi / period)))
    window_x = uniform(g, n, 20, ROOM_W - 80).view(n, 1, 1, 1)
    window = ((cols > window_x) & (cols < window_x + 50) & (rows > 20) & (rows < 60)).float()
    wall = wall * (1 - window) + window * torch.tensor([0.85, 0.92, 1.0])
    floor = (0.35 + 0.2 * torch.rand(n, 1, 1, 3, generator=g)) * (0.85 + 0.15 * ((rows // 6) % 2))
    return torch.where(rows > FLOOR, floor, wall).permute(0, 3, 1, 2)


def headcam_streams(n, frames, g, child="S", H=FRAME, W=FRAME):
    """n continuous recordings (n, frames, H, W, 3) of child `child`, at the files' frame rate."""
    spec = CHILDREN[child]
    floor_y = FLOOR + 14.0                                  # objects rest a little below the wall
    # the objects: state per (recording, object); everything in room pixels and frames
    shape, colour, tex = appearance(n * OBJECTS, g, spec["shapes"], spec["colours"])
    r = uniform(g, n * OBJECTS, 8, 12).view(n, OBJECTS)
    x, y = uniform(g, n * OBJECTS, 20, ROOM_W - 20).view(n, OBJECTS), floor_y - r
    vx, vy = torch.zeros(n, OBJECTS), torch.zeros(n, OBJECTS)
    angle = uniform(g, n * OBJECTS, 0, 6.3).view(n, OBJECTS)
    # the camera: a slow pan with occasional jerks, and a little zoom
    cam_x, cam_y, cam_v = uniform(g, n, 60, ROOM_W - 60), uniform(g, n, 64, 84), torch.zeros(n)
    hand_timer, hand_obj, hand_side = (torch.zeros(n), torch.zeros(n, dtype=torch.long),
                                       torch.ones(n))
    track = {k: [] for k in ("x", "y", "angle", "cam_x", "cam_y", "zoom",
                             "hand", "hand_obj", "hand_side")}
    for f in range(frames):
        # throws: now and then an object is picked up and tossed back into the room
        thrown = torch.rand(n, OBJECTS, generator=g) < 0.02
        x = torch.where(thrown, uniform(g, n * OBJECTS, 20, ROOM_W - 20).view(n, OBJECTS), x)
        y = torch.where(thrown, torch.full_like(y, 25.0), y)
        vx = torch.where(thrown, uniform(g, n * OBJECTS, -6, 6).view(n, OBJECTS), vx)
        vy = torch.where(thrown, torch.zeros_like(vy), vy)
        # the hand: reaches in next to an object and pushes it
        start = (hand_timer <= 0) & (torch.rand(n, generator=g) < 0.05)
        hand_obj = torch.where(start, torch.randint(OBJECTS, (n,), generator=g), hand_obj)
        hand_side = torch.where(start, torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0),
                                hand_side)
        hand_timer = torch.where(start, torch.full_like(hand_timer, 3), hand_timer - 1)
        pushing = ((hand_timer == 1).float()[:, None]
                   * torch.nn.functional.one_hot(hand_obj, OBJECTS))
        vx = vx - 9 * hand_side[:, None] * pushing
        # physics: gravity, bounces with loss, friction and rolling on the floor,
        # walls at the room's ends
        vy = vy + 4.0
        x, y = x + vx, y + vy
        on_floor = y + r >= floor_y
        y = torch.where(on_floor, floor_y - r, y)
        vy = torch.where(on_floor, -0.45 * vy * (vy.abs() > 6), vy)
        vx = torch.where(on_floor, 0.8 * vx, vx)
        # rolling: arc length / radius
        angle = angle + torch.where(on_floor, vx / r, 0.1 * vx / r)
        bounce = (x < r) | (x > ROOM_W - r)
        vx, x = torch.where(bounce, -vx, vx), x.clamp(r, ROOM_W - r)
        # the camera drifts, and sometimes jerks to look elsewhere
        cam_v = 0.9 * cam_v + CAM_DRIFT * torch.randn(n, generator=g)
        jerk = torch.rand(n, generator=g) < CAM_JERK
        cam_x = (cam_x + cam_v + jerk * uniform(g, n, -60, 60)).clamp(40, ROOM_W - 40)
        cam_y = (cam_y + 0.5 * torch.randn(n, generator=g)).clamp(56, 92)
        for k, v in (("x", x), ("y", y), ("angle", angle), ("cam_x", cam_x), ("cam_y", cam_y),
                     ("zoom", 0.9 + 0.1 * torch.sin(torch.full((n,), f / 20.0))),
                     ("hand", (hand_timer > 0).float()), ("hand_obj", hand_obj),
                     ("hand_side", hand_side)):
            track[k].append(v.clone())
    track = {k: torch.stack(v, dim=1) for k, v in track.items()}           # (n, frames[, OBJECTS])
    zoom = track["zoom"]
    # the view: one grid_sample of the room per frame, through a window of W / zoom room pixels
    theta = torch.zeros(n, frames, 2, 3)
    theta[..., 0, 0] = W / zoom / ROOM_W
    theta[..., 1, 1] = H / zoom / ROOM_H
    theta[..., 0, 2] = 2 * track["cam_x"] / ROOM_W - 1
    theta[..., 1, 2] = 2 * track["cam_y"] / ROOM_H - 1
    room = room_textures(n, g)
    grid = torch.nn.functional.affine_grid(theta.view(-1, 2, 3), [n * frames, 3, H, W],
                                           align_corners=False)
    view = torch.nn.functional.grid_sample(room.repeat_interleave(frames, 0), grid,
                                           align_corners=False)
    canvas = view.view(n, frames, 3, H, W).permute(0, 1, 3, 4, 2).contiguous()
    to_view = lambda px, py: ((px - track["cam_x"]) * zoom + W / 2,
                              (py - track["cam_y"]) * zoom + H / 2)
    for k in range(OBJECTS):
        vx_, vy_ = to_view(track["x"][..., k], track["y"][..., k])
        idx = torch.arange(n) * OBJECTS + k
        draw_objects(canvas, vx_, vy_, r[:, k, None] * zoom, track["angle"][..., k],
                     shape[idx], colour[idx], tex[idx])
    # the hand, a skin-coloured blob beside the object it is pushing in that frame
    target = lambda v: v.gather(2, track["hand_obj"][..., None]).squeeze(2)          # (n, frames)
    hx, hy = to_view(target(track["x"]) + 14 * track["hand_side"], target(track["y"]))
    draw_objects(canvas, hx, hy, 9 * zoom, torch.zeros(n, frames),
                 torch.zeros(n, dtype=torch.long), torch.tensor([[0.93, 0.72, 0.58]]).expand(n, 3),
                 torch.zeros(n, dtype=torch.long), alpha=track["hand"])
    # foreground furniture: a table leg and a chair that objects pass behind
    for leg_x in (uniform(g, n, 30, ROOM_W - 30), uniform(g, n, 30, ROOM_W - 30)):
        left, _ = to_view(leg_x[:, None] - 5, 0)
        right, _ = to_view(leg_x[:, None] + 5, 0)
        cols = torch.arange(W, dtype=torch.float32).view(1, 1, 1, W)
        leg = ((cols > left[..., None, None]) & (cols < right[..., None, None])).float()[..., None]
        canvas.mul_(1 - leg).add_(leg * torch.tensor([0.35, 0.22, 0.12]))
    return bad_stretches(canvas, spec, g)


def bad_stretches(canvas, spec, g):
    """A's and Y's bad stretches of recordings (n, frames, H, W, 3): under-exposed, or blurred by
    motion, in runs of 8 frames."""
    n, frames, H, W, _ = canvas.shape
    for kind in ("dark", "blur"):
        if spec[kind] > 0:
            bad = ((torch.rand(n, frames // 8 + 1, generator=g) < spec[kind])
                   .repeat_interleave(8, 1)[:, :frames])
            if kind == "dark":
                canvas = canvas * torch.where(bad, 0.25, 1.0)[..., None, None, None]
            else:
                blurred = torch.nn.functional.avg_pool2d(
                    canvas.permute(0, 1, 4, 2, 3).reshape(-1, H, W), 5, 1, 2,
                    count_include_pad=False).view(n, frames, 3, H, W)
                canvas = torch.where(bad[..., None, None, None], blurred.permute(0, 1, 3, 4, 2),
                                     canvas)
    return canvas

# -----------------------------------------------------------------------------
# writing the world in the real datasets' formats


def write_headcam_chunk(job):
    out, child, chunk, first, count, frames, seed = job
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(chunk_seed(seed, "saycam", child, chunk))
    streams = to_uint8(headcam_streams(count, frames, g, child))
    start = datetime.date(2013, 6, 1)
    for i, video in enumerate(streams, start=first):
        day = start + datetime.timedelta(days=i // 4)       # four recordings a day, dated names
        path = os.path.join(out, "saycam", child, f"{day:%Y-%m}",
                            f"{child}_{day:%Y%m%d}_{i:04d}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, video, FPS)
    return count


def write_ssv2_chunk(job):
    out, split, chunk, first, count, seed = job
    torch.set_num_threads(1)
    frames, labels = action_clips(
        count, torch.Generator().manual_seed(chunk_seed(seed, "ssv2", split, chunk)))
    classes, entries = action_classes(), []
    for i, (video, label) in enumerate(zip(to_uint8(frames), labels.tolist()), start=first):
        write_video(os.path.join(out, "ssv2", f"{i}.webm"), video, FPS)
        template = classes[label]
        entries.append({"id": str(i), "label": template.replace("[something]", "a toy"),
                        "template": template,
                        "placeholders": ["a toy"] * template.count("[something]")})
    return entries


def write_kinetics_chunk(job):
    out, split, chunk, first, count, seed = job
    torch.set_num_threads(1)
    frames, labels = kinetics_clips(
        count, torch.Generator().manual_seed(chunk_seed(seed, "kinetics", split, chunk)))
    classes = sorted(KINETICS_CLASSES)
    for i, (video, label) in enumerate(zip(to_uint8(frames), labels.tolist()), start=first):
        folder = os.path.join(out, "kinetics", split, classes[label])
        os.makedirs(folder, exist_ok=True)
        start = (7 * i) % 290                               # Kinetics' <id>_<start>_<end> names
        write_video(os.path.join(folder, f"toy{split[0]}{i:07d}_{start:06d}_{start + 10:06d}.mp4"),
                    video, FPS)
    return count


def chunks(total, size=CHUNK):
    return [(k, first, min(size, total - first)) for k, first in enumerate(range(0, total, size))]


def contact_sheet(paths, frames_per_row, path):
    """One row per file: every other frame, read back through video.py like any dataset file."""
    rows = [read_frames(p, np.arange(frames_per_row) * 2 / FPS, size=None) for p in paths]
    write_image(path, np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0))


def run_job(fn_and_job):
    fn, job = fn_and_job
    return fn(job)


def generate(out, seed=0, scale=1.0, workers=2):
    """Write the whole toy world under `out`. Returns a summary (also written to out/world.json)."""
    start = time.time()
    n = lambda count: max(1, round(count * scale))
    sizes = {"saycam": {"S": n(1000), "A": n(250), "Y": n(250)}, "saycam_frames": 60,
             "ssv2": {"train": n(120) * 14, "validation": n(30) * 14},
             "kinetics": {"train": n(120) * 8, "val": n(30) * 8}}
    os.makedirs(os.path.join(out, "ssv2"), exist_ok=True)
    jobs = [(write_headcam_chunk, (out, child, k, first, count, sizes["saycam_frames"], seed))
            for child, total in sizes["saycam"].items() for k, first, count in chunks(total, 16)]
    ssv2_first = {"train": 1, "validation": 1 + sizes["ssv2"]["train"]}
    jobs += [(write_ssv2_chunk, (out, split, k, ssv2_first[split] + first, count, seed))
             for split, total in sizes["ssv2"].items() for k, first, count in chunks(total)]
    jobs += [(write_kinetics_chunk, (out, split, k, first, count, seed))
             for split, total in sizes["kinetics"].items() for k, first, count in chunks(total)]
    part2, sizes["images"] = image_jobs(out, seed, n)
    jobs += part2
    entries = {"train": [], "validation": []}
    with Pool(workers) as pool:
        results = pool.imap(run_job, jobs)
        for (fn, job), result in tqdm(zip(jobs, results), total=len(jobs), desc="toy world"):
            if fn is write_ssv2_chunk:
                entries[job[1]] += result
    for split, split_entries in entries.items():
        with open(os.path.join(out, "ssv2", f"something-something-v2-{split}.json"), "w") as f:
            json.dump(split_entries, f, indent=1)
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(action_classes())}
    with open(os.path.join(out, "ssv2", "something-something-v2-labels.json"), "w") as f:
        json.dump(labels, f, indent=1)
    heads = [p for c in "SAY" for p in find_videos(os.path.join(out, "saycam", c))[:2]]
    contact_sheet(heads, 16, os.path.join(out, "saycam_contact_sheet.png"))
    # the first clip of each class
    first_clip = {e["template"]: e["id"] for e in reversed(entries["train"])}
    contact_sheet([os.path.join(out, "ssv2", f"{first_clip[c]}.webm") for c in action_classes()], 8,
                  os.path.join(out, "ssv2_contact_sheet.png"))
    contact_sheet([find_videos(os.path.join(out, "kinetics", "train", c))[0]
                   for c in sorted(KINETICS_CLASSES)], 10,
                  os.path.join(out, "kinetics_contact_sheet.png"))
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    summary = {"version": VERSION, "seed": seed, "scale": scale, "sizes": sizes,
               "seconds": round(time.time() - start, 1), "megabytes": round(disk / 1e6, 1)}
    with open(os.path.join(out, "world.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    parser = ArgumentParser(description="Write the toy world.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--scale", type=positive_float, default=1.0,
                        help="multiplies the number of files of every part")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="processes drawing and encoding")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a world already at --out if it is this version, "
                        "seed and scale; rewrite it otherwise")
    args = parser.parse_args()
    check_out_folder(args.out)
    described = os.path.join(args.out, "world.json")
    if args.reuse and os.path.exists(described):
        with open(described) as f:
            found = json.load(f)
        if ((found.get("version"), found.get("seed"), found.get("scale"))
                == (VERSION, args.seed, args.scale)):
            print(f"{args.out} already holds this world "
                  f"(version {VERSION}, seed {args.seed}, scale {args.scale})")
            raise SystemExit(0)
        print(f"{args.out} holds another world (version {found.get('version')}, "
              f"seed {found.get('seed')}, scale {found.get('scale')}): "
              f"writing version {VERSION}, seed {args.seed}, scale {args.scale} in its place")
        shutil.rmtree(args.out)  # ours (it has a world.json): no stale files left behind
    summary = generate(args.out, args.seed, args.scale, args.workers)
    print(f"wrote the toy world to {args.out}: {summary['megabytes']} MB in {summary['seconds']} s")
