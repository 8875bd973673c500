"""
Tube tokens and masks: the first chapter.

A video clip is a tensor (B, C, T, H, W). A spatiotemporal MAE cuts it into little boxes
("tubes") of t_patch frames x patch x patch pixels, e.g. 2 x 14 x 14 in the paper, so a
16 x 224 x 224 clip becomes a grid of (16/2) x (224/14) x (224/14) = 8 x 16 x 16 = 2048 tokens,
each holding 2*14*14*3 = 1176 numbers.

Conventions (they match the authors' released checkpoints, so their decoders' outputs mean the
same here):
- tokens are ordered T-major: token index = (t * h + y) * w + x over the (t, h, w) grid;
- the numbers inside a token are ordered (dt, dy, dx, c): channel fastest, then column, row
  and frame.

A mask says which tokens the encoder sees. We never zero pixels out; we store *indices*:
- ids_keep    (B, K)  the positions of the K visible tokens, ascending, that the encoder gathers;
- ids_restore (B, L)  for each original position, where it sits in the sequence
                      [visible..., hidden...], so the decoder can put its tokens back in order
                      with one gather;
- mask        (B, L)  1.0 where a token is hidden (what the loss is computed on), 0.0 where it
                      is visible.
Every sample in a batch keeps the same number K of tokens, so the visible tokens stack into one
tensor.
"""

from typing import NamedTuple, Optional, Tuple

import torch


# -----------------------------------------------------------------------------
# patchify / unpatchify


def token_grid(frames: int, height: int, width: int, t_patch: int,
               patch: int) -> Tuple[int, int, int]:
    """The (t, h, w) token grid of a clip, with a clear error when the clip does not tile."""
    if frames % t_patch != 0:
        raise ValueError(f"frames ({frames}) must be divisible by t_patch ({t_patch})")
    if height % patch != 0 or width % patch != 0:
        raise ValueError(f"image size {height}x{width} must be divisible by patch ({patch})")
    return frames // t_patch, height // patch, width // patch


