"""Helpers the tests share: small models, the authors' checkpoint format, a toy classifier and its pair score."""

import numpy as np
import torch
import torch.nn.functional as F

from augment import augment
from model import VideoClassifier, make_config
from toy.world import ACTION_PAIRS

# A few-thousand-parameter MAE for fast CPU tests: 4 frames of 32x32, 2x8x8 tubes -> a (2, 4, 4) grid of 32 tokens.
SMALL = dict(width=32, depth=2, heads=2, patch=8, img_size=32, frames=4, decoder_width=32, decoder_depth=1,
             decoder_heads=2)


def small_cfg(**kw):
    return make_config("toy", **{**SMALL, **kw})


def released_format(state_dict):
    """Write a state dict the way the authors' released checkpoints store it: separate q, k, v."""
    out = {}
    for k, v in state_dict.items():
        if ".attn.qkv." in k:
            base, leaf = k.split(".attn.qkv.")
            for name, part in zip("qkv", v.chunk(3, dim=0)):
                out[f"{base}.attn.{name}.{leaf}"] = part.clone()
        else:
            out[k] = v.clone()
    return out


VIDEO_STEPS = 600       # the small-budget guard of the learnability claim (docs/toyworld.md gives the full run)


def train_classifier(frames, labels, val_frames, steps, single_frames=False, seed=0):
    """The project's classifier at the toy preset, trained from scratch; returns its validation logits.
    single_frames: an image model on one random frame per clip, evaluated by averaging logits over all frames
    (the paper's S-Img evaluation)."""
    torch.manual_seed(seed)
    u8 = lambda f: (f.clamp(0, 1) * 255).round().to(torch.uint8)
    frames, val_frames = u8(frames), u8(val_frames)
    cfg = dict(frames=1, t_patch=1) if single_frames else {}
    model = VideoClassifier(make_config("toy", num_classes=int(labels.max()) + 1, **cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(frames), (32,), generator=g)
        x = frames[idx]
        if single_frames:
            x = x[torch.arange(32), torch.randint(x.shape[1], (32,), generator=g)][:, None]
        x = augment(x, train=True, img_size=64, flip=False, scale=(0.6, 1.0), generator=g)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        if single_frames:
            x = augment(val_frames.flatten(0, 1)[:, None], train=False, img_size=64, eval_crop=1.0)
            logits = torch.cat([model(c) for c in x.split(512)])
            return logits.view(len(val_frames), -1, logits.shape[-1]).mean(1)
        x = augment(val_frames, train=False, img_size=64, eval_crop=1.0)
        return torch.cat([model(c) for c in x.split(128)])


def within_pair_accuracy(logits, labels, classes):
    """For each mirror pair, on that pair's clips: how often the right one of its two classes scores higher.
    logits (n, C) and labels (n,): torch tensors or numpy arrays (finetune.py's predictions.npz holds them)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    accuracies = []
    for forwards, backwards in ACTION_PAIRS:
        i, j = classes.index(forwards), classes.index(backwards)
        rows = (labels == i) | (labels == j)
        pick = np.where(logits[rows, i] > logits[rows, j], i, j)
        accuracies.append(float(np.mean(pick == labels[rows])))
    return accuracies
