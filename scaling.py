"""
Data scaling: how few-shot accuracy grows with the hours of video the encoder was pretrained on,
and where the trend points beyond the data we have. The paper's Result 3 (Figure 4 of both papers).

The authors pretrained the same ST-MAE on the first 0.1%, 1%, 10% and 100% of child S's video
(0.194, 1.94, 19.4 and 194 hours), finetuned each encoder on the same few-shot task, and fitted a
straight line to accuracy against the logarithm of the hours. Extending that line by one or two
orders of magnitude asks: what would a child's amount of visual experience buy? HVM-1 then put
models pretrained on ~5000 hours next to the line.

    python scaling.py --point 0.194='runs/ft_S0.1pct_*/results.json' \\
        --point 1.94='runs/ft_S1pct_*/results.json' --point 19.4='runs/ft_S10pct_*/results.json' \\
        --point 194='runs/ft_S_*/results.json' \\
        --extra 'Kinetics-200h@200=runs/ft_k200_*/results.json' --metric top5 --out runs/scaling
    # rows hours,accuracy (in %): numbers from elsewhere
    python scaling.py --csv my_numbers.csv

Each --point HOURS=GLOB is one pretraining run; the files it matches are its finetuning seeds
(finetune.py's results.json), averaged into one point, their range drawn as an error bar.
With x = log10(hours), the n points are fitted by ordinary least squares,

    accuracy = a + b x,  b = sum((x - x̄)(y - ȳ)) / Sxx,  Sxx = sum((x - x̄)²),  a = ȳ - b x̄,

so b is the gain in accuracy (percentage points) per tenfold more video.
At x0 the fitted mean has the t-interval

    ŷ(x0) ± t_{0.975, n-2} · s · sqrt(1/n + (x0 - x̄)² / Sxx),   s² = RSS / (n - 2),

which widens the further x0 is from the data; --prediction_band adds the interval for one new run
at x0 (1 + 1/n + ... under the root). With 4 points there are only 2 degrees of freedom (t = 4.30):
the bands are honestly wide. Outputs in --out: scaling.json (a, b, R², the points, the
extrapolations with their intervals), scaling.png.
"""

import argparse
import csv
import glob
import json
import math
import os

import numpy as np
from scipy.stats import t as student_t

from figures import plt  # figures.py has chosen matplotlib's file-only backend
from runs import check_out_folder
from training import ArgumentParser, fail, open_fraction, positive_float, run_script


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--point", action="append", default=[], metavar="HOURS=GLOB",
                   help="a pretraining size and its finetuning results (a glob: the seeds); "
                   "repeat per size, and the same HOURS twice adds files")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="points as rows 'hours,accuracy' (accuracy in %%; "
                   "a repeated hours is another seed), instead of or besides --point")
    p.add_argument("--extra", action="append", default=[], metavar="LABEL@HOURS=GLOB",
                   help="another model drawn as one labelled point, not fitted "
                   "(e.g. 'Kinetics-200h@200=runs/ft_k200/results.json')")
    p.add_argument("--metric", default="top5",
                   help="the score in results.json: top1, top5, subset.top5, ...")
    p.add_argument("--which", default="best", choices=("best", "last"),
                   help="the selected or the last model")
    p.add_argument("--multiples", type=positive_float, nargs="+", default=[10, 100],
                   help="extrapolate to these multiples "
                   "of the largest size")
    p.add_argument("--level", type=open_fraction, default=0.95, help="coverage of the intervals")
    p.add_argument("--prediction_band", action="store_true",
                   help="also the prediction interval (for one new run)")
    p.add_argument("--title", default=None,
                   help="the figure's title; if none, the task and shots of the results")
    p.add_argument("--out", default="runs/scaling", help="folder for scaling.json and scaling.png")
    return p.parse_args(argv)

# -----------------------------------------------------------------------------
# the fit


def fit_log_linear(hours, accuracy) -> dict:
    """Least squares of accuracy = a + b log10(hours),
    with what the intervals need (s, x̄, Sxx, n)."""
    x, y = np.log10(np.asarray(hours, dtype=float)), np.asarray(accuracy, dtype=float)
    n = len(x)
    if n < 3 or len(set(x)) < 2:
        raise ValueError(f"the fit needs 3 or more points at 2 or more sizes (n - 2 >= 1), "
                         f"got {n}")
    x_mean, y_mean = x.mean(), y.mean()
    sxx = np.sum((x - x_mean) ** 2)
    b = np.sum((x - x_mean) * (y - y_mean)) / sxx
    a = y_mean - b * x_mean
    rss, tss = np.sum((y - a - b * x) ** 2), np.sum((y - y_mean) ** 2)
    return dict(a=float(a), b=float(b), r2=float(1 - rss / tss) if tss > 0 else 1.0, n=n,
                s=float(math.sqrt(rss / (n - 2))), x_mean=float(x_mean), sxx=float(sxx))


