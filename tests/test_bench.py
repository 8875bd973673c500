from bench import bench_io
from synthetic import write_indexed_video


def test_bench_io_measures_raw_and_prepared_reads(tmp_path):
    (tmp_path / "videos" / "S").mkdir(parents=True)
    write_indexed_video(tmp_path / "videos" / "S" / "a.mp4", 150, 30, size=48)
    write_indexed_video(tmp_path / "videos" / "b.webm", 60, 12, size=48)
    result = bench_io(str(tmp_path / "videos"), seconds=0.2, workers=1)
    assert [r["file"] for r in result["files"]] == ["b.webm", "S/a.mp4"]
    assert all(r["raw_clips_per_s"] > 0 and r["prepared_clips_per_s"] > 0 for r in result["files"])
    assert all(ms > 0 for ms in result["augment_cpu_ms_per_clip"].values())
