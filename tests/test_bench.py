import json
import os
import subprocess
import sys

import pytest

from bench import bench_e2e, bench_io, bench_step
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


STEP_FIELDS = {"bench", "device", "preset", "clip", "tokens", "mask_ratio", "batch", "precision", "compile", "config",
               "train_gflop_per_clip", "matmul_peak_tflops", "ours"}
MODEL_FIELDS = {"params", "forward_s", "backward_s", "optimizer_s", "step_s", "clips_per_s", "tokens_per_s", "mfu",
                "peak_memory_gb"}


def test_bench_step_times_a_tiny_training_step_and_appends_a_json_line(tmp_path):
    out = tmp_path / "bench.jsonl"
    out.write_text('{"an": "earlier result"}\n')                         # appended to, not overwritten
    result = subprocess.run([sys.executable, "bench.py", "step", "--preset", "toy", "--img_size", "64", "--batch",
                             "4", "--steps", "2", "--warmup", "1", "--no_compare", "--profile", "5",
                             "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and lines[0] == {"an": "earlier result"}
    assert STEP_FIELDS <= set(lines[1]) and MODEL_FIELDS <= set(lines[1]["ours"])
    ours = lines[1]["ours"]
    assert ours["clips_per_s"] > 0 and 0 < ours["mfu"] <= 1 and ours["params"] == 993_408 + 209_920
    assert ours["step_s"] == pytest.approx(4 / ours["clips_per_s"])
    assert ours["tokens_per_s"] == pytest.approx(128 * ours["clips_per_s"])
    assert lines[1]["train_gflop_per_clip"] == pytest.approx(training_flops(make_config("toy")) / 1e9)
    assert "ours" in result.stdout and "MFU" in result.stdout
    assert "Self CPU" in result.stdout and "aten::" in result.stdout     # --profile: the costliest operators


def test_transformers_videomae_is_built_to_our_size():
    pytest.importorskip("transformers")                                  # a benchmark-only extra
    result = bench_step("toy", img_size=64, batch=2, steps=1, warmup=0)
    assert result["param_difference"] < 0.01 and result["speedup_vs_transformers"] > 0
    config = result["transformers"]["config"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["tubelet_size"], config["patch_size"]) == (
        128, 4, 2, 16)


@pytest.mark.slow
def test_bench_e2e_runs_the_real_loop_beside_the_step(toy_world):
    result = bench_e2e(["--setting", "toy", "--data_root", str(toy_world[0]), "--workers", "0"], steps=12, log_every=4)
    assert result["batch"] == 32 and result["loop_clips_per_s"] > 0 and result["step_clips_per_s"] > 0
    assert 0.2 < result["loop_over_step"] < 1.5          # the loop decodes video as well: not faster by much