def interval(fit, hours, level=0.95, prediction=False):
    """(ŷ, low, high) at these hours: the t-interval of the fitted mean, or with prediction=True of
    one new observation (its own noise s² added)."""
    x0 = np.log10(np.asarray(hours, dtype=float))
    mean = fit["a"] + fit["b"] * x0
    t = student_t.ppf(0.5 + level / 2, fit["n"] - 2)
    se = fit["s"] * np.sqrt(float(prediction) + 1 / fit["n"]
                            + (x0 - fit["x_mean"]) ** 2 / fit["sxx"])
    return mean, mean - t * se, mean + t * se


def trend_at(fit, hours, level, with_prediction_interval=False) -> dict:
    """The line at these hours, its confidence interval and maybe its prediction interval,
    as plain floats."""
    mean, low, high = interval(fit, hours, level)
    trend = dict(prediction=float(mean), confidence_interval=[float(low), float(high)])
    if with_prediction_interval:
        band = interval(fit, hours, level, prediction=True)[1:]
        trend["prediction_interval"] = [float(v) for v in band]
    return trend


def in_words(trend, level):
    """'40.9% (95% confidence interval 39.6-42.1)', for the table."""
    ci, pi = trend["confidence_interval"], trend.get("prediction_interval")
    return (f"{trend['prediction']:.1f}% ({level:.0%} confidence interval {ci[0]:.1f}-{ci[1]:.1f}" +
            (f", prediction interval {pi[0]:.1f}-{pi[1]:.1f})" if pi else ")"))

# -----------------------------------------------------------------------------
# reading the results


def hours_of(text, flag):
    try:
        if 0 < float(text) < math.inf:
            return float(text)
    except ValueError:
        pass
    fail(f"{flag}: {text!r} is not a positive number of hours")


def read_results(pattern, flag, metric, which):
    """[(accuracy in %, path, (task, shots))] of every results.json the glob matches."""
    paths = sorted(glob.glob(pattern)) or ([pattern] if os.path.isfile(pattern) else [])
    if not paths:
        fail(f"{flag}: {pattern!r} matches no file")
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                value = result = json.load(f)
            for key in [which, *metric.split(".")]:
                value = value[key]
        except (OSError, ValueError) as e:                         # unreadable, or not JSON
            fail(f"{flag}: cannot read {path} ({e})")
        except (KeyError, TypeError):
            fail(f"{flag}: {path} has no {which}.{metric} "
                 "(finetune.py's results.json has best/last top1, top5)")
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            fail(f"{flag}: {path}: {which}.{metric} = {value!r}, "
                 "expected a fraction in [0, 1]")
        rows.append((100 * value, path, (result.get("task"), result.get("shots"))))
    return rows


def read_csv(path):
    """{hours: [accuracy in %, ...]} from rows 'hours,accuracy';
    a header, blank lines and # comments are skipped."""
    if not os.path.isfile(path):
        fail(f"--csv: no file at {path}")
    points = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), 1):
            if (not row or row[0].strip().startswith("#")
                    or (line == 1 and not row[0].strip()[:1].isdigit())):
                continue
            try:
                hours, accuracy = float(row[0]), float(row[1])
            except (ValueError, IndexError):
                fail(f"--csv {path}, line {line}: expected 'hours,accuracy' (accuracy in %), "
                     f"got {','.join(row)!r}")
            if not hours > 0 or not 0 <= accuracy <= 100:
                fail(f"--csv {path}, line {line}: hours must be > 0 and accuracy a percentage, "
                     f"got {hours}, {accuracy}")
            points.setdefault(hours, []).append(accuracy)
    return points


def summary(hours, seeds, files=(), label=None):
    """One pretraining run: the mean over its finetuning seeds and their spread."""
    point = dict(hours=hours, accuracy=float(np.mean(seeds)), seeds=[float(v) for v in seeds],
                 files=list(files))
    return dict(label=label, **point) if label else point

# -----------------------------------------------------------------------------
# the figure


def draw(fit, points, extras, extrapolations, path, args, title):
    hours = np.array([p["hours"] for p in points])
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    shown = [e["hours"] for e in points + extras + extrapolations]
    grid = np.logspace(math.log10(min(shown)) - 0.1, math.log10(max(shown)) + 0.1, 200)
    mean, lo, hi = interval(fit, grid, args.level)
    if args.prediction_band:
        ax.fill_between(grid, *interval(fit, grid, args.level, prediction=True)[1:], color="C0",
                        alpha=0.1, lw=0, label=f"{args.level:.0%} prediction band")
    ax.fill_between(grid, lo, hi, color="C0", alpha=0.25, lw=0,
                    label=f"{args.level:.0%} confidence band")
    ax.plot(grid, mean, color="C0", lw=1.5, ls="--")             # dashed where it extrapolates,
    inside = (grid >= hours.min()) & (grid <= hours.max())       # solid over the data
    ax.plot(grid[inside], mean[inside], color="C0", lw=1.5,
            label=f"{fit['a']:.1f} + {fit['b']:.2f}·log10(hours), R² {fit['r2']:.2f}")
    # (2, points): down to the lowest seed, up to the highest
    spread = np.array([[p["accuracy"] - min(p["seeds"]), max(p["seeds"]) - p["accuracy"]]
                       for p in points]).T
    ax.errorbar(hours, [p["accuracy"] for p in points], yerr=spread, fmt="o", color="k", ms=5,
                capsize=3, label="pretraining runs (seeds' range)")
    for e in extrapolations:                                # the band around them is their interval
        ax.plot(e["hours"], e["prediction"], "o", mfc="white", color="C0")
        ax.annotate(f"{e['multiple']:g}x: {e['prediction']:.1f}%", (e["hours"], e["prediction"]),
                    fontsize=7, xytext=(-6, 6), textcoords="offset points", ha="right")
    for i, e in enumerate(extras):
        ax.plot(e["hours"], e["accuracy"], ls="none", marker="sxD^v"[i % 5], ms=7,
                color=f"C{i + 1}", label=e["label"])
    ax.set(xscale="log", xlabel="hours of pretraining video", title=title,
           ylabel=f"{args.metric.replace('top', 'top-')} accuracy (%), {args.which} model")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)

