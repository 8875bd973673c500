import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from synthetic import indexed_frames, read_indices, write_indexed_video
from video import VideoError, find_videos, prepare, read_clip, read_frames, video_info, write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Indexed videos at the rates real datasets use: 30 fps headcam, 25 fps Kinetics, 12 fps SSV2 (.webm)."""
    d = tmp_path_factory.mktemp("sources")
    (d / "S").mkdir()
    write_indexed_video(d / "S" / "a30.mp4", 300, 30)
    write_indexed_video(d / "S" / "b25.mp4", 250, 25)
    write_indexed_video(d / "c12.webm", 120, 12)
    return d


def test_synthetic_index_survives_compression(tmp_path):
    path = write_indexed_video(tmp_path / "v.mp4", 40, 30)
    assert read_indices(read_frames(path, np.arange(40) / 30, size=None)) == list(range(40))
    assert read_indices(indexed_frames(3000)[[0, 1234, 2999]]) == [0, 1234, 2999]


@pytest.mark.parametrize("name, fps", [("S/a30.mp4", 30), ("S/b25.mp4", 25), ("c12.webm", 12)])
def test_clips_are_frame_exact_at_3_75_fps_whatever_the_source_rate(sources, name, fps):
    path = sources / name
    duration, rate = video_info(path)
    assert rate == pytest.approx(fps) and duration == pytest.approx(10.0, abs=0.1)
    for t0 in (0.0, 1.31, 4.47):                                        # frame k is the one nearest t0 + k / 3.75
        frames = read_frames(path, t0 + np.arange(16) / 3.75, size=None)
        assert frames.shape == (16, 96, 96, 3) and frames.dtype == np.uint8
        assert read_indices(frames) == [round((t0 + k / 3.75) * fps) for k in range(16)]
    if fps == 30:                                                       # every 8th frame, as the paper
        assert np.all(np.diff(read_indices(read_clip(path, start="random", rng=np.random.default_rng(0)))) == 8)
    centre = read_indices(read_clip(path, start="center"))              # evaluation: the same clip every time
    assert centre == read_indices(read_clip(path, start="center"))
    first = (300 // 30 * fps - 4 * fps) // 2                            # the middle 4 s of 10 s, on a source frame
    assert centre == [int(first + k * fps / 3.75 + 0.5) for k in range(16)]


def test_a_short_video_repeats_its_last_frame(tmp_path):
    path = write_indexed_video(tmp_path / "short.mp4", 5, 3.75)         # 5 frames: shorter than a 16-frame clip
    clip = read_clip(path, start="random", rng=np.random.default_rng(0))
    assert clip.shape == (16, 256, 256, 3)
    assert read_indices(clip) == [0, 1, 2, 3, 4] + [4] * 11


def test_canvas_is_the_centre_square_with_short_side_256(tmp_path):
    frames = np.zeros((4, 96, 160, 3), np.uint8)
    frames[:, :, :32] = (255, 0, 0)                                     # red and blue bands at the far left/right
    frames[:, :, -32:] = (0, 0, 255)
    frames[:, :, 32:-32] = (0, 255, 0)
    path = tmp_path / "wide.mp4"
    write_video(path, frames, 30)
    clip = read_clip(path, num_frames=2, start=0.0)
    assert clip.shape == (2, 256, 256, 3)
    assert clip[..., 1].mean() > 240 and clip[..., 0].mean() < 15 and clip[..., 2].mean() < 15  # green only


def test_unreadable_files_raise_video_error_naming_the_file(tmp_path):
    good = write_indexed_video(tmp_path / "good.mp4", 60, 30)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    data = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[:len(data) // 2])
    for name in ("empty.mp4", "text.mp4", "truncated.mp4"):
        with pytest.raises(VideoError, match=name):
            read_clip(tmp_path / name)


def test_write_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="must be even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8), 30)


def test_prepare_mirrors_the_tree_resamples_exactly_and_skips_finished_files(sources, tmp_path):
    dst = tmp_path / "prepared"
    counts = prepare(str(sources), str(dst), workers=2)
    assert counts == {"done": 3, "skipped": 0, "failed": 0, "redone": 0}
    outputs = [os.path.relpath(p, dst) for p in find_videos(dst)]
    assert outputs == ["c12_s000.mp4", "S/a30_s000.mp4", "S/b25_s000.mp4"]
    for name, fps in (("S/a30_s000.mp4", 30), ("S/b25_s000.mp4", 25), ("c12_s000.mp4", 12)):
        duration, rate = video_info(dst / name)
        assert rate == pytest.approx(3.75) and duration == pytest.approx(10.0, abs=0.3)
        frames = read_frames(dst / name, np.arange(37) / 3.75, size=None)
        assert frames.shape[1:3] == (256, 256)                          # short side 256
        assert read_indices(frames) == [round(j / 3.75 * fps) for j in range(37)]  # the same frames as raw
        # clips read from the prepared file are the clips read from the source (t0 on the 3.75 fps grid)
        t0 = 6 / 3.75
        src = sources / name.replace("_s000.mp4", ".webm" if fps == 12 else ".mp4")
        assert read_indices(read_clip(dst / name, start=t0)) == read_indices(read_clip(src, start=t0))
    again = prepare(str(sources), str(dst), workers=2)
    assert again == {"done": 0, "skipped": 3, "failed": 0, "redone": 0}


def test_prepare_cuts_long_recordings_into_minute_segments(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_indexed_video(src / "long.mp4", 30 * 150, 30, size=48, gop=250)   # 150 s at 30 fps
    dst = tmp_path / "dst"
    prepare(str(src), str(dst), workers=1)
    marker = json.loads((dst / "long.prepared.json").read_text())
    assert marker["segments"] == ["long_s000.mp4", "long_s001.mp4"] and marker["frames"] == 563
    lengths = [video_info(dst / s)[0] for s in marker["segments"]]
    assert all(60 <= x <= 90 for x in lengths)                          # about a minute each, none tiny
    second = read_frames(dst / "long_s001.mp4", [0.0, 10 / 3.75], size=None)
    assert read_indices(second) == [281 * 8, 291 * 8]                   # it continues where the first ended


def test_prepare_refuses_files_that_differ_only_in_extension_and_fails_when_every_file_fails(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_indexed_video(src / "clip.mp4", 30, 30, size=48)
    write_indexed_video(src / "clip.webm", 30, 30, size=48)                   # another video, the same stem
    command = [sys.executable, os.path.join(ROOT, "video.py"), "prepare", str(src), str(tmp_path / "dst")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "clip.mp4 and clip.webm" in lines[0], result.stderr
    assert not (tmp_path / "dst").exists()                                    # nothing prepared, nothing lost
    (src / "clip.webm").unlink()
    (src / "clip.mp4").write_bytes(b"not a video")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "not one of the 1 files" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_prepare_killed_mid_file_leaves_no_half_file_and_a_rerun_completes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_indexed_video(src / "long.mp4", 30 * 600, 30, size=48)        # 10 minutes: several segments
    dst = tmp_path / "dst"
    cmd = [sys.executable, os.path.join(ROOT, "video.py"), "prepare", str(src), str(dst), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while not (dst.exists() and any(p.name.endswith(".partial") for p in dst.iterdir())):
        assert time.time() < deadline and proc.poll() is None, "prepare finished before it could be killed"
        time.sleep(0.01)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)                                 # mid-file, mid-segment
    proc.wait()
    assert not (dst / "long.prepared.json").exists()
    for path in find_videos(dst):                                       # whatever carries a real name is whole
        duration, _ = video_info(path)
        assert read_frames(path, [duration - 0.3], size=None).shape[0] == 1
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "prepared 1, already done 0, failed 0" in result.stdout
    marker = json.loads((dst / "long.prepared.json").read_text())
    assert sorted(p.name for p in dst.glob("*.mp4")) == marker["segments"]
    assert not list(dst.glob(".*.partial"))
    frames = sum(round(video_info(dst / s)[0] * 3.75) for s in marker["segments"])
    assert frames == marker["frames"] == 2250


def test_prepare_errors_clearly_on_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        prepare(str(tmp_path / "nope"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        prepare(str(tmp_path / "empty"), str(tmp_path / "out"))


def prepare_command(src, dst, *flags):
    video_py = os.path.join(ROOT, "video.py")
    return [sys.executable, video_py, "prepare", str(src), str(dst), "--workers", "1", *flags]


def run(command):
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_prepare_refuses_a_destination_in_the_source_and_a_source_in_the_destination(tmp_path):
    """`prepare s s` overwrote s/a_s000.mp4, a source named like an output of s/a.mp4, and
    `prepare s s/prepared` prepared its own outputs again on every rerun. Links are followed;
    nothing is written."""
    out = tmp_path / "out"
    raw, link = out / "raw", tmp_path / "link"
    raw.mkdir(parents=True)
    write_indexed_video(raw / "a.mp4", 8, 3.75, size=48)
    write_indexed_video(raw / "a_s000.mp4", 8, 3.75, size=48)           # a source, not an output
    link.symlink_to(raw)
    before = sorted(p.name for p in out.rglob("*")), (raw / "a_s000.mp4").read_bytes()
    cases = [(raw, raw, "DST .* is SRC"), (raw, link, "DST .* is SRC"),
             (raw, out, "SRC .* inside DST"), (raw, raw / "prepared", "DST .* inside SRC"),
             (link, raw / "p", "DST .* inside SRC")]
    for src, dst, message in cases:
        with pytest.raises(ValueError, match=message):
            prepare(str(src), str(dst), workers=1)
    assert (sorted(p.name for p in out.rglob("*")), (raw / "a_s000.mp4").read_bytes()) == before
    result = run(prepare_command(raw, raw))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: DST {raw} is SRC {raw}"), result.stderr


def test_prepare_redoes_a_file_whose_settings_changed_and_removes_its_old_segments(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_indexed_video(src / "v.mp4", 150, 3.75, size=48)              # 40 s
    first = {"workers": 1, "short_side": 32, "segment_seconds": 10}
    prepare(str(src), str(dst), **first)
    assert sorted(p.name for p in dst.glob("*.mp4")) == [f"v_s00{i}.mp4" for i in range(4)]
    assert prepare(str(src), str(dst), **first)["skipped"] == 1
    # another short side and segment length: redone, and the old s002 and s003 are gone
    result = run(prepare_command(src, dst, "--short_side", "48", "--segment_seconds", "20"))
    assert "prepared 1, already done 0, failed 0" in result.stdout, result.stdout + result.stderr
    assert sum("old segments were removed" in line for line in result.stdout.splitlines()) == 1
    marker = json.loads((dst / "v.prepared.json").read_text())
    assert marker["short_side"] == 48 and marker["segment_seconds"] == 20
    names = sorted(p.name for p in dst.glob("*.mp4"))
    assert names == marker["segments"] == ["v_s000.mp4", "v_s001.mp4"]
    assert read_frames(dst / "v_s000.mp4", [0.0], size=None).shape[1:3] == (48, 48)
    settings = {"short_side": 48, "segment_seconds": 20}
    for name, value in (("fps", 1.875), ("gop", 4), ("crf", 30)):      # each setting counts
        settings[name] = value
        assert prepare(str(src), str(dst), workers=1, **settings)["redone"] == 1, name
        assert json.loads((dst / "v.prepared.json").read_text())[name] == value
    assert read_indices(read_frames(dst / "v_s000.mp4", [0.0, 1 / 1.875], size=None)) == [0, 2]


def test_a_rerun_removes_segments_and_partial_files_that_no_valid_marker_lists(tmp_path):
    """A run killed after its segments but before its marker, rerun with another --segment_seconds,
    left the old segments under real names: the loaders found 8 files where the marker lists 2."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_indexed_video(src / "v.mp4", 150, 3.75, size=48)              # 40 s
    prepare(str(src), str(dst), workers=1, short_side=32, segment_seconds=5)
    assert len(list(dst.glob("v_s*.mp4"))) == 8
    (dst / "v.prepared.json").unlink()                                  # as if killed before it
    leftover = (dst / "v_s007.mp4").read_bytes()
    (dst / ".v_s009.mp4.partial").write_bytes(leftover)                 # killed runs' half files
    (dst / ".gone_s000.mp4.partial").write_bytes(leftover)
    (dst / "v.prepared.json.partial").write_text("{")
    settings = {"workers": 1, "short_side": 32, "segment_seconds": 20}
    assert prepare(str(src), str(dst), **settings)["done"] == 1
    marker = json.loads((dst / "v.prepared.json").read_text())
    assert marker["segments"] == ["v_s000.mp4", "v_s001.mp4"]
    assert [os.path.basename(p) for p in find_videos(dst)] == marker["segments"]
    names = sorted(p.name for p in dst.iterdir() if p.name != ".lock")
    assert names == sorted(marker["segments"] + ["v.prepared.json"])
    # a segment that the valid marker does not list goes too, though the file is already done
    (dst / "v_s005.mp4").write_bytes(leftover)
    assert prepare(str(src), str(dst), **settings)["skipped"] == 1
    assert sorted(p.name for p in dst.glob("*.mp4")) == marker["segments"]


