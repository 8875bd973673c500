import json
import math
import os
import shutil
import warnings

import numpy as np
import pytest
import torch

import data
from augment import augment, sample_crops
from data import (ClipDataset, ImageClipDataset, Unreadable, collate_clips, first_readable, folder_items,
                  fraction_subset, headcam_items, image_items, kinetics_items, make_loader, ssv2_items)
from evaluate import authors_split, kshot_indices
from synthetic import read_indices, write_indexed_video
from video import write_image

KINETICS_CLASSES = ["abseiling", "acting in play", "zumba"]
SSV2_TEMPLATES = ["Moving [something] up", "Pushing [something] from left to right", "Dropping [something]"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Small datasets in every layout the loaders read, with indexed frames so sampling can be checked."""
    r = tmp_path_factory.mktemp("datasets")
    for child, names in (("S", ["2013/S_20130101_a.mp4", "2013/S_20130102_b.mp4", "2014/S_20140101_c.mp4"]),
                         ("A", ["A_1.mp4"]), ("Y", ["deep/nested/Y_1.mkv"])):
        for name in names:
            (r / "saycam" / child / name).parent.mkdir(parents=True, exist_ok=True)
            write_indexed_video(r / "saycam" / child / name, 240, 30, size=48)        # 8 s at 30 fps
    rows = ["label,youtube_id,time_start,time_end,split"]
    for c in KINETICS_CLASSES:
        (r / "kinetics" / "train" / c).mkdir(parents=True)
        for i in range(3):
            name = f"yt{c[:2]}{i}_{i:06d}_{i + 10:06d}.mp4"
            write_indexed_video(r / "kinetics" / "train" / c / name, 30, 25, size=48)
            rows.append(f"{c},yt{c[:2]}{i},{i},{i + 10},train")
    rows.append("zumba,gone_video,5,15,train")                                        # deleted from YouTube
    (r / "kinetics" / "train.csv").write_text("\n".join(rows) + "\n")
    (r / "ssv2").mkdir()
    entries = {"train": [], "validation": []}
    for i in range(12):
        split = "train" if i < 9 else "validation"
        template = SSV2_TEMPLATES[i % 3]
        entries[split].append({"id": str(1000 + i), "label": template.replace("[something]", "a cup"),
                               "template": template, "placeholders": ["a cup"]})
        write_indexed_video(r / "ssv2" / f"{1000 + i}{'.webm' if i % 2 else '.mp4'}", 24, 12, size=48)
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(SSV2_TEMPLATES)}
    (r / "ssv2" / "something-something-v2-labels.json").write_text(json.dumps(labels))
    for split, e in entries.items():
        (r / "ssv2" / f"something-something-v2-{split}.json").write_text(json.dumps(e))
    for split in ("train", "val"):
        for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (r / "imagenet" / split / c).mkdir(parents=True)
            for i in range(4):
                img = np.zeros((60, 80, 3), np.uint8)
                img[:, 10:70] = colour
                write_image(r / "imagenet" / split / c / f"{c}_{i}{'.png' if i % 2 else '.JPEG'}", img)
    return r


def test_headcam_children_and_say_is_the_union(root):
    s = headcam_items(root / "saycam", "S")
    assert [p.split("saycam/")[1] for p in s.paths] == ["S/2013/S_20130101_a.mp4", "S/2013/S_20130102_b.mp4",
                                                         "S/2014/S_20140101_c.mp4"]          # sorted: chronological
    assert s.paths.dtype.kind == "U" and (s.labels == -1).all()        # one numpy buffer, no per-path objects
    say = headcam_items(root / "saycam", "SAY")
    a, y = headcam_items(root / "saycam", "A"), headcam_items(root / "saycam", "Y")
    assert sorted(say.paths) == sorted([*s.paths, *a.paths, *y.paths]) and len(say) == 5
    with pytest.raises(ValueError, match="unknown child 'Q'"):
        headcam_items(root / "saycam", "SQ")


def test_missing_or_empty_folders_are_clear_errors(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="headcam child S: no such folder"):
        headcam_items(tmp_path, "S")
    (tmp_path / "S").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        headcam_items(tmp_path, "S")
    with pytest.raises(FileNotFoundError, match="no files found"):
        folder_items(tmp_path)
    with pytest.raises(FileNotFoundError, match="Kinetics CSV: no such file"):
        kinetics_items(root / "kinetics", "train", csv_path=tmp_path / "none.csv")
    with pytest.raises(FileNotFoundError, match="SSV2: no such file"):
        ssv2_items(tmp_path)


def test_kinetics_folders_and_csv_give_the_same_labels(root):
    folders = kinetics_items(root / "kinetics", "train")
    assert folders.classes == sorted(KINETICS_CLASSES) and len(folders) == 9
    assert [folders.classes[y] for y in folders.labels] == [p.split("/")[-2] for p in folders.paths]
    with pytest.warns(UserWarning, match="1 of 10 listed videos are missing"):
        from_csv = kinetics_items(root / "kinetics", "train", csv_path=root / "kinetics" / "train.csv")
    assert sorted(zip(from_csv.paths, from_csv.labels)) == sorted(zip(folders.paths, folders.labels))


def test_ssv2_json_with_webm_and_mp4_labels_by_sorted_template(root):
    train, val = ssv2_items(root / "ssv2", "train"), ssv2_items(root / "ssv2", "validation")
    assert train.classes == sorted(SSV2_TEMPLATES) == val.classes
    assert len(train) == 9 and len(val) == 3
    assert {p.rsplit(".", 1)[1] for p in train.paths} == {"webm", "mp4"}
    for path, label in zip(train.paths, train.labels):
        i = int(path.rsplit("/", 1)[1].split(".")[0]) - 1000
        assert train.classes[label] == SSV2_TEMPLATES[i % 3]
    item, label = ClipDataset(val, train=False)[0]
    assert item.shape == (1, 16, 256, 256, 3) and label == val.labels[0]


def test_clip_dataset_repeats_crops_or_windows_and_evaluates_the_centre(root):
    items = headcam_items(root / "saycam", "S")
    torch.manual_seed(0)
    clips, label = ClipDataset(items, train=True, repeats=4)[0]
    assert clips.shape == (4, 16, 256, 256, 3) and clips.dtype == torch.uint8 and label == -1
    assert all(torch.equal(clips[0], c) for c in clips)                 # one window; augment crops each its own way
    idx = read_indices(clips[0].numpy())
    assert np.all(np.diff(idx) == 8)                                    # 3.75 fps from 30 fps
    clips, _ = ClipDataset(items, train=True, repeats=6, repeat_mode="windows")[1]
    windows = [read_indices(c.numpy()) for c in clips]
    assert all(np.all(np.diff(w) == 8) for w in windows)
    assert len({w[0] for w in windows}) > 1                             # different windows of one decode
    evaluation = ClipDataset(items, train=False, repeats=16)
    first, _ = evaluation[2]
    assert first.shape[0] == 1 and torch.equal(first, evaluation[2][0])  # deterministic centre clip
    frames, _ = ClipDataset(items, train=True, repeats=3, num_frames=1)[0]   # the image-MAE's single frames
    assert frames.shape == (3, 1, 256, 256, 3)


def test_a_cached_dataset_decodes_each_file_once_and_keeps_the_repeat_mode(root, monkeypatch):
    items = headcam_items(root / "saycam", "S").select([0])
    crops = ClipDataset(items, train=True, repeats=4, cache=True)
    clips, _ = crops[(0, 1)]                                            # (index, seed), as the StepSampler asks
    assert clips.shape == (4, 16, 256, 256, 3) and all(torch.equal(clips[0], c) for c in clips)
    assert np.all(np.diff(read_indices(clips[0].numpy())) == 8)        # 3.75 fps from 30 fps
    monkeypatch.setattr(data, "read_frames", lambda *a, **k: pytest.fail("decoded a cached file again"))
    starts = {read_indices(crops[(0, seed)][0][0].numpy())[0] for seed in range(20)}
    assert len(starts) > 3                                              # random windows, all from memory
    windows = ClipDataset(items, train=True, repeats=6, repeat_mode="windows", cache=True)
    windows.cache = crops.cache                                         # the same decoded frames
    firsts = [read_indices(c.numpy())[0] for c in windows[(0, 2)][0]]
    assert len(set(firsts)) > 1                                         # R windows, not R copies of one


def test_a_disk_cache_is_shared_by_runs_and_holds_what_decoding_gives(root, tmp_path, monkeypatch):
    path, cache_dir = str(tmp_path / "A_1.mp4"), str(tmp_path / "decoded")
    shutil.copy(root / "saycam" / "A" / "A_1.mp4", path)
    decoded = ClipDataset(None, train=False, size=48, cache=True).whole(path)
    first_run = ClipDataset(None, train=False, size=48, cache_dir=cache_dir).whole(path)
    assert np.array_equal(first_run, decoded) and len(decoded) == 31                 # 8 s at 3.75 fps, from 0 s
    other_canvas = ClipDataset(None, train=False, size=32, cache_dir=cache_dir).whole(path)
    assert other_canvas.shape == (31, 32, 32, 3)
    assert sorted(f[-4:] for f in os.listdir(cache_dir)) == [".npy", ".npy"]          # no half-written file left
    monkeypatch.setattr(data, "read_frames", lambda *a, **k: pytest.fail("a second run decoded the file again"))
    second_run = ClipDataset(None, train=False, size=48, cache_dir=cache_dir)
    assert np.array_equal(second_run.whole(path), decoded) and path in second_run.cache
    monkeypatch.undo()
    os.utime(path, ns=(0, 0))                                           # the file written again: decoded again
    rewritten = ClipDataset(None, train=False, size=48, cache_dir=cache_dir)
    rewritten.whole(path)
    assert len(os.listdir(cache_dir)) == 3
    with open(rewritten.disk_copy(path), "wb") as f:                    # a damaged copy: decoded and written anew
        f.write(b"not frames")
    assert np.array_equal(ClipDataset(None, train=False, size=48, cache_dir=cache_dir).whole(path), decoded)
    assert np.array_equal(np.load(rewritten.disk_copy(path)), decoded)


def test_image_folders_become_static_clips(root):
    items = image_items(root / "imagenet", "train")
    assert items.classes == ["cat", "dog"] and list(items.labels) == [0] * 4 + [1] * 4
    clip, label = ImageClipDataset(items)[5]
    assert clip.shape == (1, 16, 256, 256, 3) and label == 1
    assert all(torch.equal(clip[0, 0], f) for f in clip[0])            # the same image in every frame
    assert np.abs(clip[0, 0, 128, 128].numpy().astype(int) - [0, 0, 255]).max() <= 3  # a blue dog (PNG or JPEG)
    assert ImageClipDataset(items, num_frames=1)[0][0].shape == (1, 1, 256, 256, 3)


def test_a_class_folder_without_a_video_stays_a_class_and_is_named(tmp_path):
    """Empty, without a video, every video corrupt: still a class (the head has its output),
    named by empty_classes (the corrupt one once a pass found its files unreadable)."""
    train = tmp_path / "kinetics" / "train"
    for name in ("abseiling", "bowling", "cooking", "dancing"):
        (train / name).mkdir(parents=True)
    for i in range(2):
        write_indexed_video(train / "abseiling" / f"a{i}.mp4", 30, 25, size=48)
        (train / "dancing" / f"d{i}.mp4").write_text("not a video")
    (train / "cooking" / "notes.txt").write_text("no video here")
    items = kinetics_items(tmp_path / "kinetics", "train")
    assert items.classes == ["abseiling", "bowling", "cooking", "dancing"] and len(items) == 4
    assert data.empty_classes(items) == ["bowling", "cooking"]
    loader = make_loader(ClipDataset(items, train=False), 4, False, workers=0, drop_last=False)
    with pytest.warns(UserWarning, match="skipping unreadable file"):
        unreadable = [path for batch in loader for path in batch.unreadable]
    assert data.empty_classes(items, unreadable) == ["bowling", "cooking", "dancing"]
    with pytest.raises(ValueError, match="^class 'bowling' has 0 examples; 1 are needed"):
        kshot_indices(items.labels, 1, classes=items.classes)
    assert len(kshot_indices(items.labels, 1)) == 2            # without names: the classes present
    assert len(kshot_indices(np.full(3, -1), 1)) == 0          # none labelled: none, no crash
    (tmp_path / "img" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "img" / "train" / "dog").mkdir()
    write_image(tmp_path / "img" / "train" / "cat" / "c.png", np.zeros((8, 8, 3), np.uint8))
    images = image_items(tmp_path / "img")
    assert images.classes == ["cat", "dog"] and data.empty_classes(images) == ["dog"]


def deep_folder(parent, depth=20):
    """A folder nested deeper than a path may be long (PATH_MAX, 4096 on Linux): made step by
    step from open folders, it exists, but no walk by path reads it, not even root's (whom
    chmod 000 never stops)."""
    fd = os.open(parent, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d" * 250, dir_fd=fd)
        inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)


def test_a_folder_that_cannot_be_read_is_named_once_and_counted_like_an_unreadable_file(tmp_path):
    (tmp_path / "S").mkdir()
    write_indexed_video(tmp_path / "S" / "good.mp4", 60, 30, size=48)
    deep_folder(tmp_path / "S")
    items = headcam_items(tmp_path, "S")
    assert len(items) == 2 and items.paths[1].endswith(os.sep) and len(items.paths[1]) > 4096
    dataset = ClipDataset(items, train=True, repeats=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):                                          # two epochs: still one warning
            batches = list(make_loader(dataset, 2, False, workers=0, drop_last=False))
    named = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(named) == 1 and items.paths[1] in named[0]
    assert batches[0].clips.shape[0] == 2 and batches[0].unreadable == (items.paths[1],)
    pretraining = data.pretraining_items(str(tmp_path / "S"))      # pretrain.py --data <a folder>
    assert list(pretraining.paths) == list(items.paths)


@pytest.mark.skipif(os.geteuid() == 0, reason="chmod 000 stops no root: run it as another user")
def test_folders_without_read_permission(tmp_path):
    """A locked class folder is a class with no file; a locked sub-folder an unreadable item; a
    locked data folder a one-line error that says it cannot be read, not that it holds no files."""
    train, child = tmp_path / "kinetics" / "train", tmp_path / "saycam" / "S"
    for folder in (train / "abseiling", train / "bowling", child / "2013"):
        folder.mkdir(parents=True)
        write_indexed_video(folder / "v.mp4", 30, 25, size=48)
    write_indexed_video(child / "good.mp4", 30, 25, size=48)
    locked = [train / "bowling", child / "2013"]
    try:
        for folder in locked:
            folder.chmod(0)
        items = kinetics_items(tmp_path / "kinetics", "train")
        assert items.classes == ["abseiling", "bowling"]
        assert data.empty_classes(items) == ["bowling"]
        assert list(items.paths)[1:] == [str(train / "bowling") + os.sep]
        headcam = headcam_items(tmp_path / "saycam", "S")
        assert list(headcam.paths) == [str(child / "good.mp4"), str(child / "2013") + os.sep]
        loader = make_loader(ClipDataset(headcam, train=False), 2, False, 0, drop_last=False)
        with pytest.warns(UserWarning, match="skipping unreadable file .*2013/"):
            assert [b.unreadable for b in loader] == [(str(child / "2013") + os.sep,)]
        for folder in (child, train):
            folder.chmod(0)
            locked.append(folder)
        with pytest.raises(FileNotFoundError, match="headcam child S: the folder .* cannot be"):
            headcam_items(tmp_path / "saycam", "S")
        with pytest.raises(FileNotFoundError, match="cannot be read"):
            data.pretraining_items(str(child))
        with pytest.raises(FileNotFoundError, match="dataset: the folder .*train cannot be read"):
            kinetics_items(tmp_path / "kinetics", "train")
    finally:
        for folder in reversed(locked):                            # the outer ones first
            folder.chmod(0o755)


def test_unreadable_files_are_skipped_with_one_warning_each_and_counted(tmp_path):
    folder = tmp_path / "S"
    folder.mkdir()
    good = write_indexed_video(folder / "good.mp4", 60, 30, size=48)
    write_indexed_video(folder / "short.mp4", 5, 3.75, size=48)        # 5 frames: padded, not skipped
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is not a video")
    dataset = ClipDataset(headcam_items(tmp_path, "S"), train=True, repeats=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):                                              # two epochs: still one warning per file
            batches = [b for b in make_loader(dataset, batch_size=5, shuffle=False, workers=0, drop_last=False)]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3 and all(any(n in m for m in messages) for n in ("truncated", "zero", "notes"))
    assert sorted(p.rsplit("/", 1)[1] for p in dataset.skipped) == ["notes.mp4", "truncated.mp4", "zero.mp4"]
    clips, labels, unreadable = batches[0]
    assert clips.shape == (2 * 2, 16, 256, 256, 3) and labels.shape == (4,)   # good and short, 2 views each
    assert sorted(p.rsplit("/", 1)[1] for b in batches for p in b.unreadable) == ["notes.mp4", "truncated.mp4",
                                                                                  "zero.mp4"]
    nothing = collate_clips([Unreadable("a.mp4"), Unreadable("b.mp4")])
    assert nothing.clips is None and nothing.labels is None and nothing.unreadable == ("a.mp4", "b.mp4")
    broken_first = ClipDataset(headcam_items(tmp_path, "S").select([1, 3, 0]), train=False)  # notes, truncated, good
    index, (clip, _) = first_readable(broken_first, "S")
    assert index == 2 and clip.shape == (1, 16, 256, 256, 3)             # good.mp4: the first readable
    with pytest.raises(FileNotFoundError, match="none of the 3 files of the broken ones is readable"):
        first_readable(ClipDataset(headcam_items(tmp_path, "S").select([1, 3, 4]), train=False), "the broken ones")
    (tmp_path / "img" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "img" / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n not really")
    images = ImageClipDataset(image_items(tmp_path / "img"))
    with pytest.warns(UserWarning, match="skipping unreadable file .*broken.png"):
        assert images[0] == Unreadable(str(tmp_path / "img" / "train" / "cat" / "broken.png"))


def test_fraction_subsets_prefix_and_random():
    from data import Items
    items = Items(np.array([f"f{i:04d}.mp4" for i in range(2000)]), np.full(2000, -1), [])
    assert len(fraction_subset(items, 0.1)) == 200 and len(fraction_subset(items, 0.01)) == 20
    assert len(fraction_subset(items, 0.001)) == 2 and len(fraction_subset(items, 0.0001)) == 1
    assert list(fraction_subset(items, 0.01).paths) == list(items.paths[:20])    # chronologically first
    r1, r2 = fraction_subset(items, 0.05, "random", seed=1), fraction_subset(items, 0.05, "random", seed=1)
    assert list(r1.paths) == list(r2.paths) and list(r1.paths) != list(items.paths[:100])
    assert list(r1.paths) == sorted(r1.paths)
    with pytest.raises(ValueError, match=r"data fraction must be in \(0, 1\]"):
        fraction_subset(items, 0)


def test_kshot_subsets_are_exact_nested_and_seeded():
    labels = np.repeat(np.arange(7), 120)
    np.random.default_rng(0).shuffle(labels)
    ten, fifty = kshot_indices(labels, 10, seed=3), kshot_indices(labels, 50, seed=3)
    assert (np.bincount(labels[ten]) == 10).all() and (np.bincount(labels[fifty]) == 50).all()
    assert set(ten) <= set(fifty)                                       # the 10-shot set inside the 50-shot set
    assert np.array_equal(ten, kshot_indices(labels, 10, seed=3))
    assert not np.array_equal(ten, kshot_indices(labels, 10, seed=4))
    selection = kshot_indices(labels, 50, seed=3, skip=50)              # k further examples, disjoint
    assert not set(selection) & set(fifty) and (np.bincount(labels[selection]) == 50).all()
    with pytest.raises(ValueError, match="class 0 has 120 examples; 150 are needed"):
        kshot_indices(labels, 150)


def test_data_root_pairs_name_the_flag_and_the_malformed_pair():
    with pytest.raises(ValueError, match="^--data_root: 'kinetics' is not a name=folder pair"):
        data.source_roots("S,kinetics", "S=/x,kinetics")
    with pytest.raises(ValueError, match="^--data_root: '=/k' is not a name=folder pair"):
        data.pretraining_items("kinetics", "S=/x,=/k")
    assert data.source_roots("S,kinetics", "S=/x, kinetics=/k") == {"S": "/x", "kinetics": "/k"}


def test_authors_split_selects_their_files_with_their_class_order():
    from data import ASSETS, Items
    with open(f"{ASSETS}/kinetics700_fewshot_splits.json") as f:
        spec = json.load(f)
    chosen = {c: spec["splits"]["10shot"][c] for c in ("zumba", "abseiling")}
    paths = [f"/k/train/{c}/{stem}.mp4" for c, stems in chosen.items() for stem in stems] + ["/k/train/zumba/x.mp4"]
    items = Items(np.array(paths), np.zeros(len(paths), np.int64), ["abseiling", "zumba"])
    with pytest.warns(UserWarning, match="6980 of 7000 split videos are missing"):
        subset = authors_split(items, "kinetics", "10shot")
    assert len(subset) == 20 and len(subset.classes) == 700
    assert {subset.classes[y] for y in subset.labels} == {"zumba", "abseiling"}
    assert subset.labels.max() == 699 and subset.classes.index("abseiling") == 0
    with pytest.raises(ValueError, match="unknown split"):
        authors_split(items, "ssv2", "25shot")


def test_random_resized_crops_stay_in_range_spread_over_it_and_flip_half_the_time():
    boxes, flips = sample_crops(20000, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                                generator=torch.Generator().manual_seed(0))
    cx, cy, w, h = boxes.unbind(1)
    area, aspect = w * h, w / h
    assert area.min() >= 0.5 - 1e-6 and area.max() <= 1 + 1e-6
    assert aspect.min() >= 3 / 4 - 1e-6 and aspect.max() <= 4 / 3 + 1e-6
    assert area.quantile(0.05) < 0.55 and area.quantile(0.95) > 0.85   # spread (big non-square crops rarely fit)
    assert aspect.quantile(0.05) < 0.8 and aspect.quantile(0.95) > 1.25
    assert ((cx - w / 2) >= -1e-6).all() and ((cx + w / 2) <= 1 + 1e-6).all()   # inside the canvas
    assert ((cy - h / 2) >= -1e-6).all() and ((cy + h / 2) <= 1 + 1e-6).all()
    assert abs(flips.float().mean() - 0.5) < 0.02
    small, _ = sample_crops(20000, scale=(0.08, 1.0), generator=torch.Generator().manual_seed(1))
    assert (small[:, 2] * small[:, 3]).min() < 0.1                      # finetuning's (0.08, 1)
    _, none = sample_crops(100, flip=False)
    assert not none.any()


def test_augment_shapes_one_box_per_clip_flips_and_a_deterministic_centre():
    N, T, S = 6, 4, 64
    canvas = torch.zeros(N, T, S, S, 3, dtype=torch.uint8)
    canvas[:, :, :, : S // 2] = 255                                     # left half white, right half black
    out = augment(canvas, train=True, img_size=32, generator=torch.Generator().manual_seed(0))
    assert out.shape == (N, 3, T, 32, 32) and out.dtype == torch.float32
    assert all(torch.equal(out[:, :, 0], out[:, :, t]) for t in range(T))   # the same box in every frame
    flipped = augment(canvas, train=True, img_size=32, scale=(1, 1), ratio=(1, 1),
                      generator=torch.Generator().manual_seed(0))
    left_white = flipped[:, 0, 0, :, :8].mean((1, 2)) > flipped[:, 0, 0, :, -8:].mean((1, 2))
    _, flips = sample_crops(N, (1, 1), (1, 1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(~left_white, flips)                              # a flip mirrors the clip
    never = augment(canvas, train=True, img_size=32, scale=(1, 1), ratio=(1, 1), flip=False)
    assert (never[:, 0, 0, :, :8].mean((1, 2)) > never[:, 0, 0, :, -8:].mean((1, 2))).all()   # SSV2: no flips
    a, b = augment(canvas, train=False, img_size=32), augment(canvas, train=False, img_size=32)
    assert torch.equal(a, b)
    white = (1.0 - 0.45) / 0.225
    assert math.isclose(a[0, 0, 0, 16, 2].item(), white, rel_tol=1e-4)
    assert math.isclose(a[0, 0, 0, 16, 29].item(), -0.45 / 0.225, rel_tol=1e-4)


def test_loader_with_worker_processes_batches_repeated_views(root):
    dataset = ClipDataset(headcam_items(root / "saycam", "SAY"), train=True, repeats=3)
    loader = make_loader(dataset, batch_size=2, workers=2, seed=0)
    clips, labels, _ = next(iter(loader))
    assert clips.shape == (6, 16, 256, 256, 3) and labels.tolist() == [-1] * 6
    x = augment(clips, train=True)
    assert x.shape == (6, 3, 16, 224, 224)
