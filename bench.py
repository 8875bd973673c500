"""
Benchmarks: how fast each stage runs, measured, and how far that is from the hardware's limit.

    python bench.py step [--preset huge_patch14 --img_size 224 --mask_ratio 0.9 --batch 16]   # the training step
    python bench.py e2e -- --data S --data_root /data/saycam_prepared --workers 8            # the real loop
    python bench.py io --videos DIR [--seconds 8]                                            # the input pipeline
    python bench.py gpu [--dry-run] [--budget_minutes 8.5] [--out bench_gpu.json]            # all of it, on a GPU

`step` times the MAE training step alone on synthetic input (a fresh random mask each step, drawn on the device as
pretrain.py draws it), split into forward, backward and optimizer (each phase ended by a device sync, so the split
adds syncs a real step does not have; the clips/s figure comes from a second loop without them); --profile N prints
the N operators that cost the most device time (CPU time on a CPU). On a GPU, a batch that does not fit is reported
as out of memory and the run goes on. MFU = the analytic training FLOPs per clip (model.training_flops, what `python
model.py` prints) x clips/s / the matmul rate measured in the same run on the same device (bf16 on a GPU, fp32 on a
CPU). When Hugging Face `transformers` is installed (a benchmark-only extra: `pip install transformers`), its
VideoMAEForPreTraining, configured to the same width, depth, heads, patch, tubelet, frames, mask ratio and decoder
with SDPA attention, runs the same loop: the ratio ours / theirs is reported only when the parameter counts agree to
1%. `e2e` runs pretrain.py's own loop on real files and puts its clips/s beside the step alone at the same size: the
difference is what the loop loses to data loading and the rest. `io` reads random 16-frame clips (3.75 fps, 256x256
canvas) from every video under DIR with one decoder thread (clips per second per CPU core), raw and after `prepare`,
and times the batched augmentation. `gpu` (bench_gpu.py) checks and measures the paper-scale run on a GPU in one
command within a time budget: CUDA correctness, ViT-H/14 ours and transformers', HVM-1@448's largest batch, the loop
end to end and the toy preset; --dry-run runs the same sequence at tiny sizes on the CPU.
step, e2e and io print a table and append a JSON line to --out; gpu prints a table last and writes one JSON file.
BENCHMARKS.md holds the figures and their commands.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from augment import augment
from mask import make_mask
from model import MaskedAutoencoder, make_config, param_groups, training_flops
from training import (ArgumentParser, Processes, autocast_for, fail, nonnegative_int, open_fraction, positive_float,
                      positive_int, resolve_precision)
from video import find_videos, prepare, read_clip, video_info

# -----------------------------------------------------------------------------
# the training step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, dtype, size=None, seconds=1.0) -> float:
    """FLOP/s of one large square matmul in this dtype: the practical peak MFU is measured against."""
    size = size or (8192 if device.type == "cuda" else 1024)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if count % 8 == 0:
            sync(device)
    sync(device)
    return 2 * size ** 3 * count / (time.perf_counter() - start)


def ours(cfg, device, activation_checkpointing=False):
    """Our MAE, AdamW (fused on GPUs) over the paper's parameter groups as pretrain.py builds it, and a function
    (video, mask) -> loss."""
    model = MaskedAutoencoder(cfg).to(device)
    model.activation_checkpointing = activation_checkpointing
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    forward = lambda video, mask: model(video, ids_keep=mask.ids_keep, ids_restore=mask.ids_restore)[0]
    return model, optimizer, forward


def theirs(cfg, device):
    """Hugging Face's VideoMAEForPreTraining at the same size, with its SDPA attention; None when not installed."""
    try:
        from transformers import VideoMAEConfig, VideoMAEForPreTraining
    except ImportError:
        return None
    hf = VideoMAEConfig(image_size=cfg.img_size, patch_size=cfg.patch, num_frames=cfg.frames, tubelet_size=cfg.t_patch,
                        hidden_size=cfg.width, num_hidden_layers=cfg.depth, num_attention_heads=cfg.heads,
                        intermediate_size=int(cfg.width * cfg.mlp_ratio), qkv_bias=True, use_mean_pooling=False,
                        decoder_hidden_size=cfg.decoder_width, decoder_num_hidden_layers=cfg.decoder_depth,
                        decoder_num_attention_heads=cfg.decoder_heads, layer_norm_eps=1e-6,
                        decoder_intermediate_size=int(cfg.decoder_width * cfg.mlp_ratio), norm_pix_loss=False,
                        attn_implementation="sdpa")
    model = VideoMAEForPreTraining(hf).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    # they take the clip as (B, T, C, H, W) and the mask as a boolean (B, L), True = hidden
    forward = lambda video, mask: model(video.transpose(1, 2), bool_masked_pos=mask.mask.bool()).loss
    return model, optimizer, forward, hf


