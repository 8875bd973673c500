import ast
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import bench_training
from bench import bench_io
from bench_gpu import deadlines, run_command
from bench_training import bench_e2e, bench_step, largest_batch
from model import make_config, training_flops
from synthetic import write_indexed_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_io_measures_raw_and_prepared_reads(tmp_path):
    (tmp_path / "videos" / "S").mkdir(parents=True)
    write_indexed_video(tmp_path / "videos" / "S" / "a.mp4", 150, 30, size=48)
    write_indexed_video(tmp_path / "videos" / "b.webm", 60, 12, size=48)
    result = bench_io(str(tmp_path / "videos"), seconds=0.2, workers=1)
    assert [r["file"] for r in result["files"]] == ["b.webm", "S/a.mp4"]
    assert all(r["raw_clips_per_s"] > 0 and r["prepared_clips_per_s"] > 0 for r in result["files"])
    assert all(ms > 0 for ms in result["augment_cpu_ms_per_clip"].values())


STEP_FIELDS = {"bench", "device", "preset", "clip", "tokens", "mask_ratio", "batch", "precision",
               "compile", "config", "train_gflop_per_clip", "matmul_peak_tflops", "ours"}
MODEL_FIELDS = {"params", "forward_s", "backward_s", "optimizer_s", "step_s", "clips_per_s",
                "tokens_per_s", "mfu", "peak_memory_gb"}


