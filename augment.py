"""
Augmentation, batched on the device: uint8 clips (N, T, S, S, 3) from the data loaders -> the
normalised float (N, 3, T, s, s) the models take. One random resized crop and flip per clip (the
same box for all its frames, so motion is left intact), or the centre crop for evaluation; crop,
flip and resize are one bilinear grid_sample over the whole batch, on the GPU when the clips are
there, so no per-frame work is left in the loader processes.
"""

import math

import torch
import torch.nn.functional as F

# the paper's; also the MAE's pixel target
VIDEO_MEAN, VIDEO_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def sample_crops(n, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), flip=True, generator=None, device=None,
                 tries=10):
    """Random resized crop boxes as fractions of a square canvas, torchvision's recipe, vectorised:
    area fraction ~ U(scale), log aspect ~ U(log ratio); the first of `tries` candidates that fits,
    else the whole canvas; the position uniform where it fits. Returns boxes (n, 4) = (centre x,
    centre y, width, height) and flips (n,)."""
    u = torch.rand(n, tries, 4, generator=generator, device=device)
    area = scale[0] + (scale[1] - scale[0]) * u[..., 0]
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1])
    w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)        # (n, tries)
    fits = (w <= 1) & (h <= 1)
    first = fits.float().argmax(dim=1, keepdim=True)     # index of the first candidate that fits
    pick = lambda x: x.gather(1, first).squeeze(1)
    any_fit = fits.any(dim=1)
    w = torch.where(any_fit, pick(w), torch.ones_like(pick(w)))
    h = torch.where(any_fit, pick(h), torch.ones_like(pick(h)))
    cx = w / 2 + (1 - w) * pick(u[..., 2])
    cy = h / 2 + (1 - h) * pick(u[..., 3])
    flips = (torch.rand(n, generator=generator, device=device) < 0.5 if flip
             else torch.zeros(n, dtype=torch.bool, device=device))
    return torch.stack([cx, cy, w, h], dim=1), flips


def augment(clips, train, img_size=224, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), flip=True,
            mean=VIDEO_MEAN, std=VIDEO_STD, eval_crop=0.875, generator=None, crops=None):
    """uint8 clips (N, T, S, S, 3) -> float (N, 3, T, img_size, img_size), on whatever device the
    clips are on. Training: a random resized crop per clip (one box for all its frames) and a random
    flip (flip=False for SSV2, whose labels say left and right). Evaluation: the centre eval_crop of
    the canvas (224 of 256). Crop, flip and resize are one bilinear grid_sample over the whole
    batch. crops: (boxes, flips) from sample_crops, to decide the crops elsewhere (a DDP rank
    takes its slice of crops drawn for the global batch)."""
    N, T, S, _, C = clips.shape
    if crops is not None:
        boxes, flips = crops
    elif train:
        boxes, flips = sample_crops(N, scale, ratio, flip, generator, clips.device)
    else:
        boxes = torch.tensor([[0.5, 0.5, eval_crop, eval_crop]], device=clips.device).expand(N, 4)
        flips = torch.zeros(N, dtype=torch.bool, device=clips.device)
    mean = torch.tensor(mean, device=clips.device).view(1, 1, C, 1, 1) * 255
    std = torch.tensor(std, device=clips.device).view(1, 1, C, 1, 1) * 255
    x = clips.permute(0, 1, 4, 2, 3).contiguous().float()   # (N, T, 3, S, S); uint8 moves faster
    if crops is None and not train and eval_crop == 1.0 and S == img_size:
        # the whole canvas as it is: no resampling
        return ((x - mean) / std).transpose(1, 2).contiguous()
    cx, cy, w, h = boxes.unbind(1)
    theta = torch.zeros(N, 2, 3, device=clips.device)    # output [-1, 1]^2 -> canvas [-1, 1]^2
    theta[:, 0, 0] = torch.where(flips, -w, w)           # a negative x scale mirrors the crop
    theta[:, 0, 2] = 2 * cx - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * cy - 1
    # one grid per clip, its T frames stacked as channels: T times less grid than one per frame
    grid = F.affine_grid(theta, [N, T * C, img_size, img_size], align_corners=False)  # (N, s, s, 2)
    x = F.grid_sample(x.view(N, T * C, S, S), grid, mode="bilinear", padding_mode="border",
                      align_corners=False)                               # (N, T*3, s, s)
    x = (x.view(N, T, C, img_size, img_size) - mean) / std
    return x.transpose(1, 2).contiguous()                               # (N, 3, T, s, s)
