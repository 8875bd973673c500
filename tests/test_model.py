import math

import pytest
import torch

from mask import gather_tokens, make_mask, patchify, random_mask, unpatchify
from helpers import small_cfg
from model import (MaskedAutoencoder, VideoClassifier, VisionTransformer, frame_by_frame, make_config, param_groups,
                   training_flops)

def test_vit_h14_has_the_papers_encoder_parameter_count():
    cfg = make_config("huge_patch14")
    assert (cfg.width, cfg.depth, cfg.heads, cfg.patch, cfg.t_patch) == (1280, 32, 16, 14, 2)
    assert cfg.grid == (8, 16, 16) and cfg.token_dim == 1176
    with torch.device("meta"):                                        # shapes only: no memory, no init time
        encoder = VisionTransformer(cfg)
    assert sum(p.numel() for p in encoder.parameters()) == 631_527_680
    # the design's anchor: about 1.05 TFLOP per clip for one ST-MAE training step
    assert 1.0e12 < training_flops(cfg, 0.9) < 1.1e12


def test_the_toy_preset_trains_three_steps_and_its_loss_goes_down():
    """Shapes and a falling loss on one batch; its speed is measured by bench.py, never asserted here."""
    cfg = make_config("toy")
    assert cfg.img_size % cfg.patch == 0 and cfg.frames % cfg.t_patch == 0
    torch.manual_seed(0)
    model = MaskedAutoencoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    video = torch.randn(2, 3, cfg.frames, cfg.img_size, cfg.img_size)
    ids = random_mask(2, cfg.grid, 0.9, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(3):
        loss, pred, mask = model(video, ids_keep=ids.ids_keep, ids_restore=ids.ids_restore)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert pred.shape == (2, cfg.num_tokens, cfg.token_dim) and mask.shape == (2, cfg.num_tokens)
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]


def small_mae_video_and_mask(batch, ratio, mask_seed):
    """A fresh small MAE in eval mode, a random clip batch and a seeded random mask."""
    torch.manual_seed(0)
    cfg = small_cfg()
    video = torch.randn(batch, 3, cfg.frames, cfg.img_size, cfg.img_size)
    m = random_mask(batch, cfg.grid, ratio, generator=torch.Generator().manual_seed(mask_seed))
    return cfg, MaskedAutoencoder(cfg).eval(), video, m


def test_the_toy_preset_starts_its_position_embeddings_as_waves_and_the_paper_as_small_noise():
    """Sincos starts (toy): tokens next to each other look alike, far ones less; the paper's: N(0, 0.02) noise."""
    toy = MaskedAutoencoder(make_config("toy"))
    for spatial in (toy.pos_embed_spatial[0], toy.decoder_pos_embed_spatial[0]):    # (16, D) on a 4 x 4 grid
        cos = torch.nn.functional.cosine_similarity
        assert cos(spatial[5], spatial[6], dim=0) > cos(spatial[5], spatial[7], dim=0)      # x: 1 step vs 2
        assert cos(spatial[5], spatial[9], dim=0) > cos(spatial[5], spatial[13], dim=0)     # y: 1 step vs 2
        assert cos(spatial[5], spatial[6], dim=0) > cos(spatial[5], spatial[10], dim=0)     # and vs a diagonal
    temporal = toy.pos_embed_temporal[0]
    assert (temporal[0] - temporal[1]).norm() < (temporal[0] - temporal[4]).norm()
    paper = MaskedAutoencoder(small_cfg(pos_init="normal"))
    assert paper.pos_embed_spatial.std().item() == pytest.approx(0.02, rel=0.3)


def test_encoder_never_sees_a_masked_token():
    cfg, model, video, m = small_mae_video_and_mask(2, 0.75, mask_seed=0)
    tokens = patchify(video, cfg.t_patch, cfg.patch)
    hidden = m.mask.bool().unsqueeze(-1)
    changed = unpatchify(torch.where(hidden, torch.randn_like(tokens) * 5, tokens), cfg.t_patch, cfg.patch,
                         (cfg.frames, cfg.img_size, cfg.img_size))
    assert not torch.equal(changed, video)
    with torch.no_grad():
        latent_a = model.forward_features(video, m.ids_keep)
        latent_b = model.forward_features(changed, m.ids_keep)
        _, pred_a, _ = model(video, ids_keep=m.ids_keep, ids_restore=m.ids_restore)
        _, pred_b, _ = model(changed, ids_keep=m.ids_keep, ids_restore=m.ids_restore)
    assert latent_a.shape == (2, 1 + m.ids_keep.shape[1], cfg.width)
    assert torch.equal(latent_a, latent_b) and torch.equal(pred_a, pred_b)


