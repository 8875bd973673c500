"""
Checkpoints: from a file, or a released model's name, to a model. Ours carry a 'config' with
everything needed to rebuild the model; the authors' released ones (HF eminorhan/video-models,
eminorhan/hvm-1) hold only `{'model': state_dict}` with separate q, k and v weights, so their
configuration is read off the tensor shapes and q, k, v are fused on load. A released model can be
named instead of a file (`python checkpoints.py --list`): it is downloaded once into
huggingface_hub's cache, which later runs (and offline ones, HF_HUB_OFFLINE=1) read.

    from checkpoints import load_model
    mae = load_model("runs/toy_S/checkpoint.pt")                        # an MAE, as it was saved
    clf = load_model("mae_s_none", kind="classifier", num_classes=174)  # its encoder, a new head
    clf = load_model("vit_s_ssv2-10shot")                       # finetuned on SSV2: its head too

Reading checkpoints lives here; writing them safely (atomically, with the optimizer and the RNG
states) is training.py's job.
"""

import difflib
import math
import os
import re
import sys
from dataclasses import asdict, replace

import torch
import torch.nn as nn
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError,
                                    RemoteEntryNotFoundError, RepositoryNotFoundError)

from model import PRESETS, MaskedAutoencoder, VideoClassifier, VisionTransformer, ViTConfig
from training import ArgumentParser


def checkpoint_config(model: VisionTransformer, **extra) -> dict:
    """The 'config' entry of our checkpoints: everything needed to rebuild the model, plus extras
    (preset, class_names, ...) that scripts add."""
    kind = "mae" if isinstance(model, MaskedAutoencoder) else "classifier"
    return {"kind": kind, **asdict(model.cfg), **extra}


def strip_prefixes(state_dict: dict) -> dict:
    """Remove wrappers' prefixes: 'module.' (DDP) and '_orig_mod.' (torch.compile)."""
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state_dict.items()}


def convert_released(state_dict: dict) -> dict:
    """The authors' checkpoints keep attn.q, attn.k, attn.v apart; we fuse them into attn.qkv."""
    sd = strip_prefixes(state_dict)
    out = {k: v for k, v in sd.items() if not re.search(r"\.attn\.[qkv]\.", k)}
    for k in sd:
        if ".attn.q." in k:
            base, leaf = k.split(".attn.q.")
            keys = [f"{base}.attn.{n}.{leaf}" for n in "qkv"]
            missing = [key for key in keys if key not in sd]
            if missing:
                raise ValueError(f"checkpoint has {k!r} but no {missing[0]!r}")
            out[f"{base}.attn.qkv.{leaf}"] = torch.cat([sd[key] for key in keys])  # (3D, D), (3D,)
    return out


