"""
Datasets: which files, which labels, which subset.

Every dataset hands out items (clips, label):
  clips  uint8 (R, T, S, S, 3) on a square canvas (S = 256), R views (16 pretraining, 1 to evaluate)
  label  int, the index of the class in the sorted class names (-1 when there are no labels)
collate_clips stacks a batch to (B*R, T, S, S, 3) and (B*R,), leaving out unreadable files; on the
GPU, augment.py crops, flips, resizes and normalises it into the models' float (N, 3, T, 224, 224).

Class indices are the sorted class names, as in the authors' code: for SSV2 the names are the
templates with their brackets ("Approaching [something] with your camera"), for Kinetics the class
folders. The authors' exact few-shot splits ship in assets/, selected by name ('10shot', '50shot').
"""

import csv
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from runs import ignore_ctrl_c
from settings import TOY_WORLD
from video import (CANVAS, CLIP_FRAMES, SAMPLE_FPS, VideoError, clip_times, is_video, read_clip,
                   read_frames, read_image)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
CHILDREN = ("S", "A", "Y")

# -----------------------------------------------------------------------------
# listing a dataset: paths, labels, class names


class Items(NamedTuple):
    paths: np.ndarray            # (n,) fixed-width strings: one buffer, no copy-on-read in workers
    labels: np.ndarray           # (n,) int64, -1 = unlabelled
    classes: list                # sorted class names; labels index into them

    def __len__(self):
        return len(self.paths)

    def select(self, indices) -> "Items":
        indices = np.asarray(indices, dtype=np.int64)
        return Items(self.paths[indices], self.labels[indices], self.classes)

    def relabel(self, labels, classes=None) -> "Items":
        """The same files, other labels (NamedTuple's _replace would trip over __len__ above)."""
        return Items(self.paths, np.asarray(labels, dtype=np.int64),
                     self.classes if classes is None else list(classes))


def make_items(paths, labels, classes, source) -> Items:
    if len(paths) == 0:
        raise FileNotFoundError(f"no files found for {source}")
    return Items(np.array(paths, dtype=str), np.array(labels, dtype=np.int64), list(classes))


def require_dir(path, what):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: no such folder {path}")
    if not os.access(path, os.R_OK | os.X_OK):      # FileNotFoundError too: the scripts' one line
        raise FileNotFoundError(f"{what}: the folder {path} cannot be read (no permission)")
    return path


def walk(root, keep=is_video) -> list:
    """The files under root that `keep` accepts (sorted, none hidden), and unreadable folders."""
    found = []          # a folder as path + os.sep: an item named and counted like a corrupt file
    for top, dirs, files in os.walk(root, onerror=lambda e: found.append(e.filename + os.sep)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(top, f) for f in sorted(files) if keep(f) and f[0] != "."]
    return found


def headcam_items(root, children="S") -> Items:
    """SAYCam-style headcam video: one folder per child (root/S, root/A, root/Y), videos at any
    depth; children: 'S', 'SAY' or 'S,A'. Sorted order, chronological for SAYCam's dated names."""
    names, paths = [c for c in children.replace(",", "") if c.strip()], []
    for child in names:
        if child not in CHILDREN:
            raise ValueError(f"unknown child {child!r} in --data {children!r}; choose from S, A, Y")
        found = walk(require_dir(os.path.join(root, child), f"headcam child {child}"))
        if not found:
            raise FileNotFoundError(f"no video files under {os.path.join(root, child)}")
        paths += found
    return make_items(paths, [-1] * len(paths), [], f"headcam {children} under {root}")


def folder_items(root, extensions=None) -> Items:
    """A folder of class sub-folders: root/<class>/**/<file>; videos, or files with `extensions`."""
    require_dir(root, "dataset")
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    keep = is_video if extensions is None else (lambda f: f.lower().endswith(extensions))
    found = [walk(os.path.join(root, name), keep) for name in classes]
    paths, labels = [p for f in found for p in f], [i for i, f in enumerate(found) for _ in f]
    return make_items(paths, labels, classes, f"class folders under {root}")


