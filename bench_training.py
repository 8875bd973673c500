"""
Measuring training: the MAE step alone, transformers' VideoMAE beside it, the largest batch that
fits, and pretrain.py's own loop end to end. `python bench.py step|e2e` (the command line) and
`python bench.py gpu` (bench_gpu.py, the paper-scale run) both measure through these functions.

The step (bench_step) runs on synthetic input, with a fresh random mask each step drawn on the
device as pretrain.py draws it, and is split into forward, backward and optimizer. Each phase is
ended by a device sync, so the split adds syncs that a real step does not have; the clips/s figure
comes from a second loop without them. On a GPU, a batch that does not fit is reported as out of
memory and the run goes on.

MFU = the analytic training FLOPs per clip (model.training_flops, what `python model.py` prints)
x clips/s / the matmul rate measured in the same run on the same device (bf16 on a GPU, fp32 on a
CPU).

When Hugging Face `transformers` is installed (a benchmark-only extra: `pip install
transformers`), its VideoMAEForPreTraining runs the same loop, configured to the same width,
depth, heads, patch, tubelet, frames, mask ratio and decoder, with SDPA attention. The ratio
ours / theirs is reported only when the two models' parameter counts agree to 1%.

The loop (bench_e2e) runs pretrain.py on real files and puts its clips/s beside the step alone at
the same size: the difference is what the loop loses to data loading and the rest.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial

import numpy as np
import torch

from mask import make_mask
from model import MaskedAutoencoder, make_config, param_groups, training_flops
from training import Processes, autocast_for, resolve_precision

# -----------------------------------------------------------------------------
# the device


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_memory_gb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource                               # on the CPU: the process's peak resident set
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def matmul_peak(device, dtype, size=None, seconds=1.0) -> float:
    """FLOP/s of one large square matmul in this dtype: the practical peak that MFU is measured
    against."""
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

# -----------------------------------------------------------------------------
# the two models, ours and transformers'


def ours(cfg, device, activation_checkpointing=False):
    """Our MAE, AdamW (fused on GPUs) over the paper's parameter groups as pretrain.py builds
    it, and a function (video, mask) -> loss."""
    model = MaskedAutoencoder(cfg).to(device)
    model.activation_checkpointing = activation_checkpointing
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")

    def forward(video, mask):
        return model(video, ids_keep=mask.ids_keep, ids_restore=mask.ids_restore)[0]
    return model, optimizer, forward


def theirs(cfg, device):
    """Hugging Face's VideoMAEForPreTraining at the same size, with its SDPA attention; None when
    transformers is not installed."""
    try:
        from transformers import VideoMAEConfig, VideoMAEForPreTraining
    except ImportError:
        return None
    hf = VideoMAEConfig(
        image_size=cfg.img_size, patch_size=cfg.patch, num_frames=cfg.frames,
        tubelet_size=cfg.t_patch, hidden_size=cfg.width, num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.heads, intermediate_size=int(cfg.width * cfg.mlp_ratio),
        qkv_bias=True, use_mean_pooling=False, decoder_hidden_size=cfg.decoder_width,
        decoder_num_hidden_layers=cfg.decoder_depth, decoder_num_attention_heads=cfg.decoder_heads,
        layer_norm_eps=1e-6, decoder_intermediate_size=int(cfg.decoder_width * cfg.mlp_ratio),
        norm_pix_loss=False, attn_implementation="sdpa")
    model = VideoMAEForPreTraining(hf).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")

    def forward(video, mask):
        # they take the clip as (B, T, C, H, W) and the mask as a boolean (B, L), True = hidden
        return model(video.transpose(1, 2), bool_masked_pos=mask.mask.bool()).loss
    return model, optimizer, forward, hf


def compare_models(ours_row, theirs_row):
    """(parameter difference, ours / theirs in clips/s): the ratio only for models within 1% in
    size, else None."""
    gap = abs(theirs_row["params"] / ours_row["params"] - 1)
    return gap, ours_row["clips_per_s"] / theirs_row["clips_per_s"] if gap <= 0.01 else None

# -----------------------------------------------------------------------------
# the training step


def train_step(model, optimizer, forward, video, precision, grid, mask_ratio, split=False):
    """One training step as pretrain.py takes it: a fresh random mask drawn on the device, forward
    under autocast, backward, clipping, AdamW. With split, the device is synced after each phase
    and the three phases' seconds are returned (the syncs cost a little; the unsplit step has
    none)."""
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
    return np.diff(marks)                                  # (3,) seconds, or empty unsplit


def time_steps(step, device, steps, warmup):
    """Median seconds of forward, backward and optimizer (each phase synced), then of whole
    unsynced steps."""
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
    """The `rows` operators that take the most device time (CPU time on a CPU) over a few steps:
    where the time goes."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))