def test_embedding_only_the_visible_tubes_equals_the_conv3d_on_the_whole_clip():
    # the patch embedding keeps the released checkpoints' Conv3d weight but is applied to the visible tubes alone;
    # it must be the very map the Conv3d computes (a wrong weight permutation would load released weights wrongly)
    cfg, model, video, m = small_mae_video_and_mask(2, 0.75, mask_seed=0)
    with torch.no_grad():
        whole = model.patch_embed.proj(video).flatten(2).transpose(1, 2)            # (B, L, D), T-major
        whole = whole + model.pos_embed(model.pos_embed_spatial, model.pos_embed_temporal)
        expected = gather_tokens(whole, m.ids_keep)                                 # (B, K, D)
        got = []                                                                     # the visible tokens' embeddings
        model.blocks[0].register_forward_pre_hook(lambda module, args: got.append(args[0][:, 1:]))
        model.forward_features(video, m.ids_keep)
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-5)


def test_an_image_model_scores_a_clip_frame_by_frame_and_averages():
    torch.manual_seed(0)
    image = VideoClassifier(small_cfg(frames=1, t_patch=1, num_classes=3)).eval()
    clip = torch.randn(2, 3, 4, 32, 32)                                   # (N, C, T, H, W)
    with torch.no_grad():
        each_frame = torch.stack([image(clip[:, :, t:t + 1]) for t in range(4)], dim=1)   # (N, T, 3)
        torch.testing.assert_close(frame_by_frame(image, clip, 1), each_frame.mean(1))
        video_model = VideoClassifier(small_cfg(num_classes=3)).eval()   # a clip model gets the clip as it is
        assert torch.equal(frame_by_frame(video_model, clip, 4), video_model(clip))


def test_loss_is_the_mean_per_token_mse_over_hidden_tokens_only():
    cfg, model, video, m = small_mae_video_and_mask(3, 0.6, mask_seed=1)
    with torch.no_grad():
        loss, pred, mask = model(video, ids_keep=m.ids_keep, ids_restore=m.ids_restore)
    assert torch.equal(mask, m.mask)
    target = patchify(video, cfg.t_patch, cfg.patch)
    per_token = [((pred[b, i] - target[b, i]) ** 2).mean() for b in range(3) for i in range(cfg.num_tokens)
                 if m.mask[b, i] == 1]
    assert len(per_token) == 3 * (cfg.num_tokens - int(cfg.num_tokens * 0.4))
    assert torch.allclose(loss, torch.stack(per_token).mean(), rtol=1e-5)
    # the visible tokens' (poor) predictions must not leak into the loss
    pred_visible_only = pred.clone()
    pred_visible_only[~m.mask.bool()] += 100.0
    per_token_changed = ((pred_visible_only - target) ** 2).mean(-1)
    assert torch.allclose((per_token_changed * mask).sum() / mask.sum(), loss)


@pytest.mark.parametrize("mask_type", ["random", "tube", "center", "future"])
def test_forward_takes_every_mask_type_and_a_seeded_generator(mask_type):
    cfg = small_cfg(frames=8)
    model = MaskedAutoencoder(cfg).eval()
    video = torch.randn(2, 3, cfg.frames, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        a = model(video, 0.5, mask_type, generator=torch.Generator().manual_seed(3))
        b = model(video, 0.5, mask_type, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[2], b[2]) and torch.equal(a[0], b[0])
    expected = make_mask(mask_type, 2, cfg.grid, 0.5, generator=torch.Generator().manual_seed(3)).mask
    assert torch.equal(a[2], expected)


def test_bad_input_raises_clear_value_errors():
    with pytest.raises(ValueError, match="divisible by patch"):
        make_config("huge_patch14", img_size=225)
    with pytest.raises(ValueError, match="divisible by t_patch"):
        make_config("huge_patch14", frames=15)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("gigantic")
    model = MaskedAutoencoder(small_cfg())
    with pytest.raises(ValueError, match=r"expected video \(B, 3, 4, 32, 32\)"):
        model(torch.zeros(1, 3, 4, 64, 64))
    with pytest.raises(ValueError, match=r"mask ratio must be in \[0, 1\)"):
        model(torch.zeros(1, 3, 4, 32, 32), mask_ratio=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        VideoClassifier(small_cfg())


def test_activation_checkpointing_gives_the_same_loss_and_gradients_drop_path_included():
    torch.manual_seed(0)
    model = MaskedAutoencoder(small_cfg(drop_path=0.2)).train()
    video = torch.randn(2, 3, 4, 32, 32)
    m = random_mask(2, model.cfg.grid, 0.5, generator=torch.Generator().manual_seed(0))
    runs = []
    for recompute in (False, True):
        model.activation_checkpointing = recompute
        model.zero_grad()
        torch.manual_seed(1)                                               # the same drop-path draws
        loss = model(video, ids_keep=m.ids_keep, ids_restore=m.ids_restore)[0]
        loss.backward()
        runs.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss0, grads0), (loss1, grads1) = runs
    assert torch.equal(loss0, loss1)
    assert all(torch.allclose(grads0[n], grads1[n], atol=1e-6) for n in grads0)
    assert grads0["blocks.1.mlp.fc1.weight"].abs().sum() > 0


def test_param_groups_decay_by_layer_and_skip_weight_decay_on_biases_norms_and_embeddings():
    clf = VideoClassifier(small_cfg(depth=3, num_classes=4))
    groups = param_groups(clf, weight_decay=0.05, layer_decay=0.8)
    seen = [n for g in groups for n in g["names"]]
    assert sorted(seen) == sorted(n for n, _ in clf.named_parameters())   # every parameter exactly once
    by_name = {n: g for g in groups for n in g["names"]}
    for name in ("cls_token", "pos_embed_spatial", "pos_embed_class", "blocks.0.norm1.weight",
                 "blocks.2.attn.qkv.bias", "norm.bias", "head.bias", "patch_embed.proj.bias"):
        assert by_name[name]["weight_decay"] == 0.0, name
    for name in ("blocks.0.attn.qkv.weight", "head.weight", "patch_embed.proj.weight"):
        assert by_name[name]["weight_decay"] == 0.05, name
    assert by_name["head.weight"]["lr_scale"] == 1.0
    assert by_name["blocks.2.mlp.fc1.weight"]["lr_scale"] == pytest.approx(0.8)
    assert by_name["blocks.0.mlp.fc1.weight"]["lr_scale"] == pytest.approx(0.8 ** 3)
    assert by_name["patch_embed.proj.weight"]["lr_scale"] == pytest.approx(0.8 ** 4)
    mae_groups = param_groups(MaskedAutoencoder(small_cfg()), weight_decay=0.05)
    by_name = {n: g for g in mae_groups for n in g["names"]}
    assert by_name["mask_token"]["weight_decay"] == 0.0 and by_name["decoder_pos_embed_temporal"]["weight_decay"] == 0
    assert all(g["lr_scale"] == 1.0 for g in mae_groups)


def moving_blob_clip(frames, size, shift=(0.0, 0.0)):
    """A smooth clip: a bright Gaussian blob crossing the frame, on a gentle gradient. shift moves it (x, y)."""
    t = torch.arange(frames).view(frames, 1, 1).float()
    y = torch.arange(size).view(1, size, 1).float()
    x = torch.arange(size).view(1, 1, size).float()
    cx, cy = 6 + shift[0] + 3 * t, 10 + shift[1] + 2 * t
    blob = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 40)
    rgb = torch.stack([blob, 0.5 * blob + x / size, y / size * torch.ones_like(blob)])   # (3, T, H, W)
    return ((rgb - 0.45) / 0.225).unsqueeze(0)