def empty_classes(items: Items, unreadable=()) -> list:
    """The classes with no file, or none but those in `unreadable` (a pass's Batch.unreadable)."""
    files = ~np.char.endswith(items.paths, os.sep) & ~np.isin(items.paths, list(unreadable))
    return [items.classes[i] for i in np.setdiff1d(range(len(items.classes)), items.labels[files])]


def image_items(root, split="train") -> Items:
    """ImageNet-style images: root/<split>/<class>/*.JPEG (or .png, ...)."""
    return folder_items(os.path.join(root, split), IMAGE_EXTENSIONS)


def listed_items(listing, classes, source) -> Items:
    """Items from an index's entries (candidate paths, class name): the first existing candidate;
    missing entries are skipped with one warning (YouTube deletions, partial downloads)."""
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for candidates, name in listing:
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found:
            paths.append(found)
            labels.append(index[name])
    if len(paths) < len(listing):
        warnings.warn(f"{source}: {len(listing) - len(paths)} of {len(listing)} listed videos "
                      "are missing; skipped")
    return make_items(paths, labels, classes, source)


def kinetics_items(root, split="train", csv_path=None) -> Items:
    """Kinetics: root/<split>/<class>/<youtube_id>_<start:06d>_<end:06d>.mp4, listed from the class
    folders or the official CSV (label,youtube_id,time_start,time_end,split); lost files skipped."""
    if csv_path is None:
        return folder_items(os.path.join(root, split))
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"Kinetics CSV: no such file {csv_path}")
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split", split) == split]
    name = lambda r: (f"{r['youtube_id']}_{int(float(r['time_start'])):06d}"
                      f"_{int(float(r['time_end'])):06d}.mp4")
    listing = [([os.path.join(root, split, r["label"], name(r))], r["label"]) for r in rows]
    return listed_items(listing, sorted({r["label"] for r in rows}),
                        f"Kinetics {split} from {csv_path}")