def train_step(model, optimizer, forward, video, precision, grid, mask_ratio, split=False):
    """One training step as pretrain.py takes it: a fresh random mask drawn on the device, forward under autocast,
    backward, clipping, AdamW. With split, the device is synced after each phase and the three phases' seconds are
    returned (the syncs cost a little; the unsplit step has none)."""
    device = video.device
    marks = [time.perf_counter()]

    def mark():
        if split:
            sync(device)
            marks.append(time.perf_counter())
    mask = make_mask("random", video.shape[0], grid, mask_ratio, device)
    with autocast_for(device, precision):
        loss = forward(video, mask)
    mark()
    loss.backward()
    mark()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mark()
    return np.diff(marks)                                                 # (3,) seconds, or empty unsplit


def time_steps(step, device, steps, warmup):
    """Median seconds of forward, backward and optimizer (each phase synced), then of whole unsynced steps."""
    phases = {"forward": [], "backward": [], "optimizer": []}
    for i in range(warmup + steps):
        split = step(split=True)
        if i >= warmup:
            for name, seconds in zip(phases, split):
                phases[name].append(seconds)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    result = {name: float(np.median(v)) for name, v in phases.items()}
    result["step"] = (time.perf_counter() - start) / steps
    return result


def profile_steps(step, device, rows, steps=3):
    """The `rows` operators that take the most device time (CPU time on a CPU) over a few steps: where time goes."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def peak_memory_gb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource                                                       # the CPU: the process's peak resident set
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def compare_models(ours_row, theirs_row):
    """(parameter difference, ours / theirs in clips/s): the ratio only for models within 1% in size, else None."""
    gap = abs(theirs_row["params"] / ours_row["params"] - 1)
    return gap, ours_row["clips_per_s"] / theirs_row["clips_per_s"] if gap <= 0.01 else None


def bench_step(preset="huge_patch14", img_size=224, frames=16, mask_ratio=0.9, batch=16, steps=10, warmup=3,
               precision="auto", compile=False, models=("ours", "transformers"), device="auto", t_patch=None,
               activation_checkpointing=False, profile=0, compile_backend="inductor"):
    """models: which to run, ours and/or transformers' (that one only when installed). compile_backend: inductor
    (what --compile means) or aot_eager (traces forward and backward without generating code: bench.py gpu
    --dry-run, where inductor's C++ compiler would take most of its two minutes)."""
    device = Processes(device).device
    bf16 = resolve_precision(device, precision) == "bf16"
    cfg = make_config(preset, img_size=img_size, frames=frames, t_patch=t_patch)
    peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32)
    flops = training_flops(cfg, mask_ratio)
    video = torch.randn(batch, 3, cfg.frames, cfg.img_size, cfg.img_size, device=device)   # (B, 3, T, H, W)
    rows = {}
    mine = lambda cfg, device: ours(cfg, device, activation_checkpointing)
    for name, build in (("ours", mine), ("transformers", theirs)):
        built = build(cfg, device) if name in models else None
        if built is None:
            continue
        model, optimizer, forward = built[:3]
        if compile:
            forward = torch.compile(forward, backend=compile_backend)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step = lambda split=False: train_step(model, optimizer, forward, video, precision, cfg.grid, mask_ratio, split)
        params = sum(p.numel() for p in model.parameters())
        try:
            times = time_steps(step, device, steps, warmup)
        except torch.OutOfMemoryError:                                    # a GPU's "does not fit": say so, go on
            times = None
        if times is None:
            rows[name] = dict(params=params, out_of_memory=True)
        else:
            if profile and name == "ours":
                profile_steps(step, device, profile)
            clips_per_s = batch / times["step"]
            rows[name] = dict(params=params, **{f"{k}_s": v for k, v in times.items()}, clips_per_s=clips_per_s,
                              tokens_per_s=clips_per_s * cfg.num_tokens, mfu=flops * clips_per_s / peak,
                              peak_memory_gb=peak_memory_gb(device))
        if name == "transformers":
            rows[name]["config"] = {k: v for k, v in built[3].to_dict().items() if not isinstance(v, dict)}
        del built, model, optimizer, forward, step                        # free this model before the next is built
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = {"bench": "step", "device": device_name(device), "preset": preset, "clip": [cfg.frames, cfg.img_size],
              "tokens": cfg.num_tokens, "mask_ratio": mask_ratio, "batch": batch, "precision": "bf16" if bf16 else
              "fp32", "compile": compile, "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
              "activation_checkpointing": activation_checkpointing, "train_gflop_per_clip": flops / 1e9,
              "matmul_peak_tflops": peak / 1e12, **rows}
    if len(rows) == 2 and not any(r.get("out_of_memory") for r in rows.values()):
        gap, ratio = compare_models(rows["ours"], rows["transformers"])
        result.update(param_difference=gap, speedup_vs_transformers=ratio)
    print_step(result)
    return result


