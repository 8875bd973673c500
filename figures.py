"""
Figures the scripts draw: rows of clip frames (the paper's Figure 1: original / masked /
reconstruction), curves from a run's log, t-SNE panels (Figure 3), and the OOD figures (6b: accuracy
per dataset; 6c: class-token attention). matplotlib only, written straight to PNG files (no display
needed).
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from augment import augment  # noqa: E402
from data import ImageClipDataset, Unreadable  # noqa: E402


def to_pixels(video, mean, std) -> np.ndarray:
    """Normalised (3, T, H, W) -> displayable (T, H, W, 3) floats in [0, 1]."""
    mean = torch.tensor(mean, dtype=video.dtype, device=video.device).view(3, 1, 1, 1)
    std = torch.tensor(std, dtype=video.dtype, device=video.device).view(3, 1, 1, 1)
    return (video * std + mean).clamp(0, 1).permute(1, 2, 3, 0).float().cpu().numpy()


def clip_rows(rows, path, title=None, frames=None):
    """rows: (label, (T, H, W, 3) floats in [0, 1]) drawn top to bottom, frames left to right
    (every frame, or the indices in `frames`).
    A masked row may mark hidden pixels with NaN: they are drawn grey."""
    T = len(rows[0][1])
    frames = list(range(T)) if frames is None else list(frames)
    figsize = (len(frames) * 0.85, len(rows) * 0.95)
    fig, axes = plt.subplots(len(rows), len(frames), figsize=figsize, squeeze=False)
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


def completion_rows(video, masked, filled, mean, std, path, title=None, last="reconstruction",
                    frames=None):
    """The paper's Figure 1 (and its interpolation figure): original / masked / filled-in rows of
    one clip. Each argument is a normalised (3, T, H, W) tensor; masked has NaN where tubes are
    hidden (MaskedAutoencoder.fill_in)."""
    rows = [("original", video), ("masked", masked), (last, filled)]
    clip_rows([(label, to_pixels(x.float(), mean, std)) for label, x in rows], path, title, frames)


def curves(records, keys, path, xlabel="step", log_y=True):
    """Plot record[key] against record[xlabel] for each key present in the records
    (a run's JSON-lines log)."""
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
    """t-SNE of pooled features, one panel per model side by side (the paper's Figure 3: 0, 10
    and 50 shots). panels: (title, features (n, D), labels (n,)); points coloured by class,
    one legend for all."""
    from sklearn.manifold import TSNE                   # only this figure needs scikit-learn
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.8, 3.6), squeeze=False)
    shown = sorted({int(y) for _, _, labels in panels for y in labels})
    colours = plt.get_cmap("tab20" if len(shown) > 10 else "tab10")
    for ax, (title, features, labels) in zip(axes[0], panels):
        perplexity = min(30.0, (len(features) - 1) / 3)                 # t-SNE needs perplexity < n
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
        for i, y in enumerate(shown):
            rows = labels == y
            ax.scatter(xy[rows, 0], xy[rows, 1], s=6, color=colours(i % colours.N),
                       label=classes[y])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5),
                       frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)

# -----------------------------------------------------------------------------
# OOD robustness (eval_ood.py): Figures 6b and 6c


