"""
The paper-scale run on a GPU as one command within a time budget (BENCHMARKS.md says how to run it).

    python bench.py gpu                                 # on a GPU: within 8.5 minutes
    python bench.py gpu --dry-run                       # the same sequence, tiny sizes, on a CPU
    python bench.py gpu --parts 2,3 --budget_minutes 5  # some parts again

1. CUDA correctness: pretrain.py under torchrun (bf16 autocast, fused AdamW) at 224^2 on a prepared
   toy child for 20 steps, then resumed to step 30; finetune.py for one short epoch from its
   checkpoint. Checks: the logged loss stays finite, one fixed batch's loss falls from the initial
   weights to the trained ones, the checkpoint is written and the resumed run continues from it,
   finetune.py writes results.json, bf16 is within 1e-2 (relative) of fp32.
2. ViT-H/14, 16x224^2, mask 0.9: our step and transformers' VideoMAE built to the same size, eager
   then compiled, at the largest batch of a doubling search that leaves a quarter of the memory
   free (room for VideoMAE); clips/s, MFU against the bf16 matmul rate measured in the same run,
   peak memory.
3. HVM-1@448, mask 0.95: the largest batch that fits (doubling, two steps each), without and with
   activation checkpointing.
4. End to end: pretrain.py's loop (the paper's ViT-H/14, 1 video x 16 views) on toy videos prepared
   at 256 pixels, 12 loader workers, beside the step alone: is decoding hidden?
5. The toy preset at a GPU-sized batch: what the paper in miniature's pretraining would cost on a
   GPU.

The budget (--budget_minutes): a toy world is written and its child S prepared once, then each
part runs in a process of its own (`bench.py gpu --parts N`), so that an out-of-memory, a CUDA
error or a crash cannot poison the next. Each step has its share of the budget (SHARES) and what
the steps before it left unused; a part skips what it has no time left for, and one that overruns
is stopped. --out (one JSON file) is rewritten after every measurement: a run stopped midway keeps
what was measured (bench_gpu_report.py writes it, and the table printed last). The dry run runs
the same code at the SIZES of a CPU, and compiles with aot_eager (dynamo and AOTAutograd trace
forward and backward; no code is generated): inductor's C++ compiler alone would take a minute of
its two.
"""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import suppress

import numpy as np
import torch

from augment import augment
from bench_gpu_report import one_line, print_summary, write_json
from bench_training import bench_e2e, bench_step, compare_models, device_name, largest_batch
from checkpoints import load_model
from data import ClipDataset, make_items
from mask import make_mask
from model import MaskedAutoencoder, make_config
from toy.world import generate
from training import Processes, autocast_for, fail, generator
from video import find_videos, prepare

REPO = os.path.dirname(os.path.abspath(__file__))
PART_NAMES = {1: "CUDA correctness", 2: "ViT-H/14 training step",
              3: "HVM-1@448, the largest batch", 4: "end to end", 5: "toy preset at GPU scale"}
# each step's share of the budget: part 2 compiles two ViT-H/14s, the slowest thing here
SHARES = {"setup": 0.04, 1: 0.16, 2: 0.48, 3: 0.13, 4: 0.13, 5: 0.06}
GRACE_S = 10             # a part's process stops measuring this long before it would be stopped

# What each part runs on a GPU, and at tiny sizes on a CPU (--dry-run), through the same code.
SIZES = {
    "gpu": dict(
        world_scale=0.05, short_side=256, setup_workers=16, loader_workers=12,
        # part 1: a small ViT at the paper's clip size, 4 videos x 8 views = 32 clips per step
        check=dict(preset="small_patch16", img_size=224, batch_videos=4, repeats=8, lr=5e-4,
                   warmup=5, steps=(20, 30)),
        step=dict(preset="huge_patch14", img_size=224, batches=(32, 64, 128, 256, 512), steps=6,
                  warmup=2, compile_backend="inductor",
                  compile_s=60),                  # below this many seconds left, no compiling
        hvm1=dict(preset="huge_patch14", img_size=448,
                  batches=(8, 16, 32, 64, 128, 256, 512, 1024)),
        e2e=dict(flags=[], steps=80, log_every=8),    # pretrain.py's defaults: the paper's run
        toy=dict(batch=1024, steps=10, warmup=3)),
    "dry_run": dict(
        world_scale=0.01, short_side=64, setup_workers=2, loader_workers=2,
        check=dict(preset="toy", img_size=64, batch_videos=2, repeats=2, lr=1e-3, warmup=2,
                   steps=(8, 12)),
        step=dict(preset="toy", img_size=64, batches=(2, 4), steps=2, warmup=1,
                  compile_backend="aot_eager", compile_s=10),
        hvm1=dict(preset="toy", img_size=128, batches=(1, 2, 4)),
        e2e=dict(flags=["--setting", "toy", "--batch_videos", "2", "--repeats", "2"], steps=8,
                 log_every=2),
        toy=dict(batch=8, steps=2, warmup=1)),
}

