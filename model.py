"""
The model: a Vision Transformer over tube tokens, the spatiotemporal masked autoencoder (ST-MAE)
built on it, and the classifier used for few-shot finetuning.

Read mask.py first. The chapter goes:
  1. ViTConfig and the size presets (huge_patch14 is the paper's 633M-parameter ViT-H/14)
  2. the transformer block (pre-norm, fused qkv, F.scaled_dot_product_attention, drop path)
  3. VisionTransformer: 3-D patch embedding + separable position embeddings + class token + blocks
  4. MaskedAutoencoder: the encoder sees only visible tokens; a small decoder predicts every
     hidden pixel
  5. VideoClassifier: class token -> LayerNorm -> dropout -> linear
     (and an image model scored frame by frame)
  6. AdamW parameter groups with layer-wise lr decay
  7. `python model.py`: a table of the presets, their parameters and training FLOPs, computed
Parameter names follow the authors' released checkpoints, so their weights load with one small
conversion (checkpoints.py: from a checkpoint file, ours or theirs, to one of these models).
"""

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mask import gather_tokens, make_mask, mask_from_restore, patchify, token_grid, unpatchify

# -----------------------------------------------------------------------------
# 1. configuration


@dataclass
class ViTConfig:
    width: int = 1280           # the paper's ViT-H/14
    depth: int = 32
    heads: int = 16
    mlp_ratio: float = 4.0
    patch: int = 14             # spatial tube size (pixels)
    t_patch: int = 2            # temporal tube size (frames)
    img_size: int = 224
    frames: int = 16            # 16 frames at 3.75 fps, about 4.3 s
    in_chans: int = 3
    decoder_width: int = 512
    decoder_depth: int = 4
    decoder_heads: int = 16
    drop_path: float = 0.0      # stochastic depth at the last block (0.1 when finetuning)
    dropout: float = 0.0        # before the classifier head (0.3 when finetuning)
    num_classes: int = 0        # 0 for the MAE
    pos_init: str = "normal"    # position embeddings: N(0, 0.02) (the paper's) or "sincos" waves

    @property
    def grid(self):
        return token_grid(self.frames, self.img_size, self.img_size, self.t_patch, self.patch)

    @property
    def num_tokens(self):
        t, h, w = self.grid
        return t * h * w

    @property
    def token_dim(self):        # numbers per tube token: 2*14*14*3 = 1176 for the paper
        return self.t_patch * self.patch * self.patch * self.in_chans


# Architecture presets. Clip size (img_size, frames, t_patch) stays the paper's unless a preset says
# otherwise; 'toy' is small enough to pretrain on a 2-core CPU in minutes.
PRESETS = {
    # one decoder head 64 wide, not four 16 wide: at the same cost it fills in hidden frames
    # better on the toy world
    "toy": dict(width=128, depth=4, heads=4, patch=16, img_size=64,       # 8 x 4 x 4 = 128 tokens
                decoder_width=64, decoder_depth=2, decoder_heads=1, pos_init="sincos"),
    "tiny_patch16": dict(width=192, depth=12, heads=3, patch=16,
                         decoder_width=128, decoder_heads=4),
    "small_patch16": dict(width=384, depth=12, heads=6, patch=16,
                          decoder_width=256, decoder_heads=8),
    "base_patch16": dict(width=768, depth=12, heads=12, patch=16),
    "large_patch16": dict(width=1024, depth=24, heads=16, patch=16),
    "huge_patch14": dict(width=1280, depth=32, heads=16, patch=14),
}