def test_a_tiny_mae_learns_one_clip_and_its_predictions_depend_on_what_it_sees():
    # One clip, seen through random shifts (as random crops do in real training): where the blob is can only
    # be read off the visible tokens. On a single fixed view a decoder can memorise the clip through its
    # position embeddings and ignore its input (we saw it happen: visible pixels then moved its predictions
    # by about 1%); this test catches that.
    torch.manual_seed(0)
    cfg = small_cfg(width=64, heads=4, decoder_width=64, decoder_heads=4)
    model = MaskedAutoencoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for step in range(300):
        shifts = (torch.rand(8, 2, generator=gen) * 12 - 4).tolist()
        views = torch.cat([moving_blob_clip(cfg.frames, cfg.img_size, s) for s in shifts])  # (8, 3, T, H, W)
        loss, _, _ = model(views, mask_ratio=0.5, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first / 5, (first, last)

    # Clip B is clip A with the blob elsewhere. Under 8 different masks, show the model A's pixels where
    # tokens are hidden and either A's or B's where they are visible: its predictions for the hidden tokens
    # must follow what it sees, towards B's truth.
    model.eval()
    m = random_mask(8, cfg.grid, 0.5, generator=torch.Generator().manual_seed(5))
    hidden = m.mask.bool().unsqueeze(-1).expand(8, cfg.num_tokens, cfg.token_dim)
    size = (cfg.frames, cfg.img_size, cfg.img_size)
    clip_a = moving_blob_clip(cfg.frames, cfg.img_size, (0.0, 0.0)).expand(8, -1, -1, -1, -1)
    clip_b = moving_blob_clip(cfg.frames, cfg.img_size, (7.0, 3.0)).expand(8, -1, -1, -1, -1)
    tokens_a, tokens_b = (patchify(c, cfg.t_patch, cfg.patch) for c in (clip_a, clip_b))
    b_visible_a_hidden = unpatchify(torch.where(hidden, tokens_a, tokens_b), cfg.t_patch, cfg.patch, size)
    with torch.no_grad():
        _, pred_a, _ = model(clip_a, ids_keep=m.ids_keep, ids_restore=m.ids_restore)
        _, pred_b, _ = model(b_visible_a_hidden, ids_keep=m.ids_keep, ids_restore=m.ids_restore)
    predicted_change = (pred_a - pred_b)[hidden].abs().mean()
    true_change = (tokens_a - tokens_b)[hidden].abs().mean()
    assert predicted_change > 0.4 * true_change, (predicted_change, true_change)
    error_vs_b = lambda pred: ((pred - tokens_b)[hidden] ** 2).mean()
    assert error_vs_b(pred_b) < 0.5 * error_vs_b(pred_a), (error_vs_b(pred_b), error_vs_b(pred_a))
