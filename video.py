"""
Video files: reading 16-frame clips at 3.75 fps, writing video, and `prepare` (transcode once).

The paper samples every 8th frame of 30 fps headcam video: 3.75 frames per second, so a 16-frame
clip spans about 4.3 s. Files come at other rates too (Kinetics at 25 fps, SSV2 at 12 fps), so we
sample by *time*: frame k of a clip starting at t0 is the source frame whose timestamp is nearest
to t0 + k / 3.75 s, whatever the file's rate.

Decoding is the expensive part, so:
- we seek to the keyframe before t0 instead of decoding from the start of a long recording;
- only the 16 chosen frames are converted to RGB and resized (the others are decoded and dropped);
- `python video.py prepare SRC DST` transcodes a dataset once to 3.75 fps, a 256-pixel short side
  and 16-frame GOPs (a keyframe every 16 frames), cut into segments of about a minute; a clip then
  decodes from at most 31 small frames. Readers use the rate each file carries, so raw and prepared
  data load the same way.
Frames come out as uint8 (T, H, W, 3), on a square canvas
(short side resized to `size`, centre-cropped).
"""

import argparse
import json
import math
import os
import re
import warnings
from fractions import Fraction
from multiprocessing import Pool

import av
import numpy as np
from tqdm import tqdm

from runs import check_out_folder, hold_folder, release_folder, remove_if_there
from training import ArgumentParser, checked, fail, positive_float, positive_int

SAMPLE_FPS = 3.75            # every 8th frame of 30 fps video
CLIP_FRAMES = 16             # about 4.3 s
CANVAS = 256                 # datasets hand out square frames this wide; augmentation crops them
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


class VideoError(Exception):
    """A file that cannot be read as video (corrupt, truncated, empty, not a video)."""


def is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS) and not os.path.basename(name).startswith(".")

# -----------------------------------------------------------------------------
# reading


