"""
The paper in miniature: all five results of Orhan et al. (2024) on the toy world, on a laptop CPU,
in under an hour.

    python -m toy.miniature  # toyworld/ -> runs/miniature/ and report/REPORT.md
    python -m toy.miniature --tiny --world W --out O --report R  # the pipeline at a tiny size (CI)

This file is a driver, not a model: every step is one command of the project's own scripts
(pretrain.py, finetune.py, eval_ood.py, interpolate.py, scaling.py), run as a subprocess, so the
report can list the exact command behind each number and a reader can re-run any one of them by
hand. The study:

    pretrain  S, SAY, Kinetics-like (all, and the hours of 10% of S), S-Img (an image MAE on S's
              frames), and 0.1%, 1%, 10% of S for the scaling line; all for the same steps
    finetune  each of them and `scratch`: SSV2-like and Kinetics-like, 10 and 50 shots, --seeds
              seeds (Results 1-3); S and S-Img on the toy ImageNet's 2% (Result 5)
    evaluate  t-SNE at 0/10/50 shots (Result 2), the scaling fit (Result 3), interpolation of
              children A and Y with the S model (Result 4), toy OOD sets, S-Vid vs S-Img (Result 5)

Jobs run --jobs at a time with --threads each (on 2 cores, two 1-thread jobs beat one 2-thread job).
A job that finished with the same command is not run again, and the trainers resume from their
checkpoints: an interrupted study loses at most the jobs that were running. A job's output goes to
OUT/logs/<job>.log; toy/report.py writes the report from the jobs' JSON files.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from data import fraction_subset, headcam_items, kinetics_items
from runs import check_out_folder
from toy import WORLD
from toy.report import write_report
from training import ArgumentParser, fail, positive_float, positive_int
from video import VideoError, video_info

# The toy SSV2-like classes whose events the toy children's headcam streams also show (objects fall,
# are pushed sideways by a hand or slide, and roll): the toy world's stand-in for the paper's
# "developmentally realistic" categories, which the authors chose as the classes whose verb most
# 30-month-olds produce (Wordbank).
SUBSET = ("Dropping [something]",
          "Moving [something] from left to right", "Moving [something] from right to left",
          "Rotating [something] clockwise", "Rotating [something] anticlockwise")

# the pretraining conditions: name ->
# (label in the report, pretrain.py's data flags given the world's folder)
CONDITIONS = {
    "S": ("S", lambda w, k_frac: ["--data", "S", "--data_root", f"{w}/saycam"]),
    "SAY": ("SAY", lambda w, k_frac: ["--data", "SAY", "--data_root", f"{w}/saycam"]),
    "K": ("Kinetics-like, all", lambda w, k_frac: [
        "--data", "kinetics", "--data_root", f"{w}/kinetics"]),
    "Kmatched": ("Kinetics-like, hours of S-10%", lambda w, k_frac: [
        "--data", "kinetics", "--data_root", f"{w}/kinetics",
        "--data_frac", f"{k_frac:.4f}", "--frac_mode", "random"]),
    "SImg": ("S-Img (image MAE)", lambda w, k_frac: [
        "--data", "S", "--data_root", f"{w}/saycam",
        "--frames", "1", "--t_patch", "1", "--mask_ratio", "0.8"]),
    "S10": ("S, first 10%", lambda w, k_frac: [
        "--data", "S", "--data_root", f"{w}/saycam", "--data_frac", "0.1"]),
    "S1": ("S, first 1%", lambda w, k_frac: [
        "--data", "S", "--data_root", f"{w}/saycam", "--data_frac", "0.01"]),
    "S0.1": ("S, first 0.1%", lambda w, k_frac: [
        "--data", "S", "--data_root", f"{w}/saycam", "--data_frac", "0.001"]),
}
# Result 4 asks the S model to fill in hidden middle frames. Random masks never ask that, and at
# this size their model keeps a still room less sharply than a copy of the nearest frame does;
# continuing it on the center mask (the middle frames hidden, 25% of the tokens) for half as many
# steps, at a third of the learning rate (it continues a trained model), makes it beat the copy.
CENTER = ("S, then the center mask",
          ["--mask_type", "center", "--mask_ratio", "0.25", "--lr", "1e-3"])
RESULT1_INITS = ("S", "SAY", "K", "Kmatched", "SImg", "scratch")
# Every condition's pretraining: the toy setting for 7,200 steps of 32 clips, the videos decoded
# once and kept in memory. A few hundred steps only start an MAE: at 1,800 steps its encoder does
# not yet help 10-shot finetuning, at 7,200 it does. That is hours on a 2-core CPU, so
# `python -m toy.assets` pretrains once, the files ship in assets/toy/, and the study starts from
# them (--pretrain redoes the pretraining inside the study).
PRETRAIN_STEPS = 7200
ASSETS = os.path.join("assets", "toy")
# keeps two lanes busy
PRETRAIN_ORDER = ("S", "Kmatched", "S10", "S1", "S0.1", "SImg", "Scenter", "SAY", "K")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the scripts the jobs run
SCALING = (("S0.1", 0.001), ("S1", 0.01), ("S10", 0.1), ("S", 1.0))      # condition, fraction of S


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--world", default=WORLD,
                   help="the toy world (made with `python -m toy.world` if it is not there)")
    p.add_argument("--out", default="runs/miniature",
                   help="every run's folder, the jobs' logs and state")
    p.add_argument("--report", default="report", help="folder for REPORT.md and its figures")
    p.add_argument("--jobs", type=positive_int, default=2, help="jobs side by side")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads per job (default: the cores / --jobs)")
    p.add_argument("--seeds", type=positive_int, default=3, help="finetuning seeds per condition")
    p.add_argument("--shots", default="10,50", help="few-shot sizes, comma-separated")
    p.add_argument("--assets", default=ASSETS,
                   help="the pretrained models the study starts from, one <condition>.pt "
                   "each (made once by `python -m toy.assets`)")
    p.add_argument("--pretrain", action="store_true",
                   help="pretrain every condition inside the study instead of "
                   "starting from --assets (about 4 hours more on a 2-core CPU)")
    p.add_argument("--pretrain_steps", type=positive_int, default=PRETRAIN_STEPS,
                   help="with --pretrain: steps of every pretraining (32 clips each)")
    p.add_argument("--epochs", default="10=40,50=3",
                   help="finetuning epochs per shots, SHOTS=EPOCHS pairs")
    p.add_argument("--imagenet_epochs", type=positive_float, default=20,
                   help="finetuning epochs on the toy ImageNet's 2%%")
    # the paper's scaling figure is on the 50-shot tasks; the toy line is on the SSV2-like one,
    # whose classes only motion tells apart (--scaling_task kinetics draws the other)
    p.add_argument("--scaling_task", default="ssv2", choices=("kinetics", "ssv2"),
                   help="the task of the scaling line")
    p.add_argument("--scaling_shots", type=positive_int, default=50,
                   help="the shots of the scaling line")
    p.add_argument("--clips", type=positive_int, default=256,
                   help="clips of A and Y for the interpolation PSNR")
    p.add_argument("--tiny", action="store_true",
                   help="a few steps of pretraining (--pretrain) and finetuning, one "
                   "seed, 10 shots: checks the pipeline only")
    args = p.parse_args(argv)
    if args.tiny:
        args.seeds, args.shots, args.pretrain, args.pretrain_steps, args.epochs = (
            1, "10", True, 3, "10=1")
        args.scaling_shots = 10
        args.imagenet_epochs, args.clips = 1, 8
    try:
        args.shots = [int(s) for s in args.shots.split(",")]
        args.epochs = {int(k): float(v)
                       for k, v in (pair.split("=") for pair in args.epochs.split(","))}
    except ValueError:
        fail(f"--shots {args.shots!r} / --epochs {args.epochs!r}: "
             "expected e.g. --shots 10,50 --epochs 10=12,50=3")
    if missing := [k for k in args.shots if k not in args.epochs]:
        fail(f"--epochs gives no epochs for {missing[0]} shots "
             "(--epochs 10=12,50=3 pairs shots with epochs)")
    if args.scaling_shots not in args.shots:
        fail(f"--scaling_shots {args.scaling_shots} is not one of "
             f"--shots {','.join(map(str, args.shots))}")
    args.matched_shots = min(args.shots)  # S-10% meets Kmatched at the fewest shots
    if args.seeds < 1 or args.jobs < 1 or args.pretrain_steps < 1:
        fail("--seeds, --jobs and --pretrain_steps must be at least 1")
    args.threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    return args

# -----------------------------------------------------------------------------
# the study as a list of jobs


@dataclass
class Job:
    name: str
    command: list                       # argv, starting with the script
    deps: tuple = ()                    # jobs that must have finished first
    info: dict = field(default_factory=dict)   # what the report needs to know about it

    @property
    def line(self):
        return shlex.join(["python"] + self.command)


def data_hours(world, seed=0):
    """Hours of each pretraining source, measured on the very files pretrain.py will pick, and the
    fraction of the Kinetics-like set with the hours of 10% of S (its clips drawn at random with the
    pretraining's --seed)."""
    durations = {}

    def video_hours(items):
        for path in items.paths:
            if path not in durations:
                try:
                    durations[path] = video_info(path)[0]
                except VideoError:
                    durations[path] = 0.0                       # pretrain.py skips it too
        return sum(durations[p] for p in items.paths) / 3600

    S, K = headcam_items(f"{world}/saycam", "S"), kinetics_items(f"{world}/kinetics", "train")
    hours = {"S": video_hours(S), "SAY": video_hours(headcam_items(f"{world}/saycam", "SAY")),
             "K": video_hours(K)}
    for name, frac in SCALING[:-1]:                             # pretrain.py --data_frac (prefix)
        hours[name] = video_hours(fraction_subset(S, frac, "prefix"))
    hours["SImg"] = hours["S"]
    k_frac = round(min(1.0, hours["S10"] / hours["K"]), 4)
    # --frac_mode random --seed
    hours["Kmatched"] = video_hours(fraction_subset(K, k_frac, "random", seed=seed))
    return hours, k_frac


def pretraining_jobs(world, out, hours, k_frac, steps=PRETRAIN_STEPS, seed=0):
    """The pretraining of every condition, and of S continued on the center mask (half as many steps
    again). A seed other than 0 is a second pretraining of the same conditions: its runs are
    OUT/pt_<condition>_seed<seed>."""
    jobs, tag = {}, "" if seed == 0 else f"_seed{seed}"
    for cond, (label, data_flags) in CONDITIONS.items():
        jobs[cond] = Job(f"pt_{cond}{tag}",
                         ["pretrain.py", "--setting", "toy", *data_flags(world, k_frac),
                          "--steps", str(steps), "--cache", "--seed", str(seed),
                          "--out", f"{out}/pt_{cond}{tag}", "--resume", "auto"],
                         info=dict(kind="pretrain", cond=cond, label=label, hours=hours[cond],
                                   seed=seed))
    label, mask_flags = CENTER
    jobs["Scenter"] = Job(f"pt_Scenter{tag}",
                          ["pretrain.py", "--setting", "toy", *CONDITIONS["S"][1](world, k_frac),
                           "--init", f"{out}/pt_S{tag}/checkpoint.pt", *mask_flags,
                           "--steps", str(max(1, steps // 2)), "--cache", "--seed", str(seed),
                           "--out", f"{out}/pt_Scenter{tag}", "--resume", "auto"],
                          (f"pt_S{tag}",), dict(kind="pretrain", cond="Scenter", label=label,
                                                hours=hours["S"], seed=seed))
    return [jobs[cond] for cond in PRETRAIN_ORDER]


def pretrained_model(args, cond):
    """Where the study finds a condition's MAE: the shipped file, or its run inside the study."""
    return os.path.join(args.out, f"pt_{cond}", "checkpoint.pt") if args.pretrain else \
        os.path.join(args.assets, f"{cond}.pt")


def study(args, hours, k_frac):
    """Every job of the study, ordered to keep two lanes busy (long pretraining first, if any)."""
    w, out, jobs = args.world, args.out, []
    runs = lambda name: os.path.join(out, name)
    if args.pretrain:
        jobs += pretraining_jobs(w, out, hours, k_frac, args.pretrain_steps)
    deps_of = lambda *conds: tuple(f"pt_{c}" for c in conds) if args.pretrain else ()
    init_of = lambda cond: (("scratch", ()) if cond == "scratch"
                            else (pretrained_model(args, cond), deps_of(cond)))

    def finetune(cond, task, shots, seed, epochs, extra=()):
        name = f"ft_{cond}_{task}_{str(shots).replace('%', 'pct')}_s{seed}"
        if any(j.name == name for j in jobs):         # two results may need the same run
            return name
        init, deps = init_of(cond)
        jobs.append(Job(name, ["finetune.py", "--setting", "toy", "--world", w, "--task", task,
                               "--shots", str(shots), "--select_shots", "0",
                               "--epochs", f"{epochs:g}", "--init", init, "--seed", str(seed),
                               *extra, "--out", runs(name), "--resume", "auto"], deps,
                        dict(kind="finetune", cond=cond, task=task, shots=shots, seed=seed)))
        return name

    subset = ["--subset", "|".join(SUBSET)]
    for cond in RESULT1_INITS:                        # Results 1 and 2
        for task in ("ssv2", "kinetics"):
            for shots in args.shots:
                for seed in range(args.seeds):
                    finetune(cond, task, shots, seed, args.epochs[shots],
                             subset if task == "ssv2" else ())
    scaling_shots = args.scaling_shots
    for cond, _ in SCALING[:-1]:                      # Result 3 (S itself is a Result 1 run)
        for seed in range(args.seeds):
            finetune(cond, args.scaling_task, scaling_shots, seed, args.epochs[scaling_shots],
                     subset if args.scaling_task == "ssv2" else ())
    for seed in range(args.seeds):                    # Result 1's S-10% vs length-matched Kinetics
        finetune("S10", "kinetics", args.matched_shots, seed, args.epochs[args.matched_shots])
    for cond in ("S", "SImg"):                        # Result 5: the toy ImageNet's 2%
        for seed in range(args.seeds):
            finetune(cond, "imagenet", "2%", seed, args.imagenet_epochs)

    # Result 2: t-SNE of the S model's features at 0 shots and after finetuning
    # on each number of shots (seed 0)
    tsne_runs = [f"ft_S_ssv2_{k}_s0" for k in args.shots]
    titles = "|".join(["0-shot"] + [f"{k}-shot" for k in args.shots])
    jobs.append(Job("tsne", ["finetune.py", "--setting", "toy", "--world", w, "--task", "ssv2",
                             "--embed", pretrained_model(args, "S"),
                             *[f"{runs(r)}/best.pt" for r in tsne_runs],
                             "--embed_titles", titles, *subset, "--out", runs("tsne")],
                    (*deps_of("S"), *tsne_runs), dict(kind="tsne")))
    # Result 3: the scaling line, with the Kinetics-like models drawn beside it at their hours
    glob_of = lambda cond: (f"{runs('ft_' + cond)}_{args.scaling_task}_{scaling_shots}"
                            "_s*/results.json")
    points = [f"--point={hours[c]:.4g}={glob_of(c)}" for c, _ in SCALING]
    extras = [f"--extra={CONDITIONS[c][0]}@{hours[c]:.4g}={glob_of(c)}" for c in ("Kmatched", "K")]
    jobs.append(Job("scaling", ["scaling.py", *points, *extras,
                                "--metric", "top1", "--which", "last",
                                "--title", f"toy {args.scaling_task} {scaling_shots}-shot, top-1",
                                "--out", runs("scaling")],
                    tuple(j.name for j in jobs if j.info.get("kind") == "finetune" and
                          j.info["task"] == args.scaling_task and
                          j.info["shots"] == scaling_shots and
                          j.info["cond"] in ("S0.1", "S1", "S10", "S", "Kmatched", "K")),
                    dict(kind="scaling")))
    # Result 4: the S model, continued on the center mask, fills in the middle of clips of children
    # A and Y, whom it never saw
    jobs.append(Job("interpolate", ["interpolate.py", "--setting", "toy",
                                    "--ckpt", pretrained_model(args, "Scenter"),
                                    "--world", w, "--child", "A,Y", "--clips", str(args.clips),
                                    "--overwrite", "--out", runs("interpolate")],
                    deps_of("Scenter"), dict(kind="interpolate")))
    # Result 5: OOD sets, S-Vid vs S-Img, a pair per finetuning seed (attention maps for the first)
    for seed in range(args.seeds):
        pair = (f"ft_S_imagenet_2pct_s{seed}", f"ft_SImg_imagenet_2pct_s{seed}")
        jobs.append(Job(f"ood_s{seed}", ["eval_ood.py", "--setting", "toy",
                                         "--data_root", f"{w}/ood",
                                         "--ckpt", *[f"{runs(r)}/best.pt" for r in pair],
                                         "--names", "S-Vid|S-Img",
                                         *(["--attention"] if seed == 0 else []), "--overwrite",
                                         "--out", runs(f"ood_s{seed}")],
                        pair, dict(kind="ood", seed=seed)))
    return jobs

# -----------------------------------------------------------------------------
# running the jobs, two lanes at a time


def read_state(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def write_state(path, state):
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def run_jobs(jobs, args, prune=True):
    """Run what is not done yet, --jobs at a time, each after its dependencies. A job is done when
    it exited 0 with the same command. A job whose command changed (or whose dependency re-runs), a
    folder no state knows of, and (with `prune`) a job no longer in the study are removed first, so
    no stale run is resumed or globbed. Returns the state, the number of jobs run, and whether any
    finished job had to be redone."""
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    state_path = os.path.join(args.out, "jobs.json")
    state, todo, redone = read_state(state_path), [], False
    # e.g. seeds beyond a smaller --seeds
    for name in set(state) - {j.name for j in jobs} if prune else ():
        shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)
        state.pop(name)
    for job in jobs:                                      # jobs come after their dependencies
        known = state.get(job.name, {})
        stale = (known.get("command") != job.line
                 or any(d in {j.name for j in todo} for d in job.deps))
        if stale:                                         # other settings, or unknown: begin again
            shutil.rmtree(os.path.join(args.out, job.name), ignore_errors=True)
            redone |= known.get("status") == "done"
            state.pop(job.name, None)
        if stale or known.get("status") != "done":        # "running": resume from its checkpoint
            todo.append(job)
    write_state(state_path, state)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONUNBUFFERED="1")
    running, done, ran = {}, {j.name for j in jobs if j not in todo}, len(todo)
    bar = tqdm(total=len(jobs), initial=len(done), desc="miniature", unit="job", dynamic_ncols=True)
    while todo or running:
        while len(running) < args.jobs:
            job = next((j for j in todo if all(d in done for d in j.deps)), None)
            if job is None:
                break
            todo.remove(job)
            log = open(os.path.join(args.out, "logs", job.name + ".log"), "w")
            log.write(job.line + "\n\n")
            log.flush()
            command = [sys.executable, os.path.join(ROOT, job.command[0]), *job.command[1:]]
            running[job.name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                  env=env), log, time.time(), job)
            state[job.name] = {"command": job.line, "status": "running"}
            write_state(state_path, state)
        if bar.postfix != ", ".join(running):
            bar.set_postfix_str(", ".join(running))
        time.sleep(0.2)
        for name, (proc, log, began, job) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            if proc.returncode != 0:
                state[name] = {"command": job.line, "status": "failed", "exit": proc.returncode}
                write_state(state_path, state)
                for other, other_log, *_ in running.values():   # the others resume next time
                    other.terminate()
                    other.wait()
                    other_log.close()
                with open(log.name) as f:
                    tail = f.read().strip().splitlines()[-5:]
                print("\n".join(tail), file=sys.stderr)
                fail(f"{name} failed (exit {proc.returncode}); its log: {log.name}. "
                     "Run `python -m toy.miniature` again to resume once it is fixed")
            state[name] = {"command": job.line, "status": "done",
                           "seconds": round(time.time() - began, 1)}
            write_state(state_path, state)
            done.add(name)
            bar.update(1)
    bar.close()
    return state, ran, redone


def prepare_world(world, seed=0):
    """The toy world, written once (about 3 minutes) if missing; returns data_hours(world, seed)."""
    if not os.path.exists(os.path.join(world, "world.json")):
        print(f"no toy world at {world}: writing it (python -m toy.world --out {world})")
        command = [sys.executable, "-m", "toy.world", "--out", os.path.abspath(world)]
        if subprocess.run(command, cwd=ROOT).returncode:
            fail(f"python -m toy.world could not write {world}")
    try:
        return data_hours(world, seed)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


def main(args):
    began = time.time()
    check_out_folder(args.out)                            # before the world is written, not after
    check_out_folder(args.report, flag="--report")
    hours, k_frac = prepare_world(args.world)
    if not args.pretrain:
        missing = [c for c in PRETRAIN_ORDER if not os.path.exists(pretrained_model(args, c))]
        if missing:
            fail(f"--assets {args.assets}: no {', '.join(c + '.pt' for c in missing)}; "
                 f"make them with `python -m toy.assets --conditions {','.join(missing)}`, "
                 "or pretrain inside the study with --pretrain")
    jobs = study(args, hours, k_frac)
    os.makedirs(args.out, exist_ok=True)
    world_record, timing_path = (os.path.join(args.out, "world.json"),
                                 os.path.join(args.out, "timing.json"))
    world = read_state(os.path.join(args.world, "world.json"))
    if read_state(world_record) not in ({}, world):       # another world: every run is stale
        for path in (os.path.join(args.out, "jobs.json"), timing_path):
            if os.path.exists(path):
                os.remove(path)
    write_state(world_record, world)
    print(f"the paper in miniature: {len(jobs)} jobs, "
          f"{args.jobs} at a time with {args.threads} thread(s) each; "
          f"runs in {args.out}, logs in {args.out}/logs")
    state, ran, redone = run_jobs(jobs, args)
    # the wall time of every invocation that ran jobs, so that a resumed study reports its whole
    # time; when finished jobs had to be redone (other settings), the earlier invocations no longer
    # describe this study
    timing = [] if redone else read_state(timing_path).get("invocations", [])
    wall = time.time() - began
    if ran:
        timing.append({"seconds": round(wall, 1), "jobs_run": ran, "jobs": args.jobs,
                       "threads": args.threads})
        write_state(timing_path, {"invocations": timing})
    path = write_report(jobs, state, args, hours, timing, SUBSET)
    print(f"done in {wall / 60:.1f} min: {path}")


if __name__ == "__main__":
    main(parse_args())