def infer_config(state_dict: dict) -> tuple:
    """Read (kind, ViTConfig) off a released checkpoint's tensor shapes. The number of heads is not
    in any shape: we take the presets' value for that width
    (16 for ViT-H and for the 512-wide decoder)."""
    sd = state_dict
    if "patch_embed.proj.weight" not in sd:
        raise ValueError("not a ViT checkpoint: no 'patch_embed.proj.weight' key")
    width, in_chans, t_patch, patch, _ = sd["patch_embed.proj.weight"].shape
    side = math.isqrt(sd["pos_embed_spatial"].shape[1])                  # h = w tokens per side
    count = lambda prefix: len({k.split(".")[1] for k in sd if k.startswith(prefix)})
    heads_for = {p.get("width"): p.get("heads") for p in PRESETS.values()}
    fields = dict(width=width, depth=count("blocks."),
                  heads=heads_for.get(width, max(1, width // 64)),
                  mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / width,
                  patch=patch, t_patch=t_patch, img_size=side * patch,
                  frames=sd["pos_embed_temporal"].shape[1] * t_patch, in_chans=in_chans)
    if "decoder_embed.weight" in sd:
        kind = "mae"
        dec_width = sd["decoder_embed.weight"].shape[0]
        fields.update(decoder_width=dec_width, decoder_depth=count("decoder_blocks."),
                      decoder_heads=16 if dec_width % 16 == 0 else max(1, dec_width // 64))
    else:
        kind = "classifier"
        fields["num_classes"] = sd["head.weight"].shape[0] if "head.weight" in sd else 0
    return kind, ViTConfig(**fields)


def load_state_dict_strict(model: nn.Module, state_dict: dict, source: str = "checkpoint",
                           allow_missing=()) -> None:
    """load_state_dict with an error message a person can act on: the first missing, unexpected or
    mis-shaped key, and where the weights came from."""
    own = model.state_dict()
    for k in own:
        if k not in state_dict and not k.startswith(tuple(allow_missing)):
            raise ValueError(f"{source}: missing key {k!r} (expected shape {tuple(own[k].shape)})")
    for k, v in state_dict.items():
        if k not in own:
            raise ValueError(f"{source}: unexpected key {k!r} (shape {tuple(v.shape)}) "
                             "that the model does not have")
        if v.shape != own[k].shape:
            raise ValueError(f"{source}: key {k!r} has shape {tuple(v.shape)}, "
                             f"the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state_dict, strict=not allow_missing)


# -----------------------------------------------------------------------------
# the authors' released models, by name

# The authors' two Hugging Face repositories, as their READMEs and utils.py name them: a model is
# {mae|vit}_{pretraining}_{finetuning} (an MAE only with 'none'),
# its file {pretraining}_{finetuning}.pth.
OWNER = "eminorhan"
RELEASES = {                                    # repository: (pretraining data, finetuning data)
    "video-models": (("say", "s", "kinetics", "kinetics-200h"),
                     ("none", "ssv2-10shot", "ssv2-50shot", "kinetics-10shot", "kinetics-50shot")),
    "hvm-1": (("hvm1", "hvm1@448", "kinetics"),  # hvm1@448: 448x448 clips, 32x32 tokens a frame
              ("none", "ssv2-10shot", "ssv2-50shot", "kinetics-10shot", "kinetics-50shot",
               "imagenet-2pt")),
}
# Both repositories hold Kinetics-pretrained models under the same names, trained for different
# papers. A bare name means the one of Orhan et al. 2024, the paper this project reimplements
# (with a note); 'hvm-1/NAME' the other.
BARE_NAMES_MEAN = "video-models"
# the heads, in the sorted class order data.py documents
HEADS = {"ssv2": "174 classes (SSV2)", "kinetics": "700 classes (Kinetics-700)",
         "imagenet": "1000 classes (ImageNet)"}


def released_models() -> dict:
    """{(repository, name): file} of every released model, in the authors' order."""
    models = {}
    for repo, (pretrainings, finetunings) in RELEASES.items():
        for pretraining in pretrainings:
            for finetuning in finetunings:
                for kind in ("mae", "vit") if finetuning == "none" else ("vit",):
                    file = f"{pretraining}_{finetuning}.pth"
                    models[repo, f"{kind}_{pretraining}_{finetuning}"] = file
    return models


def resolve_checkpoint(checkpoint: str) -> str:
    """The local file of a checkpoint: a file path as it is; a released model's name ('mae_s_none',
    or with its repository: 'hvm-1/mae_kinetics_none', 'eminorhan/video-models/mae_s_none'), or any
    file on the Hub as 'hf:OWNER/REPO/FILE', from huggingface_hub's cache, downloaded there first if
    need be. A string that is neither a file nor a name is a missing file: FileNotFoundError;
    an unknown name or a malformed hf: one: ValueError."""
    checkpoint = os.fspath(checkpoint)                                    # a str or a pathlib.Path
    if os.path.isfile(checkpoint):
        return checkpoint
    if checkpoint.startswith("hf:"):
        # owner, repository, file (maybe in folders)
        parts = checkpoint[len("hf:"):].split("/", 2)
        if len(parts) < 3 or not all(parts):
            raise ValueError(f"{checkpoint}: write hf:OWNER/REPO/FILE, "
                             "e.g. hf:eminorhan/video-models/s_none.pth")
        return download("/".join(parts[:2]), parts[2], checkpoint)
    models = released_models()
    repo, _, name = checkpoint.removeprefix(f"{OWNER}/").rpartition("/")
    if not repo:                                                          # a bare name
        holders = [r for r in RELEASES if (r, name) in models]
        repo = BARE_NAMES_MEAN if BARE_NAMES_MEAN in holders else next(iter(holders), "")
        if len(holders) > 1:
            print(f"note: {name} is in both {OWNER}/video-models and {OWNER}/hvm-1: "
                  f"loading {OWNER}/{repo} (Orhan et al. 2024); write hvm-1/{name} for HVM-1's",
                  file=sys.stderr)
    if (repo, name) in models:
        return download(f"{OWNER}/{repo}", models[repo, name], checkpoint)
    # meant as a name, not as a file
    if repo in RELEASES or not ("/" in checkpoint or "." in checkpoint):
        typed = [n for r, n in models] + [f"{r}/{n}" for r, n in models]
        close = difflib.get_close_matches(checkpoint.removeprefix(f"{OWNER}/"),
                                          dict.fromkeys(typed), n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(f"{checkpoint}: no such file, nor a released model's name{hint}; "
                         f"`python checkpoints.py --list` prints the names")
    raise FileNotFoundError(f"no checkpoint at {checkpoint}")


def download(repo_id: str, filename: str, checkpoint: str) -> str:
    """hf_hub_download (its cache: HF_HOME, HF_HUB_CACHE; its offline mode: HF_HUB_OFFLINE=1;
    its progress bar), each way of failing a one-line FileNotFoundError
    (ValueError for a malformed repository name)."""
    what = checkpoint if checkpoint.startswith("hf:") else f"{checkpoint} ({repo_id}/{filename})"
    try:
        return hf_hub_download(repo_id, filename)
    except LocalEntryNotFoundError:               # not in the cache, and no way to the Hub
        why = ("HF_HUB_OFFLINE is set" if constants.is_offline_mode()
               else "the Hugging Face Hub cannot be reached")
        raise FileNotFoundError(f"{what} is not in the Hugging Face cache "
                                f"({constants.HF_HUB_CACHE}) and {why}: download it once with a "
                                "network, or set HF_HUB_CACHE to a cache holding it") from None
    except (RepositoryNotFoundError, RemoteEntryNotFoundError):   # also private or gated ones
        raise FileNotFoundError(f"{what}: not on the Hugging Face Hub "
                                "(a private one needs `hf auth login`)") from None
    except ValueError as e:                       # e.g. characters a repository cannot have
        raise ValueError(f"{what}: {first_line(e)}") from None
    except (HfHubHTTPError, OSError) as e:        # a broken download, a full disk, ...
        raise FileNotFoundError(f"{what}: the download failed: {first_line(e)}") from None


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

# -----------------------------------------------------------------------------
# reading a checkpoint


def load_checkpoint(checkpoint, device="cpu") -> dict:
    """A checkpoint's dict, from a file or a released model's name. FileNotFoundError if there is
    none; ValueError (naming the file) for a file that is not a checkpoint, so every script can
    stop with one line instead of a pickle traceback. torch.load runs with weights_only=False
    because released files pickle their training args: load only checkpoints you trust."""
    path = resolve_checkpoint(checkpoint)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a checkpoint: "
                         f"it holds a {type(state).__name__}, not a dict")
    return state


def read_checkpoint(checkpoint, source=None) -> tuple:
    """Any checkpoint (a file, a released model's name, or a checkpoint's dict)
    -> (kind, cfg, state_dict with our key names, the rest of its config).
    `source` names a dict's file in messages."""
    source = source or ("checkpoint" if isinstance(checkpoint, dict) else str(checkpoint))
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    if not isinstance(ckpt.get("model"), dict):
        what = ("no 'model' entry" if "model" not in ckpt
                else f"its 'model' is a {type(ckpt['model']).__name__}")
        raise ValueError(f"{source}: {what}; expected {{'model': state_dict, ...}}")
    try:
        if "config" in ckpt:                                              # ours
            config = dict(ckpt["config"])
            kind = config.pop("kind")
            fields = {k: config.pop(k) for k in list(config) if k in ViTConfig.__dataclass_fields__}
            return kind, ViTConfig(**fields), strip_prefixes(ckpt["model"]), config
        state_dict = convert_released(ckpt["model"])                      # the authors'
        kind, cfg = infer_config(state_dict)
    except (ValueError, KeyError, TypeError, AttributeError) as e:       # a dict, but not a model's
        raise ValueError(f"{source}: {e}") from None
    return kind, cfg, state_dict, {}


def load_model(checkpoint, kind: str = None, source=None, **overrides) -> VisionTransformer:
    """Load a checkpoint (ours or released; a file, a released model's name or a dict) as an MAE
    or a classifier. Loading an MAE (or a classifier with another number of classes) as a
    classifier takes the encoder's weights and builds a fresh head of overrides['num_classes'].
    Overrides may set training-only fields (drop_path, dropout, num_classes); every weight that is
    loaded must match its shape exactly. `source` names a dict's file."""
    source = source or ("checkpoint" if isinstance(checkpoint, dict) else str(checkpoint))
    ckpt_kind, cfg, state_dict, _ = read_checkpoint(checkpoint, source)
    kind = kind or ckpt_kind
    if kind not in ("mae", "classifier"):
        raise ValueError(f"unknown model kind {kind!r}; expected 'mae' or 'classifier'")
    model = (MaskedAutoencoder if kind == "mae" else VideoClassifier)(replace(cfg, **overrides))
    head = state_dict.get("head.weight")
    same_head = head is not None and head.shape[0] == model.cfg.num_classes
    if kind == ckpt_kind and (kind == "mae" or same_head):
        load_state_dict_strict(model, state_dict, source)
    elif kind == "classifier":                     # encoder weights, a new head
        encoder = {k: v for k, v in state_dict.items()
                   if not k.startswith(("decoder_", "mask_token", "head."))}
        load_state_dict_strict(model, encoder, source, allow_missing=("head.",))
    else:
        raise ValueError(f"{source}: a {ckpt_kind} checkpoint has no decoder; "
                         "it cannot be loaded as an MAE")
    return model


# -----------------------------------------------------------------------------
# python checkpoints.py --list


def describe(name: str) -> str:
    """What a released model's file holds: an MAE, or an encoder with a head of so many classes."""
    finetuning = name.rsplit("_", 1)[1]
    if finetuning == "none":
        return "MAE" if name.startswith("mae_") else "encoder (the MAE file), no head"
    return f"encoder + head, {HEADS[finetuning.split('-')[0]]}"


def print_released():
    """Every released model's name as it is typed, grouped by repository,
    with its file and its head."""
    models = released_models()
    print(f"  {'name':<38}{'file':<36}holds")
    for repo in RELEASES:
        print(f"{OWNER}/{repo}")
        for (r, name), filename in models.items():
            in_both = repo != BARE_NAMES_MEAN and (BARE_NAMES_MEAN, name) in models
            typed = f"{repo}/{name}" if in_both else name
            if r == repo:
                print(f"  {typed:<38}{filename:<36}{describe(name)}")
    print(f"A bare name that both repositories hold means {OWNER}/{BARE_NAMES_MEAN} "
          "(Orhan et al. 2024); any name\n"
          "may carry its repository (video-models/NAME, hvm-1/NAME). "
          "Any other file on the Hub: hf:OWNER/REPO/FILE.\n"
          "Each file is about 2.5 GB (docs/checkpoints.md); "
          "downloads go to huggingface_hub's cache.")


if __name__ == "__main__":
    p = ArgumentParser(description="The authors' released models, by name: every script that "
                                   "takes a checkpoint file also takes one of these names.")
    p.add_argument("--list", action="store_true",
                   help="print the names, the file each one is and its head")
    if p.parse_args().list:
        print_released()
    else:
        p.print_help()