def make_config(preset: str = "huge_patch14", **overrides) -> ViTConfig:
    """A preset plus any overrides, e.g. make_config('huge_patch14', img_size=448) for HVM-1@448."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = set(overrides) - set(ViTConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = replace(ViTConfig(), **{**PRESETS[preset], **given})
    cfg.grid  # validates the clip tiling (ValueError with a clear message otherwise)
    if cfg.width % cfg.heads or cfg.decoder_width % cfg.decoder_heads:
        raise ValueError(f"width {cfg.width} / decoder width {cfg.decoder_width} must be "
                         f"divisible by heads {cfg.heads} / decoder heads {cfg.decoder_heads}")
    waves_fit = cfg.width % 4 == 0 and cfg.decoder_width % 4 == 0   # sin, cos of y, x: 4 parts
    if cfg.pos_init not in ("normal", "sincos") or (cfg.pos_init == "sincos" and not waves_fit):
        raise ValueError(f"pos_init {cfg.pos_init!r}: choose 'normal' or 'sincos' "
                         "(sincos needs widths divisible by 4)")
    return cfg

# -----------------------------------------------------------------------------
# 2. the transformer block


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a whole residual branch for a random subset of samples."""
    if p == 0.0 or not training:
        return x
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)         # one draw per sample
    keep = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)  # q, k, v in one matmul (checkpoints keep them apart)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, D // self.heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)                                  # (3, B, H, N, D/H)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])        # (B, H, N, D/H)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))              # (B, N, D)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, recompute: bool) -> torch.Tensor:
    """x through the blocks. recompute (activation checkpointing): keep only each block's input and
    recompute its inside during the backward pass, about a third more compute for a fraction of the
    activation memory: what lets HVM-1@448 (8,193 decoder tokens per clip) train with large batches.
    Dropout and drop path replay their draws."""
    for block in blocks:
        x = (checkpoint(block, x, use_reentrant=False) if recompute and torch.is_grad_enabled()
             else block(x))
    return x