def measure_model(built, cfg, video, precision, mask_ratio, flops, peak, steps, warmup, compile,
                  compile_backend, profile):
    """One model's row of bench_step: its size, and its timings and MFU, or that it ran out of
    memory. profile: print its N costliest operators (0: none)."""
    model, optimizer, forward = built[:3]
    device = video.device
    if compile:
        forward = torch.compile(forward, backend=compile_backend)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = partial(train_step, model, optimizer, forward, video, precision, cfg.grid, mask_ratio)
    params = sum(p.numel() for p in model.parameters())
    try:
        times = time_steps(step, device, steps, warmup)
    except torch.OutOfMemoryError:                         # a GPU's "does not fit": say so, go on
        return dict(params=params, out_of_memory=True)
    if profile:
        profile_steps(step, device, profile)
    clips_per_s = video.shape[0] / times["step"]
    return dict(params=params, **{f"{k}_s": v for k, v in times.items()}, clips_per_s=clips_per_s,
                tokens_per_s=clips_per_s * cfg.num_tokens, mfu=flops * clips_per_s / peak,
                peak_memory_gb=peak_memory_gb(device))


def bench_step(preset="huge_patch14", img_size=224, frames=16, mask_ratio=0.9, batch=16, steps=10,
               warmup=3, precision="auto", compile=False, models=("ours", "transformers"),
               device="auto", t_patch=None, activation_checkpointing=False, profile=0,
               compile_backend="inductor"):
    """models: which to run, ours and/or transformers' (that one only when installed).
    compile_backend: inductor (what --compile means) or aot_eager, which traces forward and
    backward without generating code (bench.py gpu --dry-run, where inductor's C++ compiler would
    take most of its two minutes)."""
    device = Processes(device).device
    bf16 = resolve_precision(device, precision) == "bf16"
    cfg = make_config(preset, img_size=img_size, frames=frames, t_patch=t_patch)
    peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32)
    flops = training_flops(cfg, mask_ratio)
    video = torch.randn(batch, 3, cfg.frames, cfg.img_size, cfg.img_size,
                        device=device)                          # (B, 3, T, H, W)
    rows = {}
    builders = {"ours": partial(ours, activation_checkpointing=activation_checkpointing),
                "transformers": theirs}
    for name, build in builders.items():
        built = build(cfg, device) if name in models else None
        if built is None:
            continue
        rows[name] = measure_model(built, cfg, video, precision, mask_ratio, flops, peak, steps,
                                   warmup, compile, compile_backend,
                                   profile=profile if name == "ours" else 0)
        if name == "transformers":
            rows[name]["config"] = {k: v for k, v in built[3].to_dict().items()
                                    if not isinstance(v, dict)}
        del built                                         # free this model before the next is built
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = {"bench": "step", "device": device_name(device), "preset": preset,
              "clip": [cfg.frames, cfg.img_size], "tokens": cfg.num_tokens,
              "mask_ratio": mask_ratio, "batch": batch, "precision": "bf16" if bf16 else "fp32",
              "compile": compile,
              "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
              "activation_checkpointing": activation_checkpointing,
              "train_gflop_per_clip": flops / 1e9, "matmul_peak_tflops": peak / 1e12, **rows}
    if len(rows) == 2 and not any(r.get("out_of_memory") for r in rows.values()):
        gap, ratio = compare_models(rows["ours"], rows["transformers"])
        result.update(param_difference=gap, speedup_vs_transformers=ratio)
    print_step(result)
    return result


def print_step(r):
    print(f"{r['preset']} {r['clip'][0]}x{r['clip'][1]}^2, {r['tokens']} tokens, "
          f"mask {r['mask_ratio']}, batch {r['batch']}, {r['precision']} on {r['device']}; "
          f"{r['train_gflop_per_clip']:.1f} GFLOP per clip; "
          f"matmul peak {r['matmul_peak_tflops']:.2f} TFLOP/s")
    print(f"{'model':<14}{'params':>14}{'fwd ms':>9}{'bwd ms':>9}{'opt ms':>9}{'step ms':>9}"
          f"{'clips/s':>10}{'tokens/s':>12}{'MFU':>7}{'peak GB':>9}")
    for name in ("ours", "transformers"):
        if name in r and r[name].get("out_of_memory"):
            print(f"{name:<14}{r[name]['params']:>14,}  out of memory: this batch does not fit")
        elif name in r:
            m = r[name]
            print(f"{name:<14}{m['params']:>14,}{1e3 * m['forward_s']:>9.1f}"
                  f"{1e3 * m['backward_s']:>9.1f}{1e3 * m['optimizer_s']:>9.1f}"
                  f"{1e3 * m['step_s']:>9.1f}{m['clips_per_s']:>10.2f}{m['tokens_per_s']:>12,.0f}"
                  f"{m['mfu']:>7.1%}{m['peak_memory_gb']:>9.2f}")
    if "speedup_vs_transformers" in r:
        ratio = r["speedup_vs_transformers"]
        print(f"parameters differ by {r['param_difference']:.2%}; ours / transformers: "
              + (f"{ratio:.2f}x" if ratio else "not reported (the models differ by more than 1%)"))
    elif "transformers" not in r:
        print("(no side-by-side run: --no_compare, or transformers is not installed)")