def bar_chart(models, order, path):
    """Figure 6b: accuracy per dataset (in `order`), the models side by side, the mean last;
    below, the first minus the second."""
    datasets = [d for d in order if any(d in m["datasets"] for m in models)] + ["mean"]
    value = lambda m, d: 100 * (m["mean"] if d == "mean"
                                else m["datasets"].get(d, {}).get("accuracy", np.nan))
    two = len(models) > 1
    figsize = (max(6, 0.55 * len(datasets) + 1), 5.5 if two else 3.2)
    fig, axes = plt.subplots(2 if two else 1, 1, figsize=figsize, squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1]} if two else None)
    x, width = np.arange(len(datasets)), 0.8 / len(models)
    for i, m in enumerate(models):
        axes[0][0].bar(x + (i - (len(models) - 1) / 2) * width, [value(m, d) for d in datasets],
                       width, label=f"{m['name']} (mean {100 * m['mean']:.1f}%)")
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(fontsize=7)
    if two:
        diff = [value(models[0], d) - value(models[1], d) for d in datasets]
        axes[1][0].bar(x, diff, 0.6, color=["tab:green" if v >= 0 else "tab:red" for v in diff])
        axes[1][0].axhline(0, color="k", lw=0.6)
        axes[1][0].set_ylabel(f"{models[0]['name']} - {models[1]['name']}\n(points)", fontsize=8)
        for xi, v in zip(x, diff):
            if not np.isnan(v):
                axes[1][0].annotate(f"{v:+.0f}", (xi, v), ha="center",
                                    va="bottom" if v >= 0 else "top", fontsize=6)
    for ax in axes[:, 0]:
        ax.set_xticks(x, datasets, rotation=45, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


@torch.no_grad()
def class_token_attention(model, video):
    """The last block's attention from the class token to every tube token, averaged over heads and
    over time (a static clip shows the same image in every slot), upsampled to the image: (N, H, W),
    each map summing to 1 before upsampling. SDPA does not return its weights, so they are
    recomputed from the block's own q and k."""
    block, captured = model.blocks[-1], {}
    hook = block.norm1.register_forward_hook(
        lambda module, inputs, output: captured.update(x=output))
    model(video)
    hook.remove()
    x = captured["x"].float()                          # (N, 1 + L, D): what the attention sees
    N, n_tokens, D = x.shape
    heads = block.attn.heads
    qkv = block.attn.qkv.float()(x).view(N, n_tokens, 3, heads, D // heads)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4)               # each (N, heads, 1 + L, D/heads)
    # (N, heads, 1, 1 + L)
    weights = (q[:, :, :1] @ k.transpose(-2, -1) / math.sqrt(D // heads)).softmax(-1)
    t, h, w = model.cfg.grid
    maps = weights.mean(1)[:, 0, 1:].reshape(N, t, h, w).mean(1)      # (N, h, w)
    maps = maps / maps.sum((1, 2), keepdim=True)
    return F.interpolate(maps[:, None], size=video.shape[-2:], mode="bilinear",
                         align_corners=False)[:, 0]


def attention_figure(loaded, items, args, device, path):
    """Figure 6c: rows of images; the image, then each model's class-token attention over it."""
    count = min(args.attention_images, len(items))
    pick = np.linspace(0, len(items) - 1, count).round().astype(int)
    dataset = ImageClipDataset(items, num_frames=1, size=args.canvas)
    read = {i: dataset[i] for i in pick}
    pick = [i for i in pick if not isinstance(read[i], Unreadable)]  # unreadable: left out (warned)
    if not pick:
        return
    clips = torch.stack([read[i][0][0] for i in pick])                # (N, S, S, 3) uint8
    figsize = (1.6 * (1 + len(loaded)), 1.6 * len(pick))
    fig, axes = plt.subplots(len(pick), 1 + len(loaded), figsize=figsize, squeeze=False)
    for col, (name, model, _, mean_std) in enumerate(loaded, start=1):
        video = augment(clips.expand(-1, model.cfg.frames, -1, -1, -1).to(device), train=False,
                        img_size=model.cfg.img_size, eval_crop=args.eval_crop,
                        mean=mean_std[0], std=mean_std[1])
        maps = class_token_attention(model, video).cpu()              # (N, s, s)
        images = to_pixels(video[:, :, 0].transpose(0, 1), *mean_std)  # first frames, (N, s, s, 3)
        for row in range(len(pick)):
            if col == 1:
                axes[row][0].imshow(images[row])
            axes[row][col].imshow(images[row])
            axes[row][col].imshow(maps[row], cmap="inferno", alpha=0.6)
        axes[0][col].set_title(name, fontsize=8)
    axes[0][0].set_title(args.attention_dataset, fontsize=8)
    for row, i in enumerate(pick):                      # the category each image shows
        axes[row][0].set_ylabel(items.classes[items.labels[i]], fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=130)
    plt.close(fig)