def ssv2_items(root, split="train") -> Items:
    """SSV2: root/something-something-v2-{train,validation}.json (entries with id, template, ...),
    videos root/<id>.webm (.mp4, or in root/videos/). A class is its template, brackets included."""
    entries = {}
    for s in ("train", "validation"):
        path = os.path.join(root, f"something-something-v2-{s}.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"SSV2: no such file {path}")
        with open(path) as f:
            entries[s] = json.load(f)
    if split not in entries:
        raise ValueError(f"SSV2 split must be 'train' or 'validation', got {split!r}")
    classes = sorted({e["template"] for s in entries for e in entries[s]})
    listing = [([os.path.join(root, d, f"{e['id']}{ext}")
                 for d in ("", "videos") for ext in (".webm", ".mp4")], e["template"])
               for e in entries[split]]
    return listed_items(listing, classes, f"SSV2 {split} under {root}")

# -----------------------------------------------------------------------------
# which videos a pretraining run takes (pretrain.py --data)

# Where the data sit without --data_root: the places the README documents (data/ is yours).
DEFAULT_ROOTS = {"headcam": os.path.join("data", "saycam"),
                 "kinetics": os.path.join("data", "kinetics")}


def source_roots(data, data_root):
    """{source: root}: one root for all, or name=root pairs (S=/data/saycam,kinetics=/data/k700)."""
    sources = [s.strip() for s in data.split(",") if s.strip()]
    if data_root and "=" in data_root:
        pairs = [pair.split("=", 1) for pair in data_root.split(",")]
        for bad in (p for p in pairs if len(p) < 2 or not all(map(str.strip, p))):  # S=/x,kinetics
            raise ValueError(f"--data_root: {'='.join(bad)!r} is not a name=folder pair (S=/x)")
        roots = {name.strip(): folder.strip() for name, folder in pairs}
        missing = [s for s in sources if s not in roots and not os.path.isdir(s)]
        if missing:
            raise ValueError(f"--data_root names no folder for {', '.join(missing)} "
                             "(give name=folder pairs)")
        return {s: roots.get(s) for s in sources}
    return {s: data_root for s in sources}


def default_root(kind, source, holds):
    """A source's documented place without --data_root; one line naming it when nothing is there."""
    root = DEFAULT_ROOTS[kind]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--data {source}: no {root}/ here (its default place, holding "
                                f"{holds}); put the data there, or give its folder with "
                                "--data_root")
    return root


def source_items(source, root=None, seed=0) -> Items:
    """The videos of one source: a headcam child or children (S, A, Y, SAY), Kinetics (or its
    200-hour subset), the toy world's child S, or any folder of videos."""
    if source == "toy":                                            # the toy world's child S
        root = root or TOY_WORLD
        if not os.path.isdir(os.path.join(root, "saycam")):
            raise FileNotFoundError(f"no toy world at {root}: "
                                    f"make one with `python -m toy.world --out {root}`")
        return headcam_items(os.path.join(root, "saycam"), "S")
    if all(c in CHILDREN for c in source.replace("+", "")) and source:
        root = root or default_root("headcam", source, "the children's folders S/, A/, Y/")
        return headcam_items(root, source.replace("+", ""))
    if source in ("kinetics", "kinetics-200h"):
        items = kinetics_items(root or default_root("kinetics", source, "train/<class>/"), "train")
        if source == "kinetics-200h":            # 128 clips per class, as the authors' 200 hours
            rng = np.random.default_rng(seed)
            keep = [i for c in np.unique(items.labels) for i in
                    rng.permutation(np.flatnonzero(items.labels == c))[:128]]
            items = items.select(np.sort(keep))
        return items
    folder = source if os.path.isdir(source) or not root else os.path.join(root, source)
    if os.path.isdir(folder):                    # any folder of videos (or one under --data_root)
        paths = walk(require_dir(folder, f"--data {source}"))
        return make_items(paths, [-1] * len(paths), [], f"the folder {folder}")
    raise ValueError(f"--data {source!r} is not S, A, Y, SAY, kinetics, kinetics-200h, toy "
                     "or an existing folder")


def pretraining_items(data, data_root=None, fraction=1.0, frac_mode="prefix", seed=0) -> Items:
    """Unlabelled videos of --data (a source or a comma-separated mix), or a fraction of them."""
    parts = [source_items(s, root, seed) for s, root in source_roots(data, data_root).items()]
    paths = np.concatenate([p.paths for p in parts])
    items = make_items(paths, np.full(sum(map(len, parts)), -1), [], data)
    return fraction_subset(items, fraction, frac_mode, seed) if fraction < 1 else items

# -----------------------------------------------------------------------------
# subsets


def fraction_subset(items: Items, fraction: float, mode="prefix", seed=0) -> Items:
    """A fraction of the files: 'prefix' keeps the first ones in sorted (chronological) order, as
    the authors did for the scaling runs; 'random' a seeded random choice. At least one is kept."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data fraction must be in (0, 1], got {fraction}")
    count = max(1, round(len(items) * fraction))
    if mode == "prefix":
        return items.select(np.arange(count))
    if mode == "random":
        return items.select(np.sort(np.random.default_rng(seed).permutation(len(items))[:count]))
    raise ValueError(f"unknown fraction mode {mode!r}; choose 'prefix' or 'random'")


# -----------------------------------------------------------------------------
# datasets


@dataclass(frozen=True)
class Unreadable:
    """What a dataset hands out for a file it cannot read (corrupt, truncated, not a video).
    collate_clips drops it and names it: no run stops for one bad file, and skips are counted."""
    path: str


def skip(skipped: set, path: str, error: Exception) -> Unreadable:
    """An unreadable file: warn once per file (per worker process) and remember it."""
    if path not in skipped:
        skipped.add(path)
        warnings.warn(f"skipping unreadable file {path}: {error}")
    return Unreadable(path)


def first_readable(dataset, source):
    """(index, item) of the first item the dataset can read, in order; FileNotFoundError naming
    `source` when no file is readable (a run would otherwise wait forever for a batch)."""
    for index in range(len(dataset)):
        item = dataset[index, 0]     # a fixed seed: no draw from torch's generator, which trains on
        if not isinstance(item, Unreadable):
            return index, item
    raise FileNotFoundError(f"none of the {len(dataset)} files of {source} is readable")


class ClipDataset(Dataset):
    """Clips of video files. train=True: a random start and R = repeats views: R copies of one 4.3 s
    window (repeat_mode='crops': augment() then crops each differently; the authors' later code)
    or R random windows of one decoded stretch of up to `span_seconds` ('windows'; their earlier
    code). train=False: the centre clip, or `views` clips spread evenly over the video (multi-view
    evaluation). num_frames=1: single frames, for the image-MAE baseline. cache=True keeps each
    file's frames in memory once decoded (few-shot sets, the toy world: small data otherwise decoded
    every epoch); clips are then cut from the whole file's frames, in either mode. cache_dir
    (implies cache) also keeps them on disk, one .npy a file: runs reading the same files (other
    seeds, other models on one few-shot set) decode each only once."""

    def __init__(self, items: Items, train=True, repeats=1, repeat_mode="crops",
                 num_frames=CLIP_FRAMES, fps=SAMPLE_FPS, size=CANVAS, span_seconds=60.0, views=1,
                 cache=False, cache_dir=None):
        if repeat_mode not in ("crops", "windows"):
            raise ValueError(f"unknown repeat mode {repeat_mode!r}; choose 'crops' or 'windows'")
        self.items, self.train, self.repeat_mode = items, train, repeat_mode
        self.repeats = repeats if train else views       # evaluation: one view per clip position
        self.num_frames, self.fps = num_frames, fps
        self.size, self.span_seconds = size, span_seconds
        self.skipped = set()                             # unreadable files seen by this process
        self.cache, self.cache_dir = {} if cache or cache_dir else None, cache_dir  # path: frames
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)

    def __len__(self):
        return len(self.items)

    def whole(self, path) -> np.ndarray:
        """All frames at fps from the start (n, S, S, 3), at least num_frames (the last repeats)."""
        frames = self.cache.get(path) if self.cache is not None else None
        if frames is None:
            copy = self.disk_copy(path) if self.cache_dir else None
            if copy and os.path.exists(copy):
                try:
                    frames = np.load(copy)
                except (OSError, ValueError):         # not a frames file: decode and write anew
                    frames = None
            if frames is None:
                frames = read_frames(path, lambda duration, source_fps: clip_times(
                    duration, source_fps, max(self.num_frames, math.floor(duration * self.fps) + 1),
                    self.fps, 0.0), self.size)
                if copy:
                    partial = f"{copy}.{os.getpid()}.tmp"
                    with open(partial, "wb") as f:
                        np.save(f, frames)
                    os.replace(partial, copy)       # atomic: a run beside this one never reads half
            if self.cache is not None:
                self.cache[path] = frames
        return frames

    def disk_copy(self, path) -> str:
        """Where cache_dir keeps a file's decoded frames, named by the file (path, size and time:
        a rewritten file is decoded again) and the decoding (canvas, frame rate, fewest frames)."""
        stat = os.stat(path)
        key = repr((os.path.abspath(path), stat.st_size, stat.st_mtime_ns,
                    self.size, self.fps, self.num_frames))
        return os.path.join(self.cache_dir, hashlib.sha256(key.encode()).hexdigest()[:32] + ".npy")

    def load(self, path, rng) -> np.ndarray:
        """(R, T, S, S, 3) uint8."""
        T, R = self.num_frames, self.repeats
        if self.cache is not None or (not self.train and R > 1):  # cut from the whole file's frames
            frames = self.whole(path)
            room = len(frames) - T                            # the latest start
            if not self.train:
                starts = (room * (np.arange(R) + 0.5) / R).astype(int)
            elif self.repeat_mode == "crops":                 # one window, R views (cropped later)
                starts = np.full(R, rng.integers(0, room + 1))
            else:
                starts = rng.integers(0, room + 1, size=R)
            return np.stack([frames[s:s + T] for s in starts])  # (R, T, S, S, 3)
        if not self.train:
            return read_clip(path, T, self.fps, "center", size=self.size)[None]
        if self.repeat_mode == "crops":
            clip = read_clip(path, T, self.fps, "random", rng, self.size)
            return np.broadcast_to(clip, (R, *clip.shape))  # one decode; R views, copied at collate
        def stretch(duration, source_fps):                    # up to span_seconds of frames at fps
            n = max(T, min(int(self.span_seconds * self.fps), math.floor(duration * self.fps) + 1))
            return clip_times(duration, source_fps, n, self.fps, "random", rng)

        frames = read_frames(path, stretch, self.size)        # (n, S, S, 3), one decode
        starts = rng.integers(0, len(frames) - T + 1, size=R)
        return np.stack([frames[s:s + T] for s in starts])

    def __getitem__(self, key):
        """key: an index, or (index, seed) from a sampler that decides the random choices
        (training.StepSampler: a resumed run then draws the same clips)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        path, label = str(self.items.paths[index]), int(self.items.labels[index])
        if seed is None:      # torch's generator is seeded per DataLoader worker: the draws differ
            seed = int(torch.randint(0, 2 ** 62, ()))
        rng = np.random.default_rng(seed)
        try:
            clips = self.load(path, rng)
        except VideoError as e:
            return skip(self.skipped, path, e)
        # np.require copies only read-only or strided clips
        return torch.from_numpy(np.require(clips, requirements=["C", "W"])), label


