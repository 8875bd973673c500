import pytest
import torch

from mask import (center_mask, future_mask, gather_tokens, make_mask, mask_from_hidden, mask_from_restore, patchify,
                  random_mask, token_grid, tube_mask, unpatchify)


@pytest.mark.parametrize("shape, t_patch, patch, tokens, dim", [
    ((1, 3, 16, 224, 224), 2, 14, 2048, 1176),   # the paper's clip: 8 x 16 x 16 tubes of 2x14x14x3
    ((1, 3, 16, 448, 448), 2, 14, 8192, 1176),   # HVM-1@448
    ((2, 3, 1, 224, 224), 1, 14, 256, 588),      # an image is the case T = t_patch = 1
])
def test_patchify_shapes_and_exact_inverse(shape, t_patch, patch, tokens, dim):
    video = torch.randn(shape)
    x = patchify(video, t_patch, patch)
    assert x.shape == (shape[0], tokens, dim)
    assert torch.equal(unpatchify(x, t_patch, patch, shape[2:]), video)


def test_token_layout_is_t_major_and_pixels_dt_dy_dx_c():
    # Give every pixel a unique value that encodes (c, t, y, x), then read the layout back.
    C, T, H, W = 3, 4, 6, 8
    c, t, y, x = torch.meshgrid(torch.arange(C), torch.arange(T), torch.arange(H), torch.arange(W), indexing="ij")
    video = (c * 1000000 + t * 10000 + y * 100 + x).unsqueeze(0).double()
    tokens = patchify(video, t_patch=2, patch=2)                      # grid (2, 3, 4), 24 numbers per token
    # token index (1, 2, 3) in the (t, h, w) grid is number (1*3 + 2)*4 + 3 = 23, the last one
    tok = tokens[0, 23].view(2, 2, 2, 3)                              # (dt, dy, dx, c)
    for dt in range(2):
        for dy in range(2):
            for dx in range(2):
                for ch in range(3):
                    expected = ch * 1000000 + (2 + dt) * 10000 + (4 + dy) * 100 + (6 + dx)
                    assert tok[dt, dy, dx, ch] == expected


def test_bad_sizes_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible by patch"):
        patchify(torch.zeros(1, 3, 16, 100, 100), 2, 14)
    with pytest.raises(ValueError, match="divisible by t_patch"):
        patchify(torch.zeros(1, 3, 15, 224, 224), 2, 14)
    with pytest.raises(ValueError, match=r"mask ratio must be in \[0, 1\)"):
        random_mask(2, (8, 16, 16), 1.0)
    with pytest.raises(ValueError, match=r"mask ratio must be in \[0, 1\)"):
        make_mask("tube", 2, (8, 16, 16), -0.1)
    with pytest.raises(ValueError, match="unknown mask type"):
        make_mask("checkerboard", 2, (8, 16, 16), 0.5)


def check_consistent(m, L):
    """ids_keep, ids_restore and mask must describe the same partition of the L tokens."""
    B, K = m.ids_keep.shape
    assert m.ids_restore.shape == m.mask.shape == (B, L)
    assert torch.equal(mask_from_restore(m.ids_keep, m.ids_restore), m.mask)
    assert (m.mask.sum(1) == L - K).all()
    visible = torch.zeros(B, L).scatter_(1, m.ids_keep, 1.0)
    assert torch.equal(visible, 1 - m.mask)                           # ids_keep are exactly the visible ones
    assert (m.ids_keep.diff(dim=1) > 0).all()                         # ascending, no duplicates
    # un-shuffling [visible..., hidden...] with ids_restore puts every token back where it was
    positions = torch.arange(L).expand(B, L)
    hidden_ids = positions[m.mask.bool()].view(B, L - K)
    shuffled = torch.cat([m.ids_keep, hidden_ids], dim=1).unsqueeze(-1).float()
    assert torch.equal(gather_tokens(shuffled, m.ids_restore).squeeze(-1), positions.float())


def test_random_mask_keeps_exact_count_differs_per_sample_and_repeats_with_seed():
    grid = (8, 16, 16)
    m = random_mask(4, grid, 0.9, generator=torch.Generator().manual_seed(0))
    assert m.ids_keep.shape == (4, int(2048 * 0.1)) == (4, 204)
    check_consistent(m, 2048)
    assert not torch.equal(m.ids_keep[0], m.ids_keep[1])              # per-sample masks
    again = random_mask(4, grid, 0.9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.ids_keep, again.ids_keep)
    other = random_mask(4, grid, 0.9, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(m.ids_keep, other.ids_keep)


@pytest.mark.parametrize("mask_type", ["random", "tube", "center", "future"])
def test_masks_made_without_a_host_sync_equal_the_checked_ones(mask_type):
    # every mask maker tells mask_from_hidden how many tokens a row keeps (so nothing is read back from a GPU);
    # counting them from the map instead must give the very same indices
    m = make_mask(mask_type, 3, (8, 4, 4), 0.75 if mask_type in ("random", "tube") else 0.25,
                  generator=torch.Generator().manual_seed(0) if mask_type in ("random", "tube") else None)
    checked = mask_from_hidden(m.mask.bool())
    for told, counted in zip(m, checked):
        assert torch.equal(told, counted)
    with pytest.raises(ValueError, match="same number"):
        mask_from_hidden(torch.tensor([[True, False], [True, True]]))


def test_tube_mask_hides_the_same_positions_in_every_time_slot():
    grid = (8, 16, 16)
    m = tube_mask(3, grid, 0.9, generator=torch.Generator().manual_seed(0))
    check_consistent(m, 2048)
    per_slot = m.mask.view(3, 8, 256)
    assert ((1 - per_slot).sum(-1) == int(256 * 0.1)).all()           # 25 visible positions per slot
    assert (per_slot == per_slot[:, :1]).all()                        # the same positions in each slot
    assert not torch.equal(per_slot[0, 0], per_slot[1, 0])


def test_center_mask_hides_frames_6_to_9_of_16():
    t_patch, patch, size = 2, 14, (16, 224, 224)
    grid = token_grid(*size, t_patch, patch)
    m = center_mask(2, grid, num_slots=2)
    check_consistent(m, 2048)
    token_dim = t_patch * patch * patch * 3
    pixel_mask = unpatchify(m.mask.unsqueeze(-1).expand(-1, -1, token_dim), t_patch, patch, size)
    hidden_frames = pixel_mask[0, 0].amax(dim=(1, 2)).nonzero().flatten().tolist()
    assert hidden_frames == [6, 7, 8, 9]
    assert (pixel_mask[:, :, 6:10] == 1).all() and (pixel_mask[:, :, :6] == 0).all()
    # make_mask's ratio form: a quarter of the 8 slots is the same mask
    assert torch.equal(make_mask("center", 2, grid, 0.25).mask, m.mask)


def test_future_mask_hides_the_last_slots():
    grid = (8, 4, 4)
    m = future_mask(2, grid, num_slots=3)
    check_consistent(m, 128)
    per_slot = m.mask.view(2, 8, 16)
    assert (per_slot[:, 5:] == 1).all() and (per_slot[:, :5] == 0).all()
    with pytest.raises(ValueError, match="between 1 and 7"):
        future_mask(2, grid, num_slots=8)
