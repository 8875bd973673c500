"""
What `python bench.py gpu` (bench_gpu.py) leaves behind: its JSON file, rewritten after every
measurement so that a run stopped midway keeps what it measured, and the table it prints last.
"""

import json
import os


def write_json(path, report):
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)                       # a reader never sees half a file


def one_line(error):
    """An exception as the one line the report keeps of it."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def measured(r):
    if "skipped" in r or "error" in r:
        return r.get("skipped") or f"error: {r['error']}"
    if r.get("out_of_memory"):
        return "out of memory"
    return (f"{r['clips_per_s']:,.1f} clips/s, MFU {r['mfu']:.1%}, "
            f"peak {r['peak_memory_gb']:.1f} GB, step {1e3 * r['step_s']:.0f} ms")


def correctness_rows(part):
    """Part 1's rows: the checks, the losses, the finetuning."""
    failed = [k for k, passed in part["checks"].items() if not passed]
    verdict = ("FAILED: " + ", ".join(failed) if failed
               else "all pass: " + ", ".join(part["checks"]))
    rows = [(f"{len(part['checks'])} checks (steps {part['steps'][0]}, "
             f"resumed to {part['steps'][1]})", verdict)]
    if "fixed_batch_loss" in part:
        f, b = part["fixed_batch_loss"], part["bf16_vs_fp32"]
        rows.append(("fixed batch's loss: initial -> trained",
                     f"{f['initial']:.4f} -> {f['trained']:.4f}"))
        rows.append(("bf16 vs fp32 loss",
                     f"{b['bf16']:.5f} vs {b['fp32']:.5f}, {b['relative']:.1e} apart"))
    if "finetune" in part:
        ft = part["finetune"]
        rows.append(("finetune top-1, one epoch", f"{ft['top1']:.1%} of {ft['num_val']} clips"))
    return rows


def vit_h_rows(part):
    """Part 2's rows: the batch found, each run, ours / transformers'."""
    search = part["batch_search"]
    room = f" in {search['memory_limit_gb']:.0f} GB" if search["memory_limit_gb"] else ""
    tried = ", ".join(str(p["batch"]) for p in search["probes"])
    rows = [(f"{part['preset']} {part['clip'][0]}x{part['clip'][1]}^2, mask 0.9",
             f"batch {part['batch']}: the largest of {tried} that fits{room}")]
    rows += [(name, measured(r)) for name, r in part["runs"].items()]
    if part["transformers"] != "installed":
        rows.append(("transformers", part["transformers"]))
    rows += [(f"ours / transformers, {mode}",
              f"{ratio:.2f}x" if ratio else "not compared (sizes differ > 1%)")
             for mode, ratio in part.get("ours_over_transformers", {}).items()]
    return rows


def summary_rows(n, part):
    """(what, result) rows of one part's figures."""
    rows = []
    if n == 1 and part.get("checks"):
        rows = correctness_rows(part)
    elif n == 2 and "batch" in part:
        rows = vit_h_rows(part)
    elif n == 3:
        for name, s in part.get("searches", {}).items():
            fit = (f", {s['clips_per_s']:,.1f} clips/s, peak {s['peak_memory_gb']:.1f} GB"
                   if s["largest_batch"] else "")
            rows.append((f"largest batch, {name}",
                         f"{s['largest_batch']}{fit}; stopped: {s['stopped']}"))
    elif n == 4 and "loop_over_step" in part:
        rows.append((f"loop / step alone ({part['workers']} workers)",
                     f"{part['loop_over_step']:.0%}: {part['loop_clips_per_s']:,.1f} vs "
                     f"{part['step_clips_per_s']:,.1f} clips/s"))
    elif n == 5 and "clips_per_s" in part:
        rows.append((f"toy {part['clip'][0]}x{part['clip'][1]}^2, batch {part['batch']}",
                     measured(part)))
    return rows


def print_summary(report, out):
    title = "dry run on the CPU, tiny sizes" if report["dry_run"] else "the paper-scale run"
    print(f"\n== bench.py gpu ({title}): {report.get('device') or '?'}, torch {report['torch']}; "
          f"{report['seconds'] / 60:.1f} of {report['budget_s'] / 60:.1f} minutes; "
          f"figures in {out} ==")
    if "setup" in report:
        s = report["setup"]
        print(f"setup: toy world (scale {s['world_scale']}), child S prepared at "
              f"{s['short_side']} px: {s['status']} ({s['seconds']:.0f} s)")
    print(f"{'part':<5}{'what':<46}result")
    for key, part in report["parts"].items():
        print(f"{key:<5}{part['name']:<46}{part['status']} ({part.get('seconds', 0):.0f} s)")
        for what, result in summary_rows(int(key), part):
            print(f"{'':<5}{what:<46}{result}")
