"""
Benchmarks: how fast each stage runs, measured, and how far that is from the hardware's limit.

    python bench.py step [--preset huge_patch14 --img_size 224 --mask_ratio 0.9 --batch 16]
    python bench.py e2e -- --data S --data_root /data/saycam_prepared --workers 8
    python bench.py io --videos DIR [--seconds 8]
    python bench.py gpu [--dry-run] [--budget_minutes 8.5] [--out bench_gpu.json]

`step` times the MAE training step alone on synthetic input, split into forward, backward and
optimizer, with its MFU; when Hugging Face `transformers` is installed, its VideoMAE runs beside it
at the same size. --profile N prints the N operators that cost the most device time (CPU time on a
CPU). `e2e` runs pretrain.py's own loop on real files and puts its clips/s beside the step alone at
the same size: the difference is what the loop loses to data loading and the rest. Both measure
through bench_training.py, which says how.

`io` reads random 16-frame clips (3.75 fps, 256x256 canvas) from every video under DIR with one
decoder thread (clips per second per CPU core), raw and after `prepare`, and times the batched
augmentation: this file.

`gpu` (bench_gpu.py) checks and measures the paper-scale run on a GPU in one command within a time
budget: CUDA correctness, ViT-H/14 ours and transformers', HVM-1@448's largest batch, the loop end
to end and the toy preset; --dry-run runs the same sequence at tiny sizes on the CPU.

step, e2e and io print a table and append a JSON line to --out; gpu prints a table last and writes
one JSON file. BENCHMARKS.md holds the figures and their commands.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

from augment import augment
from bench_gpu import run_gpu
from bench_training import bench_e2e, bench_step
from training import (ArgumentParser, fail, nonnegative_int, open_fraction, positive_float,
                      positive_int)
from video import find_videos, prepare, read_clip, video_info

# -----------------------------------------------------------------------------
# the input pipeline


def clips_per_second(paths, seconds, seed=0) -> float:
    """Random clips from the files in turn, for about `seconds`, in this process and thread."""
    rng = np.random.default_rng(seed)
    read_clip(paths[0], start="random", rng=rng)                 # warm-up: first open, caches
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        read_clip(paths[count % len(paths)], start="random", rng=rng)
        count += 1
    return count / (time.perf_counter() - start)


def augment_ms_per_clip(threads, clips=16, repeats=3) -> float:
    torch.set_num_threads(threads)
    batch = torch.randint(0, 256, (clips, 16, 256, 256, 3), dtype=torch.uint8)
    augment(batch, train=True)
    start = time.perf_counter()
    for _ in range(repeats):
        augment(batch, train=True)
    return (time.perf_counter() - start) / repeats / clips * 1000


def bench_io(videos, seconds, workers):
    rows = []
    with tempfile.TemporaryDirectory() as prepared:
        prepare(videos, prepared, workers=workers)
        for path in find_videos(videos):
            stem = os.path.splitext(os.path.basename(path))[0]
            rel = os.path.relpath(os.path.dirname(path), videos)
            segments = [p for p in find_videos(os.path.join(prepared, rel))
                        if os.path.basename(p).startswith(stem + "_s")]
            duration, fps = video_info(path)
            rows.append({"file": os.path.relpath(path, videos), "duration_s": round(duration, 1),
                         "fps": fps, "raw_clips_per_s": clips_per_second([path], seconds),
                         "prepared_clips_per_s": clips_per_second(segments, seconds)})
    print(f"{'file':<40}{'fps':>6}{'seconds':>9}{'raw clips/s/core':>18}"
          f"{'prepared clips/s/core':>23}")
    for r in rows:
        print(f"{r['file']:<40}{r['fps']:>6.1f}{r['duration_s']:>9.1f}{r['raw_clips_per_s']:>18.1f}"
              f"{r['prepared_clips_per_s']:>23.1f}")
    torch_threads = torch.get_num_threads()
    augment_ms = {t: augment_ms_per_clip(t) for t in sorted({1, torch_threads})}
    for t, ms in augment_ms.items():
        print(f"augment on the CPU, {t} thread(s): {ms:.1f} ms per 16x224^2 clip")
    return {"bench": "io", "files": rows, "augment_cpu_ms_per_clip": augment_ms}

# -----------------------------------------------------------------------------
# the command line

RESULTS = "bench_results.jsonl"
APPEND = "JSON lines file the results are appended to"


def make_parser():
    parser = ArgumentParser(description="benchmarks",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("step", help="the MAE training step on synthetic input, and transformers' "
                       "VideoMAE beside it")
    p.add_argument("--preset", default="huge_patch14")
    p.add_argument("--img_size", type=positive_int, default=224)
    p.add_argument("--frames", type=positive_int, default=16)
    p.add_argument("--mask_ratio", type=open_fraction, default=0.9)
    p.add_argument("--batch", type=positive_int, default=16, help="clips per step")
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=nonnegative_int, default=3)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--activation_checkpointing", action="store_true",
                   help="ours recomputes activations (448^2)")
    p.add_argument("--no_compare", action="store_true",
                   help="skip transformers' VideoMAE even when installed")
    p.add_argument("--profile", type=nonnegative_int, default=0, metavar="N",
                   help="print our N costliest operators (profiler)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=RESULTS, help=APPEND)
    p = sub.add_parser("e2e", help="pretrain.py's loop on real files beside the step alone "
                       "(data stalls show)")
    p.add_argument("--steps", type=positive_int, default=40)
    p.add_argument("--out", default=RESULTS, help=APPEND)
    p.add_argument("pretrain_args", nargs=argparse.REMAINDER,
                   help="after --: pretrain.py's flags (data, size)")
    p = sub.add_parser("io", help="clip decoding, raw vs prepared, and the batched augmentation")
    p.add_argument("--videos", required=True, help="a folder of video files")
    p.add_argument("--seconds", type=positive_float, default=8.0,
                   help="time spent reading each file")
    p.add_argument("--workers", type=positive_int, default=2, help="processes for prepare")
    p.add_argument("--out", default=RESULTS, help=APPEND)
    p = sub.add_parser("gpu", help="the paper-scale run on a GPU in one command, within a time "
                       "budget (bench_gpu.py)")
    p.add_argument("--dry-run", action="store_true",
                   help="the same sequence at tiny sizes on the CPU (< 2 minutes)")
    p.add_argument("--budget_minutes", type=positive_float, default=8.5,
                   help="the whole run's time, the toy world's included")
    p.add_argument("--parts", default="1,2,3,4,5",
                   help="which parts, in order (one alone runs in this process)")
    p.add_argument("--toy", default=None,
                   help="a folder with a toy world and its child S prepared by an earlier run "
                   "(world/, S_256/); default: made in a temporary folder")
    p.add_argument("--out", default="bench_gpu.json",
                   help="JSON file the figures are written to (replaced)")
    return parser


def main():
    args = make_parser().parse_args()
    if args.part == "gpu":                         # one JSON file of its own, and an exit code
        report = run_gpu(args)
        sys.exit(0 if all(p["status"] == "ok" for p in report["parts"].values()) else 1)
    if args.part == "e2e":
        try:
            result = bench_e2e([a for a in args.pretrain_args if a != "--"], args.steps)
        except RuntimeError as e:                  # pretrain.py failed: its last line
            fail(str(e))
    elif args.part == "step":
        try:
            result = bench_step(args.preset, args.img_size, args.frames, args.mask_ratio,
                                args.batch, args.steps, args.warmup, args.precision,
                                args.compile,
                                ("ours",) if args.no_compare else ("ours", "transformers"),
                                args.device, activation_checkpointing=args.activation_checkpointing,
                                profile=args.profile)
        except ValueError as e:                    # an unknown preset, a size that does not tile
            fail(str(e))
    else:
        if not os.path.isdir(args.videos) or not find_videos(args.videos):
            fail(f"--videos {args.videos}: no video files there")
        result = bench_io(args.videos, args.seconds, args.workers)
    result["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