def init_weights(module: nn.Module) -> None:
    """The paper's init: xavier-uniform linears (q, k and v each as its own square matrix),
    zero biases, unit LayerNorms.
    The fused qkv gets the bound each of the authors' separate q, k, v layers had."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            if name.endswith("attn.qkv"):
                for w in m.weight.data.chunk(3, dim=0):
                    nn.init.xavier_uniform_(w)
            else:
                nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def init_sincos(spatial: nn.Parameter, temporal: nn.Parameter, grid) -> None:
    """Start separable embeddings as sine waves ("Attention is all you need"):
    spatial[y, x] = [waves(y), waves(x)], temporal[t] = waves(t) / 2. Nearby tokens then look alike
    from step 0, so attention can find a hidden token's neighbours at once; a tiny model on a CPU
    budget learns that late from N(0, 0.02) (the toy preset uses this)."""
    def waves(positions, dim):                                            # (n,) -> (n, dim)
        angles = positions.float()[:, None] / 10000 ** (torch.arange(dim // 2) / (dim // 2))
        return torch.cat([angles.sin(), angles.cos()], dim=1)
    t, h, w = grid
    D = spatial.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yx = torch.cat([waves(ys.flatten(), D // 2), waves(xs.flatten(), D // 2)], dim=1)   # (h*w, D)
    spatial.copy_(yx[None])
    temporal.copy_(waves(torch.arange(t), D)[None] / 2)

# -----------------------------------------------------------------------------
# 3. the Vision Transformer encoder


class VisionTransformer(nn.Module):
    """The encoder shared by the MAE and the classifier. forward_features(video, ids_keep) cuts the
    clip into tubes, keeps only ids_keep (all tubes when None), embeds them and adds their position
    embeddings, prepends the class token and runs the blocks. Returns (B, 1 + K, width) after the
    final LayerNorm; index 0 is the class token."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        t, h, w = cfg.grid
        D = cfg.width
        tube = (cfg.t_patch, cfg.patch, cfg.patch)
        self.patch_embed = nn.Module()              # a container, for the released key names
        # a linear map per tube
        self.patch_embed.proj = nn.Conv3d(cfg.in_chans, D, kernel_size=tube, stride=tube)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        # Separable position embeddings: a token at (t, y, x) gets spatial[y, x] + temporal[t].
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, D))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, D))
        self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, D))
        # deeper blocks drop more
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.activation_checkpointing = False       # recompute activations (run_blocks)

        init_weights(self)
        conv = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(conv.view(conv.shape[0], -1))  # the Conv3d as the linear map it is
        for p in (self.cls_token, self.pos_embed_spatial, self.pos_embed_temporal,
                  self.pos_embed_class):
            nn.init.trunc_normal_(p, std=0.02)
        if cfg.pos_init == "sincos":
            init_sincos(self.pos_embed_spatial, self.pos_embed_temporal, cfg.grid)

    def pos_embed(self, spatial, temporal):
        """(1, t*h*w, D) in T-major token order
        from the separable parts (1, h*w, D) and (1, t, D)."""
        return (temporal.unsqueeze(2) + spatial.unsqueeze(1)).flatten(1, 2)

    def forward_features(self, video: torch.Tensor, ids_keep: torch.Tensor = None) -> torch.Tensor:
        c = self.cfg
        expected = (c.in_chans, c.frames, c.img_size, c.img_size)
        if video.dim() != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(f"expected video (B, {c.in_chans}, {c.frames}, {c.img_size}, "
                             f"{c.img_size}), got {tuple(video.shape)}")
        # The Conv3d (kernel = stride = one tube) is a linear map per tube. We keep its weight in
        # the released checkpoints' layout but apply it as that linear map to the visible tubes
        # only: hidden tubes never enter, not even the embedding (a tenth of its work at mask 0.9).
        tubes = patchify(video, c.t_patch, c.patch)      # (B, L, token_dim), (dt, dy, dx, C) order
        pos = self.pos_embed(self.pos_embed_spatial, self.pos_embed_temporal)   # (1, L, D)
        pos = pos.expand(tubes.shape[0], -1, -1)
        if ids_keep is not None:
            tubes = gather_tokens(tubes, ids_keep)                         # (B, K, token_dim)
            pos = gather_tokens(pos, ids_keep)                             # (B, K, D)
        conv = self.patch_embed.proj
        # (D, C, dt, dy, dx) -> (D, token_dim)
        weight = conv.weight.permute(0, 2, 3, 4, 1).flatten(1)
        x = F.linear(tubes, weight, conv.bias) + pos            # (B, K, D); K = L without a mask
        cls = (self.cls_token + self.pos_embed_class).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)                                    # (B, 1 + K, D)
        x = run_blocks(self.blocks, x, self.activation_checkpointing)
        return self.norm(x)

# -----------------------------------------------------------------------------
# 4. the masked autoencoder