def duration_of(container, stream) -> float:
    """Seconds from the first frame to the end of the stream.
    WebM files often know only the container's."""
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def start_of(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def frame_rate(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 30.0


def decode_nearest(container, stream, times):
    """The decoded frames nearest to each of the sorted `times` (seconds from the stream's start).
    Seeks once, then decodes forward; times past the last frame get the last frame
    (a short video repeats its end)."""
    origin = start_of(stream)
    # the nearest may be half a frame before
    seek_to = max(0.0, times[0] - 0.5 / frame_rate(stream))
    container.seek(int((origin + seek_to) / stream.time_base), stream=stream, backward=True,
                   any_frame=False)
    chosen, previous, k = [], None, 0
    for frame in container.decode(stream):
        # a frame without a timestamp (rare, broken files) counts as simultaneous with the one
        # before it
        t = frame.time - origin if frame.time is not None else (previous[1] if previous else 0.0)
        while k < len(times) and t >= times[k]:          # frame passed target k: pick the nearer
            nearer = previous if previous and times[k] - previous[1] < t - times[k] else (frame, t)
            chosen.append(nearer[0])
            k += 1
        if k == len(times):
            break
        previous = (frame, t)
    if previous is None and not chosen:
        raise VideoError("no decodable video frames")
    last = previous[0] if previous else chosen[-1]
    return chosen + [last] * (len(times) - len(chosen))


def to_canvas(frame, size=CANVAS) -> np.ndarray:
    """An av.VideoFrame -> uint8 (size, size, 3): short side resized to size, then the centre
    square. size=None keeps the frame as it is (H, W, 3)."""
    if size is None:
        return frame.to_ndarray(format="rgb24")
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):                                         # AREA: good when shrinking
        frame = frame.reformat(width=new_w, height=new_h, interpolation="AREA")
    rgb = frame.to_ndarray(format="rgb24")                               # (new_h, new_w, 3)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


def open_video(path, threads: int = 1):
    """Open a file for decoding;
    threads=1 because data loaders run one decoder per worker process."""
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.error.FFmpegError, IndexError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: cannot open as video ({type(e).__name__}: {e})") from None
    stream.thread_count = threads
    return container, stream


def read_frames(path, times, size=CANVAS, threads: int = 1) -> np.ndarray:
    """The frames nearest to sorted times (seconds) as uint8 (len(times), size, size, 3).
    `times` may also be a function (duration, source_fps) -> times, called once the file is open:
    one open per clip."""
    container, stream = open_video(path, threads)
    try:
        with container:
            if callable(times):
                times = times(duration_of(container, stream), frame_rate(stream))
            frames = decode_nearest(container, stream, list(times))
            return np.stack([to_canvas(f, size) for f in frames])
    except VideoError as e:
        raise VideoError(f"{path}: {e}") from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: decoding failed ({type(e).__name__}: {e})") from None


def video_info(path) -> tuple:
    """(duration in seconds, frames per second) from the file's header."""
    container, stream = open_video(path)
    with container:
        return duration_of(container, stream), frame_rate(stream)


def clip_start(duration: float, span: float, start, rng=None) -> float:
    """Where a clip of `span` seconds starts:
    'random' (training), 'center' (evaluation) or a number."""
    room = max(0.0, duration - span)
    if start == "random":
        return float((rng or np.random.default_rng()).uniform(0.0, room))
    if start == "center":
        return room / 2
    return float(start)


def clip_times(duration, source_fps, num_frames=CLIP_FRAMES, fps=SAMPLE_FPS, start="center",
               rng=None):
    """The num_frames sampling times of a clip at fps. start: 'random', 'center' or seconds."""
    t0 = clip_start(duration, (num_frames - 1) / fps, start, rng)
    # on a source frame: no target falls halfway between two frames
    if start == "center":
        t0 = math.floor(t0 * source_fps) / source_fps
    return t0 + np.arange(num_frames) / fps


def read_clip(path, num_frames=CLIP_FRAMES, fps=SAMPLE_FPS, start="center", rng=None,
              size=CANVAS) -> np.ndarray:
    """A clip of num_frames frames at fps, uint8 (T, size, size, 3).
    start: 'random', 'center' or seconds."""
    return read_frames(path, lambda duration, source_fps: clip_times(duration, source_fps,
                                                                     num_frames, fps, start, rng),
                       size)


def read_image(path, size=CANVAS) -> np.ndarray:
    """An image file (JPEG, PNG, ...) on the canvas, uint8 (size, size, 3):
    to FFmpeg it is a one-frame video."""
    return read_frames(path, [0.0], size)[0]

# -----------------------------------------------------------------------------
# writing


def open_writer(path, fps, width, height, gop=None, crf=18, fmt=None):
    """An output container and stream;
    the codec follows the extension (.webm: VP9, otherwise H.264)."""
    # bitexact: no random IDs or dates in the container,
    # so the same frames always give the same bytes
    container = av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"})
    webm = str(path).endswith(".webm") or fmt == "webm"
    stream = container.add_stream("libvpx-vp9" if webm else "libx264",
                                  rate=Fraction(fps).limit_denominator(1000))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    options = {"crf": str(crf)}
    if webm:
        options.update({"b": "0", "deadline": "realtime", "cpu-used": "8"})
    else:
        # no B-frames (frames decode in order);
        # fastdecode (no CABAC, no deblocking) decodes ~2x faster
        options.update({"preset": "veryfast", "bf": "0", "tune": "fastdecode"})
    if gop:
        options["g"] = str(gop)
    stream.options = options
    return container, stream


def write_video(path, frames: np.ndarray, fps, gop=None, crf=18) -> None:
    """Write uint8 frames (T, H, W, 3) as a video file at fps (H and W must be even for yuv420p)."""
    T, H, W, _ = frames.shape
    if H % 2 or W % 2:
        raise ValueError(f"{path}: frame size {W}x{H} must be even for yuv420p video")
    container, stream = open_writer(path, fps, W, H, gop, crf)
    with container:
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

def write_image(path, image: np.ndarray) -> None:
    """Write uint8 (H, W, 3) as an image; the format follows the extension (.png lossless, .jpg)."""
    png = str(path).lower().endswith(".png")
    with av.open(str(path), "w", format="image2", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("png" if png else "mjpeg")
        stream.width, stream.height = image.shape[1], image.shape[0]
        stream.pix_fmt = "rgb24" if png else "yuvj444p"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode())

# -----------------------------------------------------------------------------
# prepare: transcode once to 3.75 fps, 256-pixel short side, short GOPs, one-minute segments


def even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


SETTINGS = ("fps", "short_side", "segment_seconds", "gop", "crf")    # a marker with others: redo
PARTIAL = re.compile(r"\..+_s\d{3,}\.mp4\.partial|.+\.prepared\.json\.partial")   # a killed run's


def prepare_file(job) -> tuple:
    """Transcode one source file into segments <stem>_sNNN.mp4, then write <stem>.prepared.json.
    Segments are written under hidden temporary names and renamed when complete, and the marker
    comes last, so a killed run leaves no half-written video under a real name and no marker:
    the next run redoes the file.
    Returns (source, 'done' | 'redone' | 'skipped' | error); redone: old segments removed first."""
    src, out_dir, settings, threads = job
    fps, short_side, segment_seconds, gop, crf = (settings[name] for name in SETTINGS)
    stem = os.path.splitext(os.path.basename(src))[0]
    marker = os.path.join(out_dir, stem + ".prepared.json")
    stat = os.stat(src)
    mine = re.compile(re.escape(stem) + r"_s\d{3,}\.mp4")     # not stem_s000_s000.mp4: stem_s000's
    existing = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    existing = [name for name in existing if mine.fullmatch(name)]
    try:
        with open(marker) as f:
            done = json.load(f)
    except (OSError, ValueError):                               # none, or damaged: redo the file
        done = {}
    if (done.get("source_size") == stat.st_size and done.get("source_mtime") == stat.st_mtime
            and all(done.get(name) == settings[name] for name in SETTINGS)
            and done.get("segments") and set(done["segments"]) <= set(existing)):
        for name in set(existing) - set(done["segments"]):         # the loaders would take it too
            remove_if_there(os.path.join(out_dir, name))
        return src, "skipped"
    # Older source, other settings or an unfinished run: old segments would stay beside the new
    # (a longer --segment_seconds cuts fewer) and be loaded too. The marker goes first: none lists
    # a removed segment.
    remove_if_there(marker)
    for name in existing:
        remove_if_there(os.path.join(out_dir, name))
    os.makedirs(out_dir, exist_ok=True)
    try:
        container, stream = open_video(src, threads)
        with container:
            duration = duration_of(container, stream)
            planned = max(1, math.floor(duration * fps))      # output frames, from the header
            per_segment = segment_seconds * fps
            num_segments = max(1, round(planned / per_segment))
            seg_len = math.ceil(planned / num_segments)       # about a minute each, none tiny
            width, height = stream.codec_context.width, stream.codec_context.height
            scale = short_side / min(width, height)
            out_w, out_h = even(width * scale), even(height * scale)
            segments, writer, n = [], None, 0
            frame_time_base = 1 / Fraction(fps).limit_denominator(1000)
            origin = start_of(stream)
            previous = None

            def emit(frame):
                nonlocal writer, n
                if writer is None or (n % seg_len == 0 and len(segments) < num_segments):
                    close(writer)
                    name = f"{stem}_s{len(segments):03d}.mp4"
                    tmp = os.path.join(out_dir, f".{name}.partial")
                    writer = (*open_writer(tmp, fps, out_w, out_h, gop, crf, fmt="mp4"), tmp, name)
                    segments.append(name)
                out = frame.reformat(width=out_w, height=out_h, format="yuv420p",
                                     interpolation="AREA")
                out.pts = n - seg_len * (len(segments) - 1)      # our clock, not the source's
                out.time_base = frame_time_base
                writer[0].mux(writer[1].encode(out))
                n += 1

            def close(w):
                if w is not None:
                    w[0].mux(w[1].encode())
                    w[0].close()
                    # complete: give it its real name
                    os.replace(w[2], os.path.join(out_dir, w[3]))

            for frame in container.decode(stream):      # resample by nearest timestamp
                t = frame.time - origin
                while t >= n / fps:
                    target = n / fps
                    emit(previous[0] if previous and target - previous[1] < t - target else frame)
                previous = (frame, t)
            if n == 0:
                raise VideoError("no decodable video frames")
            close(writer)
    except (VideoError, av.error.FFmpegError, OSError, ValueError) as e:
        return src, f"{type(e).__name__}: {e}"
    with open(marker + ".partial", "w") as f:
        json.dump({"source": os.path.abspath(src), "source_size": stat.st_size,
                   "source_mtime": stat.st_mtime, **settings, "frames": n, "segments": segments}, f)
    os.replace(marker + ".partial", marker)
    return src, "redone" if existing or done else "done"


def find_videos(root) -> list:
    """Every video file under root, at any depth, in sorted order
    (hidden files and folders are skipped)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such folder: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if is_video(f)]
    return found


def check_folders(src_root, dst_root):
    """Stop before writing anything when DST cannot be our folder, or when the trees overlap (links
    followed): with DST = SRC, an output (a_s000.mp4) overwrites a source of that name; with DST
    inside SRC (or SRC inside DST), each rerun prepares the last one's outputs again, deeper."""
    check_out_folder(dst_root, flag="DST")
    src, dst = os.path.realpath(src_root), os.path.realpath(dst_root)
    if src == dst:
        raise ValueError(f"DST {dst_root} is SRC {src_root}: write the prepared files elsewhere")
    if os.path.commonpath([src, dst]) == src:
        raise ValueError(f"DST {dst_root} lies inside SRC {src_root}: "
                         f"write the prepared files outside it")
    if os.path.commonpath([src, dst]) == dst:
        raise ValueError(f"SRC {src_root} lies inside DST {dst_root}: "
                         f"write the prepared files elsewhere")


def prepare(src_root, dst_root, workers=4, fps=SAMPLE_FPS, short_side=CANVAS, segment_seconds=60,
            gop=16, crf=20):
    """Transcode every video under src_root into dst_root, mirroring the folder tree. Resumable: a
    file whose marker records these settings is skipped, any other is redone."""
    check_folders(src_root, dst_root)
    sources = find_videos(src_root)
    if not sources:
        raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {src_root}")
    # outputs are named by the source's stem:
    # clip.mp4 and clip.webm in one folder would overwrite each other
    by_output = {}
    for source in sources:
        output = os.path.splitext(os.path.relpath(source, src_root))[0]
        by_output.setdefault(output, []).append(source)
    collisions = [names for names in by_output.values() if len(names) > 1]
    if collisions:
        shown = "; ".join(" and ".join(os.path.relpath(n, src_root) for n in names)
                          for names in collisions[:5])
        more = f" (and {len(collisions) - 5} more)" if len(collisions) > 5 else ""
        raise ValueError(f"{len(collisions)} pair(s) of files under {src_root} differ only in "
                         "their extension and would be prepared into the same files: "
                         f"{shown}{more}; rename one of each")
    # two runs into one folder would write the same segments at once; the lock file, DST/.lock, is
    # hidden and no video: find_videos and the loaders never take it
    hold_folder(dst_root, flag="DST")
    for folder, _, names in os.walk(dst_root):        # we hold the folder: these are killed runs'
        for name in filter(PARTIAL.fullmatch, names):
            remove_if_there(os.path.join(folder, name))
    settings = dict(zip(SETTINGS, (fps, short_side, segment_seconds, gop, crf)))
    threads = 0 if workers <= 1 else 1                    # 0: let FFmpeg pick when alone
    jobs = [(s, os.path.join(dst_root, os.path.relpath(os.path.dirname(s), src_root)), settings,
             threads) for s in sources]
    counts = {"done": 0, "skipped": 0, "failed": 0, "redone": 0}    # redone: also counted as done
    with Pool(max(1, workers)) as pool:
        results = pool.imap_unordered(prepare_file, jobs)
        for src, status in tqdm(results, total=len(jobs), desc="prepare"):
            counts["redone"] += status == "redone"
            status = "done" if status == "redone" else status
            if status in counts:
                counts[status] += 1
            else:
                counts["failed"] += 1
                warnings.warn(f"skipping {src}: {status}")
    release_folder(dst_root)               # an in-process caller's later runs may write here again
    return counts


if __name__ == "__main__":
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="transcode a folder of videos once for fast training",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("src", help="folder of source videos (searched recursively)")
    p.add_argument("dst", help="output folder; the source tree is mirrored under it")
    p.add_argument("--workers", type=positive_int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="parallel processes")
    p.add_argument("--fps", type=positive_float, default=SAMPLE_FPS, help="output frame rate")
    p.add_argument("--short_side", type=positive_int, default=CANVAS,
                   help="output short side (pixels)")
    p.add_argument("--segment_seconds", type=positive_float, default=60,
                   help="cut long recordings into segments of about this")
    p.add_argument("--gop", type=positive_int, default=16, help="frames between keyframes")
    crf_range = checked(int, lambda v: 0 <= v <= 51, "a whole number from 0 to 51")
    p.add_argument("--crf", type=crf_range, default=20,
                   help="H.264 quality: lower is better and bigger")
    args = parser.parse_args()
    try:
        counts = prepare(args.src, args.dst, args.workers, args.fps, args.short_side,
                         args.segment_seconds, args.gop, args.crf)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    print(f"prepared {counts['done']}, already done {counts['skipped']}, "
          f"failed {counts['failed']} -> {args.dst}")
    if counts["redone"]:
        print(f"{counts['redone']} of them made before (older source, other settings or an "
              f"unfinished run): their old segments were removed first")
    if counts["failed"] and not counts["done"] + counts["skipped"]:
        fail(f"not one of the {counts['failed']} files under {args.src} could be prepared "
             "(see the warnings above)")