# -----------------------------------------------------------------------------
# the run


def main(args):
    if not args.point and not args.csv:
        fail("give the pretraining sizes: --point HOURS=GLOB (3 or more sizes) or --csv FILE")
    check_out_folder(args.out)
    by_hours = read_csv(args.csv) if args.csv else {}     # hours: [accuracy in %, one per seed]
    files, kinds = {}, {}                                 # hours: [paths]; (task, shots): a path
    for spec in args.point:
        text, _, pattern = spec.partition("=")
        hours = hours_of(text, f"--point {spec}")
        rows = read_results(pattern, f"--point {spec}", args.metric, args.which)
        for accuracy, path, kind in rows:
            by_hours.setdefault(hours, []).append(accuracy)
            files.setdefault(hours, []).append(path)
            kinds.setdefault(kind, path)
    extras = []
    for spec in args.extra:
        head, _, pattern = spec.partition("=")
        label, at, text = head.rpartition("@")
        if not at or not label:
            fail(f"--extra {spec}: expected LABEL@HOURS=GLOB, "
                 "e.g. 'Kinetics-200h@200=runs/ft_k200/results.json'")
        rows = read_results(pattern, f"--extra {spec}", args.metric, args.which)
        kinds.update({kind: path for _, path, kind in rows if kind not in kinds})
        extras.append(summary(hours_of(text, f"--extra {spec}"), [r[0] for r in rows],
                              [r[1] for r in rows], label))
    if len(kinds) > 1:                                    # one line is one task at one k
        (a, first), (b, second) = list(kinds.items())[:2]
        fail(f"the results mix tasks or shots: {first} is {a[0]} {a[1]}-shot, "
             f"{second} is {b[0]} {b[1]}-shot")
    points = [summary(h, by_hours[h], files.get(h, ())) for h in sorted(by_hours)]
    if len(points) < 3:
        fail(f"the fit needs at least 3 pretraining sizes (n - 2 >= 1 degrees of freedom), "
             f"got {len(points)}")
    fit = fit_log_linear([p["hours"] for p in points], [p["accuracy"] for p in points])

    largest = points[-1]["hours"]
    extrapolations = [dict(multiple=m, hours=largest * m,
                           **trend_at(fit, largest * m, args.level, args.prediction_band))
                      for m in args.multiples]
    for e in extras:                          # where the line puts a model of that many hours
        e["trend"] = trend_at(fit, e["hours"], args.level, args.prediction_band)

    task, shots = next(iter(kinds), (None, None))
    title = args.title or (f"{task} {shots}-shot" if task else "data scaling")
    result = dict(metric=args.metric, which=args.which, unit="percent", task=task, shots=shots,
                  level=args.level, **{k: fit[k] for k in ("a", "b", "r2", "n", "s")},
                  points=points, extrapolations=extrapolations, extras=extras)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scaling.json"), "w") as f:
        json.dump(result, f, indent=1)
    draw(fit, points, extras, extrapolations, os.path.join(args.out, "scaling.png"), args, title)

    print(f"{title}, {args.metric} ({args.which} model), %: "
          f"accuracy = {fit['a']:.2f} + {fit['b']:.2f}·log10(hours), "
          f"R² {fit['r2']:.3f}, n {fit['n']}")
    for p in points:
        seeds = ", ".join(f"{v:.1f}" for v in p["seeds"])
        print(f"{p['hours']:>10g} h: {p['accuracy']:5.1f}  (seeds {seeds})")
    for e in extrapolations:
        print(f"{e['multiple']:>9g}x {e['hours']:g} h: the line predicts {in_words(e, args.level)}")
    for e in extras:
        print(f"{e['label']:>10} {e['hours']:g} h: {e['accuracy']:.1f}% measured; the line: "
              f"{in_words(e['trend'], args.level)}")
    print(f"outputs: {os.path.join(args.out, 'scaling.json')}, "
          f"{os.path.join(args.out, 'scaling.png')}")
    return result


if __name__ == "__main__":
    run_script(main, parse_args)
