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
    # Result 3 on the paper's 50-shot line; S-10% also on the Kinetics-like 10 shots, for the length-matched pair
    assert {("S0.1", "ssv2", 50), ("S1", "ssv2", 50), ("S10", "ssv2", 50), ("S10", "kinetics", 10)} <= result1
    by_name = {j.name: j for j in jobs}
    scaling = by_name["scaling"]
    assert all(f"ft_{c}_ssv2_50_s*" in " ".join(scaling.command) for c in ("S0.1", "S1", "S10", "S"))
    assert all(f"ft_{c}_ssv2_50_s{k}" in scaling.deps for c in ("S0.1", "S1", "S10", "S") for k in range(3))
    assert sum(f["task"] == "imagenet" for f in finetunes) == 6          # S-Vid and S-Img, 3 seeds
    # by default the study pretrains nothing: it starts from the shipped models, one file per condition
    assert not [j for j in jobs if j.info.get("kind") == "pretrain"]
    inits = {j.command[j.command.index("--init") + 1] for j in jobs if "--init" in j.command}
    assert inits == {"scratch"} | {os.path.join("assets", "toy", f"{c}.pt") for c in HOURS}
    assert os.path.join("assets", "toy", "Scenter.pt") in by_name["interpolate"].command      # Result 4
    assert os.path.join("assets", "toy", "S.pt") in by_name["tsne"].command                   # Result 2's 0-shot


def test_with_pretrain_the_study_pretrains_every_condition_first_and_equally():
    args = miniature.parse_args(["--pretrain", "--out", "o", "--world", "w"])
    jobs = miniature.study(args, HOURS, 0.3125)
    pretraining = {j.info["cond"]: j for j in jobs if j.info.get("kind") == "pretrain"}
    assert set(pretraining) == set(HOURS) | {"Scenter"} == set(miniature.PRETRAIN_ORDER)
    assert [j.info.get("kind") for j in jobs[:9]] == ["pretrain"] * 9
    # every condition the same number of steps; S continued on the center mask for half as many, from S's run
    lines = {cond: job.line for cond, job in pretraining.items()}
    assert all(f"--steps {miniature.PRETRAIN_STEPS} " in line for c, line in lines.items() if c != "Scenter")
    assert f"--steps {miniature.PRETRAIN_STEPS // 2} " in lines["Scenter"] and pretraining["Scenter"].deps == ("pt_S",)
    assert "--init o/pt_S/checkpoint.pt --mask_type center --mask_ratio 0.25" in lines["Scenter"]
    assert "--data kinetics" in lines["Kmatched"] and "--data_frac 0.3125" in lines["Kmatched"]
    # the image MAE is the paper's baseline: single frames, t_patch 1, mask 0.8
    assert "--frames 1 --t_patch 1 --mask_ratio 0.8" in lines["SImg"]
    by_name = {j.name: j for j in jobs}
    assert "o/pt_Scenter/checkpoint.pt" in by_name["interpolate"].command and by_name["interpolate"].deps == (
        "pt_Scenter",)
    assert by_name["ft_Kmatched_ssv2_10_s0"].deps == ("pt_Kmatched",)


def test_without_the_shipped_models_the_study_says_how_to_make_them_in_one_line(toy_world, tmp_path):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "S.pt").write_bytes(b"")                                 # only one of the nine is there
    result = subprocess.run([sys.executable, "-m", "toy.miniature", "--world", str(toy_world[0]), "--assets",
                             str(assets), "--out", str(tmp_path / "o"), "--report", str(tmp_path / "r")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "Kmatched.pt" in result.stderr and "S.pt," not in result.stderr
    assert "python -m toy.assets --conditions Kmatched," in result.stderr and "--pretrain" in result.stderr


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
    miniature.run_jobs(jobs()[2:], args, prune=False)                  # a subset: the others' runs stay
    assert set(json.loads((tmp_path / "out" / "jobs.json").read_text())) == {"first", "second", "apart"}
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
    summary = text.split("## Summary\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(",")[0] for line in summary] == [f"- Result {r}" for r in range(1, 6)]
    assert all(line.endswith(": No verdict (one seed)") for line in summary)
    # the table's number is the run's own: S, SSV2-like 10-shot, top-1 of its last model
    run = json.loads((out / "ft_S_ssv2_10_s0" / "results.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("| S |"))
    assert re.search(rf"\| {100 * run['last']['top1']:.1f} ± 0\.0 / {100 * run['last']['top5']:.1f} ± 0\.0 \|", row)
    state = json.loads((out / "jobs.json").read_text())
    assert len(state) == 31 and all(s["status"] == "done" for s in state.values())
    # a second invocation finds every job done and only rewrites the report
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and json.loads((out / "jobs.json").read_text()) == state
    timing = json.loads((out / "timing.json").read_text())["invocations"]
    assert len(timing) == 1 and timing[0]["jobs_run"] == len(state) and timing[0]["seconds"] > 0
