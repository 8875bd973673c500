"""
Figures the scripts draw: rows of clip frames (the paper's Figure 1: original / masked / reconstruction) and
curves from a run's log. matplotlib only, written straight to PNG files (no display needed).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402


def to_pixels(video, mean, std) -> np.ndarray:
    """Normalised (3, T, H, W) -> displayable (T, H, W, 3) floats in [0, 1]."""
    mean = torch.tensor(mean, dtype=video.dtype, device=video.device).view(3, 1, 1, 1)
    std = torch.tensor(std, dtype=video.dtype, device=video.device).view(3, 1, 1, 1)
    return (video * std + mean).clamp(0, 1).permute(1, 2, 3, 0).float().cpu().numpy()


def clip_rows(rows, path, title=None, frames=None):
    """rows: (label, (T, H, W, 3) floats in [0, 1]) drawn top to bottom, frames left to right (every frame, or the
    indices in `frames`). A masked row may mark hidden pixels with NaN: they are drawn grey."""
    T = len(rows[0][1])
    frames = list(range(T)) if frames is None else list(frames)
    fig, axes = plt.subplots(len(rows), len(frames), figsize=(len(frames) * 0.85, len(rows) * 0.95), squeeze=False)
    for r, (label, clip) in enumerate(rows):
        for c, t in enumerate(frames):
            image = np.where(np.isnan(clip[t]), 0.5, clip[t])
            axes[r][c].imshow(image, interpolation="nearest")
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(f"t={t}", fontsize=6)
        axes[r][0].set_ylabel(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def completion_rows(video, masked, filled, mean, std, path, title=None, last="reconstruction", frames=None):
    """The paper's Figure 1 (and its interpolation figure): original / masked / filled-in rows of one clip. Each
    argument is a normalised (3, T, H, W) tensor; masked has NaN where tubes are hidden (MaskedAutoencoder.fill_in)."""
    rows = [("original", video), ("masked", masked), (last, filled)]
    clip_rows([(label, to_pixels(x.float(), mean, std)) for label, x in rows], path, title, frames)


def curves(records, keys, path, xlabel="step", log_y=True):
    """Plot record[key] against record[xlabel] for each key present in the records (a run's JSON-lines log)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key in keys:
        points = [(r[xlabel], r[key]) for r in records if key in r and xlabel in r]
        if points:
            x, y = zip(*points)
            ax.plot(x, y, label=key, lw=1)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def embedding_panels(panels, classes, path, seed=0):
    """t-SNE of pooled features, one panel per model side by side (the paper's Figure 3: 0, 10 and 50 shots).
    panels: (title, features (n, D), labels (n,)); points coloured by class, one legend for all."""
    from sklearn.manifold import TSNE                                     # only this figure needs scikit-learn
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.8, 3.6), squeeze=False)
    shown = sorted({int(y) for _, _, labels in panels for y in labels})
    colours = plt.get_cmap("tab20" if len(shown) > 10 else "tab10")
    for ax, (title, features, labels) in zip(axes[0], panels):
        perplexity = min(30.0, (len(features) - 1) / 3)                 # t-SNE needs perplexity < n
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
        for i, y in enumerate(shown):
            rows = labels == y
            ax.scatter(xy[rows, 0], xy[rows, 1], s=6, color=colours(i % colours.N), label=classes[y])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