# -----------------------------------------------------------------------------
# time and processes


def deadlines(start, budget_s, steps):
    """{step: when it must end}: the budget cut by the steps' shares in order, so time that one
    step leaves unused passes to the next, and a step that overruns takes nothing from the later
    ones."""
    total = sum(SHARES[s] for s in steps)
    ends, used = {}, 0.0
    for s in steps:
        used += SHARES[s]
        ends[s] = start + budget_s * used / total
    return ends


def run_command(command, timeout_s, own_group=False):
    """Run a command, its output going to ours: its exit code, or None when it ran past timeout_s
    and was stopped, SIGTERM first (torchrun passes it on to its workers, which run in sessions of
    their own), SIGKILL 10 s later. own_group: the command leads a process group of its own, and
    the signals go to all of it (its loader workers, pools and subprocesses too)."""
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=own_group)
    try:
        return proc.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        return None
    finally:                                              # past its time, or ^C here
        if proc.poll() is None:
            send = (lambda sig: os.killpg(proc.pid, sig)) if own_group else proc.send_signal
            for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
                with suppress(ProcessLookupError):       # all gone already
                    send(sig)
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait_s)


def torchrun(script, flags, deadline):
    """script under torchrun with one process, as a user runs it; its exit code, or None if
    stopped at the deadline."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=1", script, *flags]
    print("$ torchrun " + " ".join(command[3:]), flush=True)
    return run_command(command, deadline - time.monotonic())

# -----------------------------------------------------------------------------
# the data: a small toy world, its child S prepared as real data is


def toy_paths(folder, size):
    return {"world": os.path.join(folder, "world"),
            "S": os.path.join(folder, f"S_{size['short_side']}")}


def make_toy_data(folder, size):
    toy = toy_paths(folder, size)
    generate(toy["world"], seed=0, scale=size["world_scale"], workers=size["setup_workers"])
    prepare(os.path.join(toy["world"], "saycam", "S"), toy["S"], workers=size["setup_workers"],
            short_side=size["short_side"])
    return toy

# -----------------------------------------------------------------------------
# part 1: CUDA correctness


def fixed_batch(videos, canvas, cfg, device):
    """The centre clips of the first 4 videos, evaluation crop, and one seeded random mask."""
    items = make_items(videos[:4], [-1] * len(videos[:4]), [], "the prepared toy child")
    dataset = ClipDataset(items, train=False, num_frames=cfg.frames, size=canvas)
    clips = torch.cat([dataset[i][0] for i in range(len(items))])   # (4, T, S, S, 3) uint8
    video = augment(clips.to(device), train=False, img_size=cfg.img_size)  # (4, 3, T, H, W)
    mask = make_mask("random", len(video), cfg.grid, 0.9, device,
                     generator(device, 0, "fixed batch"))
    return video, mask


@torch.no_grad()
def batch_loss(model, video, mask, precision):
    with autocast_for(video.device, precision):
        return model.eval()(video, ids_keep=mask.ids_keep, ids_restore=mask.ids_restore)[0].item()


def check_fixed_batch(part, checkpoint, toy, size, device):
    """The loss of one fixed batch and mask in fp32, before training (pretrain.py seeds its
    initial weights) and after, and the trained loss in bf16 beside fp32."""
    checks = part["checks"]
    trained = load_model(checkpoint, "mae").to(device)
    video, mask = fixed_batch(find_videos(toy["S"]), size["short_side"], trained.cfg, device)
    torch.manual_seed(0)
    initial = MaskedAutoencoder(trained.cfg).to(device)
    losses = part["fixed_batch_loss"] = {"initial": batch_loss(initial, video, mask, "fp32"),
                                         "trained": batch_loss(trained, video, mask, "fp32")}
    checks["loss_falling"] = losses["trained"] < losses["initial"]
    bf16 = batch_loss(trained, video, mask, "bf16")
    fp32 = losses["trained"]
    part["bf16_vs_fp32"] = {"bf16": bf16, "fp32": fp32, "relative": abs(bf16 - fp32) / abs(fp32)}
    checks["bf16_matches_fp32"] = part["bf16_vs_fp32"]["relative"] <= 1e-2


def check_finetune(part, checkpoint, toy, size, folder, deadline):
    """finetune.py for one short epoch from the checkpoint: does it write its results?"""
    code = torchrun("finetune.py", ["--setting", "toy", "--world", toy["world"], "--task", "ssv2",
                                    "--init", checkpoint, "--shots", "1", "--select_shots", "0",
                                    "--batch_size", "8", "--epochs", "1",
                                    "--canvas", str(size["short_side"]), "--out", folder],
                    deadline)
    results = os.path.join(folder, "results.json")
    part["checks"]["finetune_results"] = code == 0 and os.path.exists(results)
    if part["checks"]["finetune_results"]:
        with open(results) as f:
            r = json.load(f)
        part["finetune"] = {"steps": r["steps"], "num_val": r["num_val"], "top1": r["last"]["top1"]}


def part_correctness(part, size, toy, deadline, save):
    c, device = size["check"], Processes().device
    first, total = c["steps"]
    part.update(preset=c["preset"], img_size=c["img_size"],
                clips_per_step=c["batch_videos"] * c["repeats"], steps=[first, total],
                device=device_name(device))
    checks = part["checks"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "pretrain")  # fresh: the scripts will not write over an earlier run
        checkpoint, log = os.path.join(run, "checkpoint.pt"), os.path.join(run, "log.jsonl")
        flags = ["--setting", "toy", "--data", toy["S"], "--canvas", str(size["short_side"]),
                 "--preset", c["preset"], "--img_size", str(c["img_size"]),
                 "--batch_videos", str(c["batch_videos"]), "--repeats", str(c["repeats"]),
                 "--lr", str(c["lr"]), "--schedule", "constant", "--warmup_steps", str(c["warmup"]),
                 "--workers", str(size["loader_workers"]), "--log_every", "1",
                 "--save_every", str(first), "--figure_every", str(total), "--seed", "0",
                 "--out", run]
        code = torchrun("pretrain.py", flags + ["--steps", str(first)], deadline)

        def step_of():
            return torch.load(checkpoint, map_location="cpu", weights_only=False)["step"]
        checks["checkpoint_written"] = (code == 0 and os.path.exists(checkpoint)
                                        and step_of() == first)
        save()
        if not checks["checkpoint_written"]:
            return
        code = torchrun("pretrain.py", flags + ["--steps", str(total), "--resume", "auto"],
                        deadline)
        records = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
        losses = [r["loss"] for r in records]
        steps = [r["step"] for r in records]                # 1..20, then 21..30, each once
        checks["resumed"] = code == 0 and step_of() == total and steps == list(range(1, total + 1))
        checks["loss_finite"] = bool(losses) and all(math.isfinite(x) for x in losses)
        k = max(1, total // 6)
        if losses:
            part["logged_loss"] = {"first": float(np.mean(losses[:k])),
                                   "last": float(np.mean(losses[-k:])), "steps": k}
        save()
        check_fixed_batch(part, checkpoint, toy, size, device)
        save()
        check_finetune(part, checkpoint, toy, size, os.path.join(tmp, "finetune"), deadline)

# -----------------------------------------------------------------------------
# parts 2 and 3: the training step of ViT-H/14 and the largest batches of HVM-1@448


def part_vit_h(part, size, toy, deadline, save):
    s, device = size["step"], Processes().device
    cfg = make_config(s["preset"], img_size=s["img_size"])
    part.update(preset=s["preset"], clip=[cfg.frames, cfg.img_size], mask_ratio=0.9,
                compile_backend=s["compile_backend"], device=device_name(device))
    search_end = time.monotonic() + 0.15 * (deadline - time.monotonic())
    probes, stop = largest_batch(cfg, 0.9, device, s["batches"], search_end)
    room = (0.75 * torch.cuda.get_device_properties(device).total_memory / 1e9
            if device.type == "cuda" else math.inf)
    fitting = [p["batch"] for p in probes if p["fits"] and p["peak_memory_gb"] <= room]
    part["batch_search"] = {"probes": probes, "stopped": stop,
                            "memory_limit_gb": room if room < math.inf else None}
    if not fitting:
        raise RuntimeError(f"no batch of {s['batches']} was seen to fit ({stop})")
    batch = part["batch"] = fitting[-1]
    have_theirs = importlib.util.find_spec("transformers") is not None
    part["transformers"] = ("installed" if have_theirs
                            else "not installed (pip install transformers)")
    runs = part["runs"] = {}
    for compiled in (False, True):
        for model in ("ours", "transformers") if have_theirs else ("ours",):
            name = f"{model} {'compiled' if compiled else 'eager'}"
            left = deadline - time.monotonic()
            if compiled and left < s["compile_s"]:
                runs[name] = {"skipped": f"{left:.0f} s left, too little to compile"}
                continue
            try:
                result = bench_step(s["preset"], s["img_size"], mask_ratio=0.9, batch=batch,
                                    steps=s["steps"], warmup=s["warmup"], compile=compiled,
                                    models=(model,), compile_backend=s["compile_backend"])
                runs[name] = {"matmul_peak_tflops": result["matmul_peak_tflops"],
                              **result.get(model, {"error": "transformers' VideoMAE could not be "
                                                   "built (does transformers import?)"})}
                part["train_gflop_per_clip"] = result["train_gflop_per_clip"]
            except Exception as e:                       # recorded; the next measurement goes on
                traceback.print_exc()
                runs[name] = {"error": one_line(e)}
            save()
    part["ours_over_transformers"] = {}
    for mode in ("eager", "compiled"):
        mine, theirs = runs.get(f"ours {mode}", {}), runs.get(f"transformers {mode}", {})
        if "clips_per_s" in mine and "clips_per_s" in theirs:
            part["ours_over_transformers"][mode] = compare_models(mine, theirs)[1]
    part["errors"] = [f"{name}: {r['error']}" for name, r in runs.items() if "error" in r]


def part_hvm1(part, size, toy, deadline, save):
    s, device = size["hvm1"], Processes().device
    cfg = make_config(s["preset"], img_size=s["img_size"])
    part.update(preset=s["preset"], clip=[cfg.frames, cfg.img_size], tokens=cfg.num_tokens,
                mask_ratio=0.95, device=device_name(device))
    searches = part["searches"] = {}
    for checkpointing, share in ((False, 0.4), (True, 1.0)):   # the plain search stops sooner
        end = time.monotonic() + share * (deadline - time.monotonic())
        probes, stop = largest_batch(cfg, 0.95, device, s["batches"], end, checkpointing)
        largest = ([p for p in probes if p["fits"]] or [{"batch": 0}])[-1]
        searches["activation checkpointing" if checkpointing else "plain"] = {
            "largest_batch": largest["batch"], "clips_per_s": largest.get("clips_per_s"),
            "peak_memory_gb": largest.get("peak_memory_gb"), "stopped": stop, "probes": probes}
        save()

# -----------------------------------------------------------------------------
# parts 4 and 5: the real loop, and the toy preset at a GPU-sized batch


def part_e2e(part, size, toy, deadline, save):
    e = size["e2e"]
    flags = [*e["flags"], "--data", toy["S"], "--canvas", str(size["short_side"]),
             "--workers", str(size["loader_workers"])]
    part.update(bench_e2e(flags, e["steps"], e["log_every"]))


def part_toy(part, size, toy, deadline, save):
    t = size["toy"]
    result = bench_step("toy", img_size=64, batch=t["batch"], steps=t["steps"],
                        warmup=t["warmup"], models=("ours",))
    part.update({k: result[k] for k in ("device", "clip", "batch", "precision",
                                        "matmul_peak_tflops")}, **result["ours"])


PARTS = {1: part_correctness, 2: part_vit_h, 3: part_hvm1, 4: part_e2e, 5: part_toy}

# -----------------------------------------------------------------------------
# the run


def run_part(n, size, toy, deadline, report, save):
    """One part in this process: its figures, its status (ok, or failed and why), its seconds."""
    part = report["parts"][str(n)] = {"name": PART_NAMES[n], "status": "running"}
    started = time.monotonic()
    try:
        PARTS[n](part, size, toy, deadline, save)
        failed = ([name for name, passed in part.get("checks", {}).items() if not passed]
                  + part.get("errors", []))
        part["status"] = f"failed: {', '.join(failed)}" if failed else "ok"
    except Exception as e:                                # recorded, and the run goes on
        traceback.print_exc()
        part["status"] = f"failed: {one_line(e)}"
    part["seconds"] = round(time.monotonic() - started, 1)
    if part.get("device"):
        report.setdefault("device", part["device"])
    save()


def run_part_in_child(n, args, toy, deadline, report, save, work):
    """One part in a process of its own, stopped at its deadline; its figures, even from a part
    that failed."""
    left = deadline - time.monotonic()
    if left < 2 * GRACE_S:
        report["parts"][str(n)] = {"name": PART_NAMES[n],
                                   "status": f"skipped: {left:.0f} s of the budget left"}
        return save()
    child_out = os.path.join(work, f"part{n}.json")
    command = [sys.executable, os.path.join(REPO, "bench.py"), "gpu", "--parts", str(n),
               "--budget_minutes", f"{(left - GRACE_S) / 60:.4f}", "--out", child_out,
               *(["--toy", toy] if toy else []), *(["--dry-run"] if args.dry_run else [])]
    started = time.monotonic()
    code = run_command(command, left, own_group=True)
    child = {}
    with suppress(FileNotFoundError, json.JSONDecodeError):
        with open(child_out) as f:
            child = json.load(f)
    part = child.get("parts", {}).get(str(n), {"name": PART_NAMES[n]})
    if code is None:
        part["status"] = f"stopped: it ran past its {left:.0f} s (what it measured before is kept)"
    elif part.get("status", "running") == "running":   # it died before it could say why
        part["status"] = f"failed: its process exited with code {code} (the output above says why)"
    part["seconds"] = round(time.monotonic() - started, 1)
    report["parts"][str(n)] = part
    if child.get("device"):
        report.setdefault("device", child["device"])
    save()


def run_setup(work, size, report, save):
    """The toy world and its prepared child S, for parts 1 and 4: their paths, or None (the
    failure recorded: parts 2, 3 and 5 still run)."""
    began, toy = time.monotonic(), None
    try:
        toy = make_toy_data(work, size)
        report["setup"] = {"status": "ok"}
    except Exception as e:
        traceback.print_exc()
        report["setup"] = {"status": f"failed: {one_line(e)}"}
    report["setup"].update(world_scale=size["world_scale"], short_side=size["short_side"],
                           seconds=round(time.monotonic() - began, 1))
    save()
    return toy


def run_gpu(args):
    try:
        parts = [int(p) for p in args.parts.split(",")]
    except ValueError:
        parts = []
    if not parts or not set(parts) <= set(PARTS) or args.budget_minutes <= 0:
        fail(f"--parts takes numbers from 1 to 5, comma-separated, and --budget_minutes a positive "
             f"number (got {args.parts!r} and {args.budget_minutes})")
    size = SIZES["dry_run" if args.dry_run else "gpu"]
    if args.dry_run:        # its figures mean nothing, and on a busy 2-core CPU one thread per
        os.environ["OMP_NUM_THREADS"] = "1"         # process is quickest (every process it starts)
        torch.set_num_threads(1)
    start, out = time.monotonic(), os.path.abspath(args.out)
    report = {"bench": "gpu", "dry_run": args.dry_run,
              "command": " ".join(["python bench.py", *sys.argv[1:]]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "budget_s": round(60 * args.budget_minutes, 1), "torch": torch.__version__,
              "parts": {}}

    def save():
        write_json(out, report)
    with tempfile.TemporaryDirectory() as work:
        need_data = not args.toy and bool({1, 4} & set(parts))
        ends = deadlines(start, 60 * args.budget_minutes, (["setup"] if need_data else []) + parts)
        folder = os.path.abspath(args.toy) if args.toy else None   # the toy data's, for children
        toy = toy_paths(folder, size) if folder else None
        if need_data:
            toy = run_setup(work, size, report, save)
            folder = work if toy else None
        for n in parts:
            if n in (1, 4) and toy is None:
                report["parts"][str(n)] = {"name": PART_NAMES[n],
                                           "status": "skipped: no toy data (the setup failed)"}
                save()
            elif len(parts) == 1:
                run_part(n, size, toy, ends[n], report, save)
            else:
                run_part_in_child(n, args, folder, ends[n], report, save, work)
    report["seconds"] = round(time.monotonic() - start, 1)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    print_summary(report, out)
    return report