class MaskedAutoencoder(VisionTransformer):
    """ST-MAE. forward(video, mask_ratio, mask_type, generator) or
    forward(video, ids_keep=, ids_restore=) returns (loss, pred, mask): the MSE over hidden tokens,
    the predicted pixels of every token (B, L, token_dim) in the normalised space of the input, and
    the mask (B, L) with 1 = hidden."""

    def __init__(self, cfg: ViTConfig):
        super().__init__(cfg)
        t, h, w = cfg.grid
        Dd = cfg.decoder_width
        self.decoder_embed = nn.Linear(cfg.width, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))   # stands in for every hidden token
        self.decoder_cls_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, Dd))
        self.decoder_pos_embed_temporal = nn.Parameter(torch.zeros(1, t, Dd))
        self.decoder_pos_embed_class = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_blocks = nn.ModuleList(
            Block(Dd, cfg.decoder_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(Dd, eps=1e-6)
        self.decoder_pred = nn.Linear(Dd, cfg.token_dim)  # all pixels of a tube: both of its frames

        for part in (self.decoder_embed, self.decoder_blocks, self.decoder_pred):
            init_weights(part)
        nn.init.normal_(self.mask_token, std=0.02)
        for p in (self.decoder_cls_token, self.decoder_pos_embed_spatial,
                  self.decoder_pos_embed_temporal, self.decoder_pos_embed_class):
            nn.init.trunc_normal_(p, std=0.02)
        if cfg.pos_init == "sincos":
            init_sincos(self.decoder_pos_embed_spatial, self.decoder_pos_embed_temporal, cfg.grid)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent[:, 1:])          # (B, K, Dd); the class token is dropped
        B, K, Dd = x.shape
        L = ids_restore.shape[1]
        # (B, L, Dd) as [visible..., hidden...]
        x = torch.cat([x, self.mask_token.expand(B, L - K, Dd)], dim=1)
        x = gather_tokens(x, ids_restore)              # (B, L, Dd) back in T-major order
        x = x + self.pos_embed(self.decoder_pos_embed_spatial, self.decoder_pos_embed_temporal)
        cls = (self.decoder_cls_token + self.decoder_pos_embed_class).expand(B, -1, -1)
        x = torch.cat([cls, x], dim=1)                                    # (B, 1 + L, Dd)
        x = run_blocks(self.decoder_blocks, x, self.activation_checkpointing)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]            # (B, L, token_dim)

    def forward(self, video, mask_ratio=0.9, mask_type="random", generator=None, ids_keep=None,
                ids_restore=None):
        if (ids_keep is None) != (ids_restore is None):
            raise ValueError("pass both ids_keep and ids_restore, or neither")
        if ids_keep is None:
            ids_keep, ids_restore, _ = make_mask(mask_type, video.shape[0], self.cfg.grid,
                                                 mask_ratio, video.device, generator)
        mask = mask_from_restore(ids_keep, ids_restore)                   # (B, L), 1 = hidden
        latent = self.forward_features(video, ids_keep)                   # (B, 1 + K, D)
        pred_pixels = self.forward_decoder(latent, ids_restore)           # (B, L, token_dim)
        target = patchify(video, self.cfg.t_patch, self.cfg.patch)   # the normalised clip itself
        # (B, L), one kernel
        per_token = F.mse_loss(pred_pixels.float(), target.float(), reduction="none").mean(dim=-1)
        loss = (per_token * mask).sum() / mask.sum()                      # hidden tokens only
        return loss, pred_pixels, mask

    @torch.no_grad()
    def fill_in(self, video, ids_keep, ids_restore):
        """(masked, filled), both (B, 3, T, H, W) like video: the clip with its hidden tubes blanked
        to NaN, and the clip with them replaced by the model's prediction
        (visible tubes stay the input's own pixels)."""
        _, pred_pixels, mask = self(video, ids_keep=ids_keep, ids_restore=ids_restore)
        target = patchify(video, self.cfg.t_patch, self.cfg.patch).float()  # (B, L, token_dim)
        hidden = mask[..., None].bool()
        size = video.shape[2:]
        t_patch, patch = self.cfg.t_patch, self.cfg.patch
        masked = unpatchify(target.masked_fill(hidden, float("nan")), t_patch, patch, size)
        filled = unpatchify(torch.where(hidden, pred_pixels.float(), target), t_patch, patch, size)
        return masked, filled

# -----------------------------------------------------------------------------
# 5. the classifier


