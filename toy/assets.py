"""
The paper in miniature's pretrained models, made once by this command and shipped in assets/toy/:

    # every condition, 7,200 steps each: hours on a 2-core CPU (resumable)
    python -m toy.assets
    # some of them (the others' files stay as they are)
    python -m toy.assets --conditions Kmatched,S10
    # a second pretraining seed, into assets/toy/seed1/
    python -m toy.assets --seed 1 --conditions S,SImg
    # the same at a tiny size (the test)
    python -m toy.assets --steps 3 --out O --assets A --world W

An MAE on the toy world helps few-shot finetuning only after thousands of steps, more than the
study's hour on a CPU allows for nine pretraining runs. So the runs are made here, once, by the very
commands the study would run (toy/miniature.py's `pretraining_jobs`, two lanes side by side), and
the study starts from their files.

Each <condition>.pt is the run's final MAE in half precision (a few MB), with its config and flags,
and `made_by`: the command, the seconds of training it took, the first logged steps' loss and
gradient norm (tests/test_assets.py re-runs those steps and compares) and the final loss.
assets/toy/made.json lists the same for every file, and <condition>.png is the run's last
reconstruction figure.
"""

import argparse
import json
import os
import platform
import shutil
import time

from checkpoints import load_checkpoint
from runs import RunLog, check_out_folder, save_checkpoint
from toy import WORLD
from toy.miniature import (ASSETS, PRETRAIN_ORDER, PRETRAIN_STEPS, prepare_world, pretraining_jobs,
                           run_jobs)
from training import ArgumentParser, positive_int

# logged steps (of the toy setting's 25) kept for the check that the command reproduces them
FIRST_STEPS = 2


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--world", default=WORLD,
                   help="the toy world (made with `python -m toy.world` if it is not there)")
    p.add_argument("--out", default="runs/assets",
                   help="the pretraining runs' folders, their logs and state")
    p.add_argument("--assets", default=None,
                   help="where the shipped files are written (default: assets/toy, and "
                   "assets/toy/seed<N> for --seed N other than 0)")
    p.add_argument("--seed", type=int, default=0, help="the pretraining seed (pretrain.py --seed)")
    p.add_argument("--steps", type=positive_int, default=PRETRAIN_STEPS,
                   help="steps of every pretraining")
    p.add_argument("--conditions", default=",".join(PRETRAIN_ORDER),
                   help="which conditions, comma-separated")
    p.add_argument("--jobs", type=positive_int, default=2, help="runs side by side")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads per run (default: the cores / --jobs)")
    args = p.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    args.conditions = args.conditions.split(",")
    if args.seed < 0:
        p.error(f"--seed {args.seed}: must be 0 or more")
    args.assets = args.assets or (ASSETS if args.seed == 0
                                  else os.path.join(ASSETS, f"seed{args.seed}"))
    unknown = sorted(set(args.conditions) - set(PRETRAIN_ORDER))
    if unknown:
        p.error(f"--conditions: no condition {', '.join(unknown)} "
                f"(there are {', '.join(PRETRAIN_ORDER)})")
    if "Scenter" in args.conditions and "S" not in args.conditions:
        p.error("--conditions: Scenter continues S's run, so it needs S too")
    return args


def cut(job, run_state):
    """The shipped file of one finished run: its last weights in half precision, and how they
    were made."""
    run = job.command[job.command.index("--out") + 1]
    state = load_checkpoint(os.path.join(run, "checkpoint.pt"), "cpu")
    logged = [r for r in RunLog(os.path.join(run, "log.jsonl"), main=False).records()
              if "loss" in r]
    made_by = {"command": job.line, "steps": state["step"],
               "seconds": state.get("seconds", run_state.get("seconds")),
               "first_steps": [{k: r[k] for k in ("step", "loss", "grad_norm")}
                               for r in logged[:FIRST_STEPS]],
               "final_loss": logged[-1]["loss"], "hours_of_video": job.info["hours"],
               "label": job.info["label"]}
    weights = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    return {"model": weights, "config": state["config"], "args": state["args"],
            "step": state["step"], "made_by": made_by}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip()
                        for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main(args):
    began = time.time()
    check_out_folder(args.out)
    check_out_folder(args.assets, flag="--assets")
    hours, k_frac = prepare_world(args.world, args.seed)
    jobs = [job for job in pretraining_jobs(args.world, args.out, hours, k_frac,
                                            args.steps, args.seed)
            if job.info["cond"] in args.conditions]
    print(f"the study's pretraining: {len(jobs)} runs of {args.steps} steps, "
          f"{args.jobs} at a time with {args.threads} thread(s) each; "
          f"runs in {args.out}, logs in {args.out}/logs")
    state, _, _ = run_jobs(jobs, args, prune=False)     # the other conditions' runs stay
    os.makedirs(args.assets, exist_ok=True)
    record_path = os.path.join(args.assets, "made.json")
    made = {}
    # the files made before, by other runs of this command
    if os.path.exists(record_path):
        with open(record_path) as f:
            made = json.load(f)["files"]
    for job in jobs:
        cond = job.info["cond"]
        asset = cut(job, state[job.name])
        save_checkpoint(os.path.join(args.assets, f"{cond}.pt"), asset)
        # its last reconstruction figure, for the report
        run = job.command[job.command.index("--out") + 1]
        shutil.copy(os.path.join(run, "reconstruction.png"),
                    os.path.join(args.assets, f"{cond}.png"))
        made[cond] = {**asset["made_by"], "jobs": args.jobs, "threads": args.threads,
                      "cpu": cpu_name()}
    # seconds of training, summed over resumes: the honest cost
    with open(record_path, "w") as f:
        json.dump({"steps": args.steps, "seed": args.seed, "files": made}, f, indent=1)
    print(f"done in {(time.time() - began) / 60:.1f} min: "
          f"{len(jobs)} files in {args.assets} ({record_path})")


if __name__ == "__main__":
    main(parse_args())
