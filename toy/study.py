"""
Reading the paper in miniature's runs (toy/miniature.py) for its report (toy/report.py): the JSON
files its jobs wrote, the finetuning seeds' means and spreads, the comparison of two conditions, and
the neighbourhoods of the t-SNE features. Every number of the report is computed from these.
"""

import json
import math
import os
import shutil

import numpy as np

from runs import RunLog

# -----------------------------------------------------------------------------
# numbers


def load(path):
    with open(path) as f:
        return json.load(f)


def stats(values):
    """(mean, sd, n) in percent of fractions; sd over seeds (n - 1), 0 for one seed."""
    v = np.array(values, dtype=float) * 100
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def fmt(s):
    return "–" if s is None else f"{s[0]:.1f} ± {s[1]:.1f}"


def gap(a, b):
    """(difference, standard error, whether a is clearly above b) for two stats tuples."""
    diff = a[0] - b[0]
    se = math.sqrt(a[1] ** 2 / a[2] + b[1] ** 2 / b[2])
    return diff, se, diff > max(1.0, 2 * se)


def verdict(ok, partly=False, seeds=2):
    if seeds < 2:
        return "**No verdict (one seed).**"
    return ("**Reproduces.**" if ok else "**Partly reproduces.**" if partly
            else "**Does not reproduce.**")


def finetune_scores(jobs, out):
    """{(cond, task, shots): {metric: [value per seed]}} and {task: number of classes}, from the
    finetuning runs' results.json (their last model: the study finetunes without a selection
    set)."""
    table, classes = {}, {}
    for job in jobs:
        if job.info.get("kind") != "finetune":
            continue
        results = load(os.path.join(out, job.name, "results.json"))
        classes[job.info["task"]] = len(results["classes"])
        last = results["last"]
        row = table.setdefault((job.info["cond"], job.info["task"], job.info["shots"]), {})
        for metric in ("top1", "top5"):
            row.setdefault(metric, []).append(last[metric])
            for part in ("subset", "rest"):
                if part in last:
                    row.setdefault(f"{part}_{metric}", []).append(last[part][metric])
    return table, classes


def pretraining_summary(jobs, args):
    """{condition: its label, steps, final training loss, reconstruction figure, the command that
    pretrained it and its seconds}: from the study's own pretraining runs (--pretrain), or from the
    shipped models' record (assets/toy/made.json, written by `python -m toy.assets`)."""
    if not args.pretrain:
        files = load(os.path.join(args.assets, "made.json"))["files"]
        return {cond: dict(made, figure=os.path.join(args.assets, f"{cond}.png"))
                for cond, made in files.items()}
    summary = {}
    for job in jobs:
        if job.info.get("kind") == "pretrain":
            run = os.path.dirname(os.path.join(args.out, job.name, ""))
            records = RunLog(os.path.join(run, "log.jsonl"), main=False).records()
            summary[job.info["cond"]] = dict(
                label=job.info["label"], command=job.line,
                figure=os.path.join(run, "reconstruction.png"),
                steps=int(job.command[job.command.index("--steps") + 1]),
                final_loss=next((r["loss"] for r in reversed(records) if "loss" in r),
                                float("nan")))
    return summary


def copy_figure(src, report_dir, name):
    if os.path.exists(src):
        shutil.copy(src, os.path.join(report_dir, name))
        return f"![{name}]({name})"
    return f"(figure missing: {src})"

# -----------------------------------------------------------------------------
# the sections, one per result


class Study:
    """What every section needs: the runs' scores, the conditions' names and hours, the flags."""

    def __init__(self, jobs, args, hours):
        self.jobs, self.args, self.hours, self.out, self.report_dir = (
            jobs, args, hours, args.out, args.report)
        self.table, self.classes = finetune_scores(jobs, args.out)
        self.pretrained = pretraining_summary(jobs, args)
        self.labels = {cond: p["label"] for cond, p in self.pretrained.items()}
        self.labels["scratch"] = "scratch"
        self.steps = self.pretrained["S"]["steps"]              # every condition's, but Scenter's
        self.verdicts = {}                                      # result -> verdict, for the summary
        runs = [j.info for j in jobs if j.info.get("kind") == "finetune"]
        cells = {(r["cond"], r["task"], r["shots"]) for r in runs}
        # Result 1's conditions, in order: those on every cell
        self.inits = [c for c in dict.fromkeys(r["cond"] for r in runs)
                      if all((c, t, k) in cells for t in ("ssv2", "kinetics") for k in args.shots)]
        self.seeds = args.seeds

    def score(self, cond, task, shots, metric="top1"):
        row = self.table.get((cond, task, shots))
        return stats(row[metric]) if row and metric in row else None

    def final_loss(self, cond):
        return self.pretrained[cond]["final_loss"]

    def chance(self, task, k=1):
        n = self.classes.get(task, 1)
        return 100 * min(k, n) / n


def neighbour_agreement(path, k=5):
    """How much class structure a t-SNE panel's features hold, as a number: the share of clips
    whose k nearest other clips (cosine, standardised features) vote for the clip's own class
    (ties: the lowest class index)."""
    data = np.load(path)
    x, y = data["features"], data["labels"]
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)                               # leave the clip itself out
    neighbours = np.argsort(-similarity, axis=1)[:, :k]
    votes = np.array([np.bincount(y[row], minlength=y.max() + 1).argmax() for row in neighbours])
    return float((votes == y).mean()) * 100, len(np.unique(y))
