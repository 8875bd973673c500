"""
Benchmarks. So far, the input pipeline:

    python bench.py io --videos DIR [--seconds 8]

reads random 16-frame clips (3.75 fps, 256x256 canvas) from every video under DIR with one decoder thread in one
process (clips per second per CPU core), then `prepare`s the folder into a temporary one and reads the same way from
the prepared files; then times the batched augmentation on the CPU. Results go to stdout as a table and, as a JSON
line, to --out. (The training step, end-to-end and GPU benchmarks are still to come.)
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from data import augment
from video import find_videos, prepare, read_clip, video_info


def clips_per_second(paths, seconds, seed=0) -> float:
    """Random clips from the files in turn, for about `seconds`, in this process and thread."""
    rng = np.random.default_rng(seed)
    read_clip(paths[0], start="random", rng=rng)                         # warm-up: first open, caches
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
            rows.append({"file": os.path.relpath(path, videos), "duration_s": round(duration, 1), "fps": fps,
                         "raw_clips_per_s": clips_per_second([path], seconds),
                         "prepared_clips_per_s": clips_per_second(segments, seconds)})
    print(f"{'file':<40}{'fps':>6}{'seconds':>9}{'raw clips/s/core':>18}{'prepared clips/s/core':>23}")
    for r in rows:
        print(f"{r['file']:<40}{r['fps']:>6.1f}{r['duration_s']:>9.1f}{r['raw_clips_per_s']:>18.1f}"
              f"{r['prepared_clips_per_s']:>23.1f}")
    torch_threads = torch.get_num_threads()
    augment_ms = {t: augment_ms_per_clip(t) for t in sorted({1, torch_threads})}
    for t, ms in augment_ms.items():
        print(f"augment on the CPU, {t} thread(s): {ms:.1f} ms per 16x224^2 clip")
    return {"bench": "io", "files": rows, "augment_cpu_ms_per_clip": augment_ms}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="benchmarks", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("io", help="clip decoding, raw vs prepared, and the batched augmentation")
    p.add_argument("--videos", required=True, help="a folder of video files")
    p.add_argument("--seconds", type=float, default=8.0, help="time spent reading each file")
    p.add_argument("--workers", type=int, default=2, help="processes for prepare")
    p.add_argument("--out", default="bench_results.jsonl", help="JSON lines file the results are appended to")
    args = parser.parse_args()
    if not os.path.isdir(args.videos) or not find_videos(args.videos):
        raise SystemExit(f"error: no video files under {args.videos}")
    result = bench_io(args.videos, args.seconds, args.workers)
    result["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