def test_bench_step_times_a_tiny_training_step_and_appends_a_json_line(tmp_path):
    out = tmp_path / "bench.jsonl"
    out.write_text('{"an": "earlier result"}\n')              # appended to, not overwritten
    result = subprocess.run([sys.executable, "bench.py", "step", "--preset", "toy", "--img_size",
                             "64", "--batch", "4", "--steps", "2", "--warmup", "1", "--no_compare",
                             "--profile", "5", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and lines[0] == {"an": "earlier result"}
    assert STEP_FIELDS <= set(lines[1]) and MODEL_FIELDS <= set(lines[1]["ours"])
    ours = lines[1]["ours"]
    assert ours["clips_per_s"] > 0 and 0 < ours["mfu"] <= 1 and ours["params"] == 993_408 + 209_920
    assert ours["step_s"] == pytest.approx(4 / ours["clips_per_s"])
    assert ours["tokens_per_s"] == pytest.approx(128 * ours["clips_per_s"])
    flops = training_flops(make_config("toy"))
    assert lines[1]["train_gflop_per_clip"] == pytest.approx(flops / 1e9)
    assert "ours" in result.stdout and "MFU" in result.stdout
    assert "Self CPU" in result.stdout and "aten::" in result.stdout  # --profile: top operators


def test_transformers_videomae_is_built_to_our_size():
    pytest.importorskip("transformers")                                  # a benchmark-only extra
    result = bench_step("toy", img_size=64, batch=2, steps=1, warmup=0)
    assert result["param_difference"] < 0.01 and result["speedup_vs_transformers"] > 0
    config = result["transformers"]["config"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["tubelet_size"],
            config["patch_size"]) == (128, 4, 2, 16)


@pytest.mark.slow
def test_bench_e2e_runs_the_real_loop_beside_the_step(toy_world):
    result = bench_e2e(["--setting", "toy", "--data_root", str(toy_world[0]), "--workers", "0"],
                       steps=12, log_every=4)
    assert result["batch"] == 32
    assert result["loop_clips_per_s"] > 0 and result["step_clips_per_s"] > 0
    assert 0.2 < result["loop_over_step"] < 1.5    # the loop decodes video as well: not much faster


def test_gpu_budget_passes_unused_time_forward_and_keeps_later_shares():
    ends = deadlines(100.0, 600.0, ["setup", 1, 2, 3, 4, 5])
    assert list(ends) == ["setup", 1, 2, 3, 4, 5] and ends[5] == pytest.approx(700.0)
    assert all(a < b for a, b in zip(list(ends.values()), list(ends.values())[1:]))
    assert deadlines(0.0, 60.0, [3]) == {3: pytest.approx(60.0)}  # one part alone: the whole budget


def test_largest_batch_stops_at_the_first_batch_that_does_not_fit(monkeypatch):
    real_step = bench_training.train_step

    def small_memory(model, optimizer, forward, video, *args):    # a GPU with room for 2 clips
        if video.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(model, optimizer, forward, video, *args)
    monkeypatch.setattr(bench_training, "train_step", small_memory)
    cfg = make_config("toy")
    probes, stop = largest_batch(cfg, 0.9, torch.device("cpu"), (1, 2, 4, 8),
                                 time.monotonic() + 600)
    assert [(p["batch"], p["fits"]) for p in probes] == [(1, True), (2, True), (4, False)]
    assert stop == "out of memory at batch 4" and probes[1]["clips_per_s"] > 0
    probes, stop = largest_batch(cfg, 0.9, torch.device("cpu"), (1, 2), time.monotonic() - 1)
    assert probes == [] and stop == "no time left for batch 1"


def test_run_command_stops_a_command_that_runs_past_its_time():
    start = time.monotonic()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    assert run_command(sleeper, 1, own_group=True) is None
    assert time.monotonic() - start < 30
    assert run_command([sys.executable, "-c", "raise SystemExit(3)"], 30) == 3


def test_bench_gpu_refuses_parts_it_does_not_have(tmp_path):
    result = subprocess.run([sys.executable, "bench.py", "gpu", "--parts", "2,7",
                             "--out", str(tmp_path / "g.json")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --parts takes numbers from 1 to 5, comma-separated, and --budget_minutes a "
        "positive number (got '2,7' and 8.5)"]
    assert not (tmp_path / "g.json").exists()


@pytest.mark.slow
def test_bench_gpu_dry_run_runs_every_part_and_passes_the_cuda_checks(tmp_path):
    """`bench.py gpu --dry-run`, as a user runs it: the GPU sequence at tiny sizes on the CPU
    (about 80 s on 2 cores), so that the command cannot rot while no GPU runs it."""
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, "bench.py", "gpu", "--dry-run", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["setup"]["status"] == "ok"
    assert list(report["parts"]) == ["1", "2", "3", "4", "5"]
    assert all(part["status"] == "ok" and part["seconds"] > 0 for part in report["parts"].values())
    checks = report["parts"]["1"]["checks"]
    assert set(checks) == {"checkpoint_written", "resumed", "loss_finite", "loss_falling",
                           "bf16_matches_fp32", "finetune_results"} and all(checks.values())
    part1 = report["parts"]["1"]
    assert part1["bf16_vs_fp32"]["relative"] <= 1e-2 and part1["finetune"]["top1"] >= 0
    assert part1["fixed_batch_loss"]["trained"] < part1["fixed_batch_loss"]["initial"]
    part2 = report["parts"]["2"]
    assert part2["batch"] == max(p["batch"] for p in part2["batch_search"]["probes"] if p["fits"])
    assert part2["compile_backend"] == "aot_eager"
    assert {"ours eager", "ours compiled"} <= set(part2["runs"])
    assert all(MODEL_FIELDS <= set(part2["runs"][name]) for name in ("ours eager", "ours compiled"))
    for search in report["parts"]["3"]["searches"].values():
        assert search["largest_batch"] >= 1 and search["probes"][0]["fits"]
    assert set(report["parts"]["3"]["searches"]) == {"plain", "activation checkpointing"}
    part4 = report["parts"]["4"]
    assert part4["loop_clips_per_s"] > 0 and part4["step_clips_per_s"] > 0
    assert part4["loop_over_step"] > 0
    assert MODEL_FIELDS <= set(report["parts"]["5"]) and report["parts"]["5"]["batch"] == 8
    table = result.stdout.strip().splitlines()
    assert table[-1].strip().startswith("toy 16x64^2, batch 8")
    assert "5    toy preset at GPU scale" in table[-2]


def project_imports():
    """{module: the project's modules it imports} for the top-level .py files and the toy
    package, read from the source (imports inside functions count too)."""
    files = {name[:-3]: os.path.join(ROOT, name) for name in os.listdir(ROOT)
             if name.endswith(".py")}
    toy = os.path.join(ROOT, "toy")
    files.update({"toy" if name == "__init__.py" else f"toy.{name[:-3]}": os.path.join(toy, name)
                  for name in os.listdir(toy) if name.endswith(".py")})
    graph = {}
    for module, path in files.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = {name for name in names if name in files and name != module}
    return graph


def test_the_project_has_no_import_cycle_and_no_chapter_imports_a_benchmark():
    graph = project_imports()
    assert {"bench", "bench_gpu", "bench_training", "bench_gpu_report"} <= set(graph)
    state = {}                                   # module -> "open" while on the path, then "done"

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(path + [module, dep])
            if dep not in state:
                visit(dep, path + [module])
        state[module] = "done"
    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    for module, deps in graph.items():
        if not module.startswith("bench"):
            assert not {d for d in deps if d.startswith("bench")}, f"{module} imports a benchmark"


@pytest.mark.parametrize("module", ["bench", "bench_training", "bench_gpu", "bench_gpu_report"])
def test_each_benchmark_module_imports_first_in_a_fresh_interpreter(module):
    """A cycle would show here as a partly initialised module, whichever one comes first."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