def print_step(r):
    print(f"{r['preset']} {r['clip'][0]}x{r['clip'][1]}^2, {r['tokens']} tokens, mask {r['mask_ratio']}, batch "
          f"{r['batch']}, {r['precision']} on {r['device']}; {r['train_gflop_per_clip']:.1f} GFLOP per clip; "
          f"matmul peak {r['matmul_peak_tflops']:.2f} TFLOP/s")
    print(f"{'model':<14}{'params':>14}{'fwd ms':>9}{'bwd ms':>9}{'opt ms':>9}{'step ms':>9}{'clips/s':>10}"
          f"{'tokens/s':>12}{'MFU':>7}{'peak GB':>9}")
    for name in ("ours", "transformers"):
        if name in r and r[name].get("out_of_memory"):
            print(f"{name:<14}{r[name]['params']:>14,}  out of memory: this batch does not fit")
        elif name in r:
            m = r[name]
            print(f"{name:<14}{m['params']:>14,}{1e3 * m['forward_s']:>9.1f}{1e3 * m['backward_s']:>9.1f}"
                  f"{1e3 * m['optimizer_s']:>9.1f}{1e3 * m['step_s']:>9.1f}{m['clips_per_s']:>10.2f}"
                  f"{m['tokens_per_s']:>12,.0f}{m['mfu']:>7.1%}{m['peak_memory_gb']:>9.2f}")
    if "speedup_vs_transformers" in r:
        ratio = r["speedup_vs_transformers"]
        print(f"parameters differ by {r['param_difference']:.2%}; ours / transformers: "
              + (f"{ratio:.2f}x" if ratio else "not reported (the models differ by more than 1%)"))
    elif "transformers" not in r:
        print("(no side-by-side run: --no_compare, or transformers is not installed)")


def largest_batch(cfg, mask_ratio, device, batches, deadline, activation_checkpointing=False):
    """A doubling search with our MAE: two steps at each batch in turn (the first also allocates AdamW's state),
    until one does not fit or the next would not end by the deadline. Returns a record per batch tried, and why
    the search stopped."""
    model, optimizer, forward = ours(cfg, device, activation_checkpointing)
    probes, stop, seconds_per_clip = [], f"the largest batch tried ({batches[-1]})", 0.0
    for batch in batches:
        if time.monotonic() + 3 * batch * seconds_per_clip > deadline:   # two steps and the input, with room
            stop = f"no time left for batch {batch}"
            break
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        video, fits = None, True
        try:
            video = torch.randn(batch, 3, cfg.frames, cfg.img_size, cfg.img_size, device=device)  # (B, 3, T, H, W)
            train_step(model, optimizer, forward, video, "auto", cfg.grid, mask_ratio)
            sync(device)
            start = time.perf_counter()
            train_step(model, optimizer, forward, video, "auto", cfg.grid, mask_ratio)
            sync(device)
            seconds = time.perf_counter() - start
        except torch.OutOfMemoryError:
            fits = False
        video = None                                                      # out of the except: no traceback holds
        optimizer.zero_grad(set_to_none=True)                             # the failed step's tensors any more
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if not fits:
            probes.append({"batch": batch, "fits": False})
            stop = f"out of memory at batch {batch}"
            break
        seconds_per_clip = seconds / batch
        probes.append({"batch": batch, "fits": True, "step_s": seconds, "clips_per_s": batch / seconds,
                       "peak_memory_gb": peak_memory_gb(device)})
    del model, optimizer, forward
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return probes, stop

# -----------------------------------------------------------------------------
# end to end: the real training loop, data included


def bench_e2e(pretrain_args, steps=40, log_every=5):
    """pretrain.py in a subprocess (a script never imports another) for `steps` steps on real files; the clips/s
    its log records (the first interval, start-up included, left out) beside the step alone at the same size on
    synthetic input. What the loop loses to the step is time spent waiting for data, or anything else outside it."""
    with tempfile.TemporaryDirectory() as out:
        never = str(10 * steps)
        command = [sys.executable, "pretrain.py", *pretrain_args, "--steps", str(steps), "--log_every", str(log_every),
                   "--save_every", never, "--figure_every", never, "--out", out]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["?"])[-1].removeprefix("error: ")
            raise RuntimeError(f"pretrain.py {' '.join(pretrain_args)} failed: {last}")
        with open(os.path.join(out, "log.jsonl")) as f:
            records = [json.loads(line) for line in f]
        config = torch.load(os.path.join(out, "checkpoint.pt"), map_location="cpu", weights_only=False)
    cfg, args = config["config"], config["args"]
    loop = float(np.median([r["clips_per_s"] for r in records[1:]]))
    batch = args["batch_videos"] * args["repeats"] * args["accum"]
    alone = bench_step(cfg["preset"], cfg["img_size"], cfg["frames"], cfg["mask_ratio"], batch, steps=5, warmup=2,
                       precision=args["precision"], models=("ours",), device=args["device"], t_patch=cfg["t_patch"])
    step = alone["ours"]["clips_per_s"]
    result = {"bench": "e2e", "device": alone["device"], "pretrain_args": pretrain_args, "steps": steps, "batch": batch,
              "workers": args["workers"],
              "loop_clips_per_s": loop, "step_clips_per_s": step, "loop_over_step": loop / step}
    print(f"end to end: {loop:.1f} clips/s in pretrain.py's loop ({args['workers']} workers) vs {step:.1f} for the "
          f"step alone: the loop runs at {loop / step:.0%} of the step's speed")
    return result