def test_prepare_into_a_file_or_a_read_only_folder_is_one_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_indexed_video(src / "v.mp4", 8, 3.75, size=48)
    write_indexed_video(tmp_path / "x.mp4", 8, 3.75, size=48)
    cases = [(tmp_path / "x.mp4", "is a file, not a folder")]
    if os.geteuid() != 0:                                               # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        cases.append((tmp_path / "ro", "cannot be written to"))
    for dst, message in cases:
        result = run(prepare_command(src, dst))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: DST {dst}") and message in lines[0], result.stderr


def test_two_prepares_into_one_folder_cannot_both_write(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_indexed_video(src / "v.mp4", 8, 3.75, size=48)
    hold = ("import sys, time; from runs import hold_folder; "
            "hold_folder(sys.argv[1], flag='DST'); print('held', flush=True); time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(dst)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run(prepare_command(src, dst))
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert f"DST {dst} is in use by process {holder.pid}" in lines[0]
        assert sorted(p.name for p in dst.iterdir()) == [".lock"]           # nothing written
    finally:
        holder.kill()
        holder.wait()
    assert prepare(str(src), str(dst), workers=1)["done"] == 1              # free once it is gone
    assert [os.path.relpath(p, dst) for p in find_videos(dst)] == ["v_s000.mp4"]  # .lock: no video
