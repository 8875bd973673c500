"""Synthetic test videos whose frames carry their own index, written and read with PyAV like real data."""

import numpy as np

from video import write_video

GRID = (3, 4)                       # rows x columns of black/white blocks: 12 bits, frame indices up to 4095


def indexed_frames(n, size=96, width=None):
    """uint8 (n, size, width, 3): frame i shows the bits of i as blocks (row-major, most significant first)."""
    width = width or size
    rows, cols = GRID
    frames = np.zeros((n, size, width, 3), np.uint8)
    for i in range(n):
        bits = [(i >> (rows * cols - 1 - b)) & 1 for b in range(rows * cols)]
        blocks = np.array(bits, np.uint8).reshape(rows, cols) * 255
        frames[i] = np.kron(blocks, np.ones((size // rows, width // cols), np.uint8))[..., None]
    return frames


def read_indices(frames):
    """The frame indices shown by decoded frames (T, H, W, 3) of any size: the mean of each block's centre."""
    T, H, W, _ = frames.shape
    rows, cols = GRID
    indices = []
    for f in frames.astype(np.float32).mean(-1):
        bits = [int(f[int((r + 0.3) * H / rows):int((r + 0.7) * H / rows),
                      int((c + 0.3) * W / cols):int((c + 0.7) * W / cols)].mean() > 127)
                for r in range(rows) for c in range(cols)]
        indices.append(int("".join(map(str, bits)), 2))
    return indices


def write_indexed_video(path, n, fps, size=96, width=None, gop=None):
    write_video(path, indexed_frames(n, size, width), fps, gop=gop)
    return path