class ImageClipDataset(Dataset):
    """Images as static clips: each image (short side resized to S, centre square) repeated T times,
    as the paper finetunes video models on ImageNet. num_frames=1: plain images for image models."""

    def __init__(self, items: Items, num_frames=CLIP_FRAMES, size=CANVAS, repeats=1):
        self.items, self.num_frames, self.size, self.repeats = items, num_frames, size, repeats
        self.skipped = set()

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key     # (index, seed) from a StepSampler
        path, label = str(self.items.paths[index]), int(self.items.labels[index])
        try:
            frame = torch.from_numpy(read_image(path, self.size))         # (S, S, 3)
        except VideoError as e:
            return skip(self.skipped, path, e)
        return frame.expand(self.repeats, self.num_frames, *frame.shape), label


class Batch(NamedTuple):
    clips: torch.Tensor          # (B*R, T, S, S, 3) uint8; None when the batch had no readable file
    labels: torch.Tensor         # (B*R,) int64; None likewise
    unreadable: tuple            # the paths of the batch's unreadable files, which it left out


def collate_clips(items) -> Batch:
    """Stack items to clips (B*R, T, S, S, 3) and labels (B*R,), leaving out unreadable files."""
    readable = [item for item in items if not isinstance(item, Unreadable)]
    unreadable = tuple(item.path for item in items if isinstance(item, Unreadable))
    if not readable:
        return Batch(None, None, unreadable)
    clips = torch.cat([c for c, _ in readable])
    labels = torch.cat([torch.full((c.shape[0],), y, dtype=torch.long) for c, y in readable])
    return Batch(clips, labels, unreadable)


def make_loader(dataset, batch_size, shuffle=True, workers=4, sampler=None, drop_last=True, seed=0):
    """A DataLoader that holds up at scale: worker processes decode, pinned memory for fast copies
    to the GPU, workers kept alive across epochs, a few batches prefetched per worker."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, collate_fn=collate_clips,
                      pin_memory=torch.cuda.is_available(), drop_last=drop_last,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      generator=generator,
                      worker_init_fn=ignore_ctrl_c)   # the main process decides on stopping