class VideoClassifier(VisionTransformer):
    """The encoder on all tokens; its class token -> LayerNorm -> dropout -> linear head."""

    def __init__(self, cfg: ViTConfig):
        if cfg.num_classes < 1:
            raise ValueError(f"a classifier needs num_classes >= 1, got {cfg.num_classes}")
        super().__init__(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.width, cfg.num_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def features(self, video):
        return self.forward_features(video)[:, 0]      # (B, D) class token, after LayerNorm

    def forward(self, video):
        return self.head(self.dropout(self.features(video)))             # (B, num_classes)


def frame_by_frame(fn, video: torch.Tensor, model_frames: int) -> torch.Tensor:
    """fn(video) for a model that takes clips; for an image model (model_frames == 1) given a clip
    of T frames, fn on each frame alone and its outputs averaged over the frames:
    how the paper scores S-Img on video."""
    N, C, T, H, W = video.shape
    if model_frames != 1 or T == 1:
        return fn(video)
    out = fn(video.transpose(1, 2).reshape(N * T, C, 1, H, W))    # (N*T, ...): each frame an image
    return out.view(N, T, *out.shape[1:]).mean(1)                       # (N, ...)

# -----------------------------------------------------------------------------
# 6. optimizer parameter groups


# substrings; biases and norms are caught by ndim
NO_DECAY_NAMES = ("cls_token", "mask_token", "pos_embed")


def param_groups(model: VisionTransformer, weight_decay: float, layer_decay: float = 1.0):
    """AdamW groups: no weight decay on biases, norms, position embeddings and tokens;
    with layer_decay < 1, block i learns at lr * layer_decay ** (depth - i), the embeddings at the
    smallest and the head at the full rate.
    Each group carries 'lr_scale' for the trainer to multiply its lr by."""
    depth = model.cfg.depth
    groups = {}
    for name, p in model.named_parameters():
        if name.startswith(("patch_embed", "cls_token", "pos_embed")):
            layer = 0
        elif name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        else:                                        # final norm, head, decoder
            layer = depth + 1
        no_decay = p.ndim == 1 or any(s in name for s in NO_DECAY_NAMES)
        group = groups.setdefault((layer, no_decay), {
            "params": [], "names": [], "lr_scale": layer_decay ** (depth + 1 - layer),
            "weight_decay": 0.0 if no_decay else weight_decay})
        group["params"].append(p)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups)]

# -----------------------------------------------------------------------------
# 7. sizes and FLOPs


def training_flops(cfg: ViTConfig, mask_ratio: float = 0.9) -> float:
    """Analytic matmul FLOPs of one MAE training step on one clip: 2 per multiply-add,
    backward = 2x forward (the patch embedding needs no input gradient, so 1x; it embeds only the
    K visible tubes). Layer norms, softmax and GELU are left out."""
    L = cfg.num_tokens
    K = int(L * (1 - mask_ratio))
    P = cfg.token_dim

    def blocks(n, d, depth):
        # linears + QK^T, AV
        per_block = 2 * n * d * (3 * d + d + 2 * cfg.mlp_ratio * d) + 2 * 2 * n * n * d
        return depth * per_block

    embed = 2 * K * P * cfg.width
    forward = (blocks(K + 1, cfg.width, cfg.depth) + 2 * K * cfg.width * cfg.decoder_width
               + blocks(L + 1, cfg.decoder_width, cfg.decoder_depth)
               + 2 * L * cfg.decoder_width * P)
    return 3 * forward + 2 * embed


if __name__ == "__main__":
    print("Presets at their clip size "
          "(the paper's 16 x 224^2 with 2x14x14 tubes unless the preset says so)\n")
    print(f"{'preset':<15}{'clip':>10}{'encoder':>14}{'decoder':>12}{'tokens':>8}{'mask':>6}"
          f"{'visible':>9}{'train GFLOPs/clip':>19}\n" + "-" * 93)
    # every preset, then HVM-1@448
    rows = [(name, {}, 0.9) for name in PRESETS] + [("huge_patch14", {"img_size": 448}, 0.95)]
    for name, extra, ratio in rows:
        cfg = make_config(name, **extra)
        with torch.device("meta"):                  # shapes only: instant, no memory
            n_encoder = sum(p.numel() for p in VisionTransformer(cfg).parameters())
            n_decoder = sum(p.numel() for p in MaskedAutoencoder(cfg).parameters()) - n_encoder
        visible, gflops = int(cfg.num_tokens * (1 - ratio)), training_flops(cfg, ratio) / 1e9
        print(f"{name:<15}{cfg.frames:>4}x{cfg.img_size:>3}^2{n_encoder:>14,}{n_decoder:>12,}"
              f"{cfg.num_tokens:>8}{ratio:>6}{visible:>9}{gflops:>19,.1f}")