# -----------------------------------------------------------------------------
# the input pipeline


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


# -----------------------------------------------------------------------------
# the command line


if __name__ == "__main__":
    parser = ArgumentParser(description="benchmarks", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("step", help="the MAE training step on synthetic input, and transformers' VideoMAE beside it")
    p.add_argument("--preset", default="huge_patch14")
    p.add_argument("--img_size", type=positive_int, default=224)
    p.add_argument("--frames", type=positive_int, default=16)
    p.add_argument("--mask_ratio", type=open_fraction, default=0.9)
    p.add_argument("--batch", type=positive_int, default=16, help="clips per step")
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=nonnegative_int, default=3)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--activation_checkpointing", action="store_true", help="ours recomputes activations (448^2)")
    p.add_argument("--no_compare", action="store_true", help="skip transformers' VideoMAE even when installed")
    p.add_argument("--profile", type=nonnegative_int, default=0, metavar="N",
                   help="print our N costliest operators (profiler)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench_results.jsonl", help="JSON lines file the results are appended to")
    p = sub.add_parser("e2e", help="pretrain.py's loop on real files beside the step alone (data stalls show)")
    p.add_argument("--steps", type=positive_int, default=40)
    p.add_argument("--out", default="bench_results.jsonl", help="JSON lines file the results are appended to")
    p.add_argument("pretrain_args", nargs=argparse.REMAINDER, help="after --: pretrain.py's flags (data, size)")
    p = sub.add_parser("io", help="clip decoding, raw vs prepared, and the batched augmentation")
    p.add_argument("--videos", required=True, help="a folder of video files")
    p.add_argument("--seconds", type=positive_float, default=8.0, help="time spent reading each file")
    p.add_argument("--workers", type=positive_int, default=2, help="processes for prepare")
    p.add_argument("--out", default="bench_results.jsonl", help="JSON lines file the results are appended to")
    p = sub.add_parser("gpu", help="the paper-scale run on a GPU in one command, within a time budget (bench_gpu.py)")
    p.add_argument("--dry-run", action="store_true", help="the same sequence at tiny sizes on the CPU (< 2 minutes)")
    p.add_argument("--budget_minutes", type=positive_float, default=8.5,
                   help="the whole run's time, the toy world's included")
    p.add_argument("--parts", default="1,2,3,4,5", help="which parts, in order (one alone runs in this process)")
    p.add_argument("--toy", default=None, help="a folder with a toy world and its child S prepared by an earlier "
                   "run (world/, S_256/); default: made in a temporary folder")
    p.add_argument("--out", default="bench_gpu.json", help="JSON file the figures are written to (replaced)")
    args = parser.parse_args()
    if args.part == "gpu":                                                # its own file, and one JSON file of its own
        from bench_gpu import run_gpu
        report = run_gpu(args)
        sys.exit(0 if all(p["status"] == "ok" for p in report["parts"].values()) else 1)
    if args.part == "e2e":
        try:
            result = bench_e2e([a for a in args.pretrain_args if a != "--"], args.steps)
        except RuntimeError as e:                                         # pretrain.py failed: its last line
            fail(str(e))
    elif args.part == "step":
        try:
            result = bench_step(args.preset, args.img_size, args.frames, args.mask_ratio, args.batch, args.steps,
                                args.warmup, args.precision, args.compile,
                                ("ours",) if args.no_compare else ("ours", "transformers"), args.device,
                                activation_checkpointing=args.activation_checkpointing, profile=args.profile)
        except ValueError as e:                                           # an unknown preset, a size that does not tile
            fail(str(e))
    else:
        if not os.path.isdir(args.videos) or not find_videos(args.videos):
            fail(f"--videos {args.videos}: no video files there")
        result = bench_io(args.videos, args.seconds, args.workers)
    result["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