def patchify(video: torch.Tensor, t_patch: int, patch: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, L, t_patch*patch*patch*C) with L = (T/t_patch)(H/patch)(W/patch)."""
    if video.dim() != 5:
        raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
    B, C, T, H, W = video.shape
    t, h, w = token_grid(T, H, W, t_patch, patch)
    # split each axis into (grid, within-tube)
    x = video.reshape(B, C, t, t_patch, h, patch, w, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)                    # (B, t, h, w, dt, dy, dx, C)
    return x.reshape(B, t * h * w, t_patch * patch * patch * C)


def unpatchify(tokens: torch.Tensor, t_patch: int, patch: int,
               size: Tuple[int, int, int]) -> torch.Tensor:
    """The exact inverse of patchify: (B, L, t_patch*patch*patch*C) -> (B, C, T, H, W),
    size = (T, H, W)."""
    T, H, W = size
    t, h, w = token_grid(T, H, W, t_patch, patch)
    B, L, P = tokens.shape
    C = P // (t_patch * patch * patch)
    if L != t * h * w or P != t_patch * patch * patch * C:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not tile a clip of size {size} "
                         f"with {t_patch}x{patch}x{patch} tubes")
    x = tokens.reshape(B, t, h, w, t_patch, patch, patch, C)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)                    # (B, C, t, dt, h, dy, w, dx)
    return x.reshape(B, C, T, H, W)


# -----------------------------------------------------------------------------
# masks as index tensors


class Mask(NamedTuple):
    ids_keep: torch.Tensor     # (B, K) long, visible positions in ascending order
    ids_restore: torch.Tensor  # (B, L) long, position of each token in [visible..., hidden...]
    mask: torch.Tensor         # (B, L) float, 1 = hidden, 0 = visible


def check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")


def mask_from_hidden(hidden: torch.Tensor, num_keep: Optional[int] = None) -> Mask:
    """Turn a boolean (B, L) 'hidden' map into index form. Every row must hide the same number of
    tokens. A caller that knows how many tokens each row keeps passes num_keep: the map is then
    not checked, because reading a count back from the GPU would stall the CPU until the GPU has
    caught up (a host sync per step)."""
    B, L = hidden.shape
    if num_keep is None:
        num_hidden = hidden.sum(dim=1)
        if not bool((num_hidden == num_hidden[0]).all()):
            raise ValueError("every sample in a batch must hide the same number of tokens")
        num_keep = L - int(num_hidden[0])
    if num_keep == 0:
        raise ValueError(f"the mask hides all {L} tokens; "
                         "the encoder needs at least one visible token")
    # A stable sort of 0 (visible) before 1 (hidden) lists the visible positions first,
    # in ascending order.
    ids_shuffle = torch.argsort(hidden.to(torch.int8), dim=1, stable=True)   # (B, L)
    ids_restore = torch.argsort(ids_shuffle, dim=1)          # (B, L), the inverse permutation
    return Mask(ids_keep=ids_shuffle[:, :num_keep], ids_restore=ids_restore, mask=hidden.float())


def random_mask(batch: int, grid: Tuple[int, int, int], ratio: float, device=None,
                generator: Optional[torch.Generator] = None) -> Mask:
    """The paper's mask: hide a random `ratio` of all space-time tokens, independently per sample.
    Exactly int(L * (1 - ratio)) tokens stay visible (204 of 2048 at 0.9)."""
    check_ratio(ratio)
    L = grid[0] * grid[1] * grid[2]
    num_keep = int(L * (1 - ratio))
    if num_keep == 0:
        raise ValueError(f"mask ratio {ratio} keeps no token of {L}")
    noise = torch.rand(batch, L, generator=generator,
                       device=generator.device if generator else device)
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)  # (B, L), each token's rank in its row
    return mask_from_hidden((rank >= num_keep).to(device), num_keep)


def tube_mask(batch: int, grid: Tuple[int, int, int], ratio: float, device=None,
              generator: Optional[torch.Generator] = None) -> Mask:
    """VideoMAE's mask: hide the same random spatial positions in every time slot (a 'tube' through
    time), so a hidden patch can never be copied from the same place one time slot away."""
    check_ratio(ratio)
    t, h, w = grid
    num_keep = int(h * w * (1 - ratio))
    if num_keep == 0:
        raise ValueError(f"mask ratio {ratio} keeps no spatial position of {h * w}")
    noise = torch.rand(batch, h * w, generator=generator,
                       device=generator.device if generator else device)
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)       # (B, h*w)
    # (B, t, h*w), the same in every slot
    hidden = (rank >= num_keep).unsqueeze(1).expand(batch, t, h * w)
    return mask_from_hidden(hidden.reshape(batch, t * h * w).to(device), t * num_keep)


def slots_mask(batch: int, grid: Tuple[int, int, int], first: int, num_slots: int,
               device=None) -> Mask:
    """Hide time slots first .. first + num_slots - 1 in every sample. The map is filled on the
    device itself, and the kept count is known here, so nothing is copied to or read back from
    a GPU."""
    t, h, w = grid
    slots = torch.zeros(t, dtype=torch.bool, device=device)
    slots[first:first + num_slots] = True
    hidden = slots.view(1, t, 1).expand(batch, t, h * w)                # (B, t, h*w)
    return mask_from_hidden(hidden.reshape(batch, t * h * w), (t - num_slots) * h * w)


def center_mask(batch: int, grid: Tuple[int, int, int], num_slots: int, device=None) -> Mask:
    """Hide the central num_slots time slots: the paper's interpolation test hides 2 slots of 8,
    i.e. frames 6-9 of a 16-frame clip, and asks the model to fill them in."""
    t = grid[0]
    if not 0 < num_slots < t:
        raise ValueError(f"center mask must hide between 1 and {t - 1} of {t} time slots, "
                         f"got {num_slots}")
    return slots_mask(batch, grid, (t - num_slots) // 2, num_slots, device)


def future_mask(batch: int, grid: Tuple[int, int, int], num_slots: int, device=None) -> Mask:
    """Hide the last num_slots time slots: predict the future from the past."""
    t = grid[0]
    if not 0 < num_slots < t:
        raise ValueError(f"future mask must hide between 1 and {t - 1} of {t} time slots, "
                         f"got {num_slots}")
    return slots_mask(batch, grid, t - num_slots, num_slots, device)


MASK_TYPES = ("random", "tube", "center", "future")


def make_mask(mask_type: str, batch: int, grid: Tuple[int, int, int], ratio: float, device=None,
              generator: Optional[torch.Generator] = None) -> Mask:
    """One entry point for the model and the scripts. For 'center' and 'future' the ratio is the
    fraction of time slots hidden, rounded to whole slots (0.25 of 8 slots = 2 slots = 4 frames)."""
    check_ratio(ratio)
    if mask_type == "random":
        return random_mask(batch, grid, ratio, device, generator)
    if mask_type == "tube":
        return tube_mask(batch, grid, ratio, device, generator)
    if mask_type in ("center", "future"):
        num_slots = max(1, round(ratio * grid[0]))
        maker = center_mask if mask_type == "center" else future_mask
        return maker(batch, grid, num_slots, device)
    raise ValueError(f"unknown mask type {mask_type!r}; choose one of {', '.join(MASK_TYPES)}")


def mask_from_restore(ids_keep: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Recover the binary mask from the two index tensors:
    a token is visible iff it sits among the first K."""
    return (ids_restore >= ids_keep.shape[1]).float()  # (B, L)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Pick tokens by index: x (B, L, D), ids (B, K) -> (B, K, D).
    The one gather every MAE needs."""
    return torch.gather(x, dim=1, index=ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