# -----------------------------------------------------------------------------
# the largest batch that fits


def largest_batch(cfg, mask_ratio, device, batches, deadline, activation_checkpointing=False):
    """A doubling search with our MAE: two steps at each batch in turn (the first also allocates
    AdamW's state), until one does not fit or the next would not end by the deadline. Returns a
    record per batch tried, and why the search stopped."""
    model, optimizer, forward = ours(cfg, device, activation_checkpointing)
    probes, stop, seconds_per_clip = [], f"the largest batch tried ({batches[-1]})", 0.0
    for batch in batches:
        if time.monotonic() + 3 * batch * seconds_per_clip > deadline:  # two steps, the input, room
            stop = f"no time left for batch {batch}"
            break
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        video, fits = None, True
        try:
            video = torch.randn(batch, 3, cfg.frames, cfg.img_size, cfg.img_size,
                                device=device)                   # (B, 3, T, H, W)
            train_step(model, optimizer, forward, video, "auto", cfg.grid, mask_ratio)
            sync(device)
            start = time.perf_counter()
            train_step(model, optimizer, forward, video, "auto", cfg.grid, mask_ratio)
            sync(device)
            seconds = time.perf_counter() - start
        except torch.OutOfMemoryError:
            fits = False
        video = None                                # out of the except, where no traceback
        optimizer.zero_grad(set_to_none=True)       # holds the failed step's tensors any more
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if not fits:
            probes.append({"batch": batch, "fits": False})
            stop = f"out of memory at batch {batch}"
            break
        seconds_per_clip = seconds / batch
        probes.append({"batch": batch, "fits": True, "step_s": seconds,
                       "clips_per_s": batch / seconds, "peak_memory_gb": peak_memory_gb(device)})
    del model, optimizer, forward
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return probes, stop

# -----------------------------------------------------------------------------
# end to end: the real training loop, data included


def bench_e2e(pretrain_args, steps=40, log_every=5):
    """pretrain.py in a subprocess (a script never imports another) for `steps` steps on real
    files: the clips/s its log records (the first interval, start-up included, left out) beside
    the step alone at the same size on synthetic input. What the loop loses to the step is time
    spent waiting for data, or anything else outside the step."""
    with tempfile.TemporaryDirectory() as out:
        never = str(10 * steps)
        command = [sys.executable, "pretrain.py", *pretrain_args, "--steps", str(steps),
                   "--log_every", str(log_every), "--save_every", never, "--figure_every", never,
                   "--out", out]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["?"])[-1].removeprefix("error: ")
            raise RuntimeError(f"pretrain.py {' '.join(pretrain_args)} failed: {last}")
        with open(os.path.join(out, "log.jsonl")) as f:
            records = [json.loads(line) for line in f]
        config = torch.load(os.path.join(out, "checkpoint.pt"), map_location="cpu",
                            weights_only=False)
    cfg, args = config["config"], config["args"]
    loop = float(np.median([r["clips_per_s"] for r in records[1:]]))
    batch = args["batch_videos"] * args["repeats"] * args["accum"]
    alone = bench_step(cfg["preset"], cfg["img_size"], cfg["frames"], cfg["mask_ratio"], batch,
                       steps=5, warmup=2, precision=args["precision"], models=("ours",),
                       device=args["device"], t_patch=cfg["t_patch"])
    step = alone["ours"]["clips_per_s"]
    result = {"bench": "e2e", "device": alone["device"], "pretrain_args": pretrain_args,
              "steps": steps, "batch": batch, "workers": args["workers"],
              "loop_clips_per_s": loop, "step_clips_per_s": step, "loop_over_step": loop / step}
    print(f"end to end: {loop:.1f} clips/s in pretrain.py's loop ({args['workers']} workers) vs "
          f"{step:.1f} for the step alone: the loop runs at {loop / step:.0%} of the step's speed")
    return result
