import json
import os
import re
import subprocess
import sys

import pytest

from toy import miniature

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOURS = {"S": 4.4, "SAY": 6.7, "K": 1.4, "Kmatched": 0.44, "SImg": 4.4, "S10": 0.44, "S1": 0.044, "S0.1": 0.0044}


def test_the_study_has_every_condition_and_each_job_comes_after_what_it_needs():
    args = miniature.parse_args(["--seeds", "3", "--out", "o", "--world", "w"])
    jobs = miniature.study(args, HOURS, 0.3125)
    names = [j.name for j in jobs]
    assert len(names) == len(set(names))
    for i, job in enumerate(jobs):
        assert all(d in names[:i] for d in job.deps), job.name             # the runner relies on this order
    finetunes = [j.info for j in jobs if j.info.get("kind") == "finetune"]
    result1 = {(f["cond"], f["task"], f["shots"]) for f in finetunes if f["task"] != "imagenet"}
    for cond in ("S", "SAY", "K", "Kmatched", "SImg", "scratch"):
        for task in ("ssv2", "kinetics"):
            for shots in (10, 50):
                assert (cond, task, shots) in result1
                assert sum(f["cond"] == cond and f["task"] == task and f["shots"] == shots
                           for f in finetunes) == 3                        # 3 seeds each
    assert {("S0.1", "kinetics", 10), ("S1", "kinetics", 10), ("S10", "kinetics", 10)} <= result1
    assert sum(f["task"] == "imagenet" for f in finetunes) == 6          # S-Vid and S-Img, 3 seeds
    assert len([j for j in jobs if j.info.get("kind") == "pretrain"]) == 8
    # every pretraining runs the same number of steps; the matched Kinetics-like run gets its fraction
    pretrain_lines = [j.line for j in jobs if j.info.get("kind") == "pretrain"]
    assert all("--steps 350" in line for line in pretrain_lines)
    assert any("--data kinetics" in line and "--data_frac 0.3125" in line for line in pretrain_lines)
    # the image MAE is the paper's baseline: single frames, t_patch 1, mask 0.8
    assert any("--frames 1 --t_patch 1 --mask_ratio 0.8" in line for line in pretrain_lines)


@pytest.mark.parametrize("tiny", [False, True])
def test_every_job_s_flags_parse_with_its_script(tiny):
    import eval_ood, finetune, interpolate, pretrain, scaling
    scripts = {"pretrain.py": pretrain, "finetune.py": finetune, "eval_ood.py": eval_ood,
               "interpolate.py": interpolate, "scaling.py": scaling}
    args = miniature.parse_args(["--out", "o", "--world", "w"] + (["--tiny"] if tiny else []))
    for job in miniature.study(args, HOURS, 0.3125):
        parsed = scripts[job.command[0]].parse_args(job.command[1:])
        assert getattr(parsed, "out") == os.path.join("o", job.name)


def test_bad_flags_fail_with_one_line():
    with pytest.raises(SystemExit):
        miniature.parse_args(["--shots", "10,50", "--epochs", "10=5"])
    result = subprocess.run([sys.executable, "-m", "toy.miniature", "--shots", "ten"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "--shots" in result.stderr


def test_the_runner_skips_finished_jobs_and_reruns_a_changed_one_and_what_depends_on_it(tmp_path):
    script = tmp_path / "step.py"                   # a job that records that it ran
    script.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n")
    ran = tmp_path / "ran.txt"
    args = miniature.parse_args(["--out", str(tmp_path / "out"), "--jobs", "2"])

    def jobs(first="a"):
        return [miniature.Job("first", [str(script), str(ran), first]),
                miniature.Job("second", [str(script), str(ran), "b"], ("first",)),
                miniature.Job("apart", [str(script), str(ran), "c"])]

    miniature.run_jobs(jobs(), args)
    assert sorted(ran.read_text().split()) == ["a", "b", "c"]
    miniature.run_jobs(jobs(), args)                                    # all done: nothing runs
    assert sorted(ran.read_text().split()) == ["a", "b", "c"]
    miniature.run_jobs(jobs(first="A"), args)                           # a changed command, and its dependent
    assert sorted(ran.read_text().split()) == ["A", "a", "b", "b", "c"]
    state = json.loads((tmp_path / "out" / "jobs.json").read_text())
    assert all(s["status"] == "done" for s in state.values()) and "A" in state["first"]["command"]
    (tmp_path / "out" / "first").mkdir()                               # a run folder of a job the study drops
    failing = [miniature.Job("broken", [str(script)])]                  # exits 1: IndexError
    with pytest.raises(SystemExit):
        miniature.run_jobs(failing, args)
    state = json.loads((tmp_path / "out" / "jobs.json").read_text())
    assert state == {"broken": {"command": failing[0].line, "status": "failed", "exit": 1}}
    assert not (tmp_path / "out" / "first").exists()


@pytest.mark.slow
def test_the_whole_study_runs_at_a_tiny_size_and_its_report_holds_the_runs_numbers(toy_world, tmp_path):
    world, out, report = str(toy_world[0]), tmp_path / "runs", tmp_path / "report"
    command = [sys.executable, "-m", "toy.miniature", "--tiny", "--world", world, "--out", str(out),
               "--report", str(report)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (report / "REPORT.md").read_text()
    for heading in ("## Result 1", "## Result 2", "## Result 3", "## Result 4", "## Result 5"):
        assert heading in text
    for figure in ("result1.png", "tsne.png", "scaling.png", "interpolation.png", "ood.png", "attention.png",
                   "reconstruction_S.png"):
        assert (report / figure).stat().st_size > 1000, figure
        assert f"]({figure})" in text
    verdicts = re.findall(r"\*\*(Reproduces|Partly reproduces|Does not reproduce|No verdict \(one seed\))\.\*\*", text)
    assert len(verdicts) == 8                                           # one for each finding the report tests
    # the table's number is the run's own: S, SSV2-like 10-shot, top-1 of its last model
    run = json.loads((out / "ft_S_ssv2_10_s0" / "results.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("| S |"))
    assert re.search(rf"\| {100 * run['last']['top1']:.1f} ± 0\.0 / {100 * run['last']['top5']:.1f} ± 0\.0 \|", row)
    state = json.loads((out / "jobs.json").read_text())
    assert len(state) == 29 and all(s["status"] == "done" for s in state.values())
    # a second invocation finds every job done and only rewrites the report
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and json.loads((out / "jobs.json").read_text()) == state
    timing = json.loads((out / "timing.json").read_text())["invocations"]
    assert len(timing) == 1 and timing[0]["jobs_run"] == len(state) and timing[0]["seconds"] > 0
