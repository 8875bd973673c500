import os

import pytest
import torch

# Tests never reach the Hugging Face Hub: released models' names resolve from a test's own cache, or fail. Set before
# huggingface_hub is imported (it reads its environment once), and inherited by the scripts tests start.
os.environ["HF_HUB_OFFLINE"] = "1"

# Two cores in CI: keep each test process on them without oversubscription.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory):
    """One small toy world per test session, shared by every test that needs files in the real formats."""
    from toy.world import generate
    out = tmp_path_factory.mktemp("toyworld")
    summary = generate(str(out), seed=0, scale=0.2, workers=2)
    return out, summary


@pytest.fixture(scope="session")
def tiny_mae(toy_world, tmp_path_factory):
    """One tiny ST-MAE per test session, pretrained by pretrain.py on the first 80% of the toy child S's videos
    (the rest are held out). The toy setting, shortened to fit CI: 900 steps at lr 3e-3 (the interpolation screen's
    faster lr) with the videos decoded once into memory (--cache). Returns its run folder."""
    import pretrain
    out = tmp_path_factory.mktemp("tiny_mae")
    pretrain.main(pretrain.parse_args([
        "--setting", "toy", "--data_root", str(toy_world[0]), "--data_frac", "0.8", "--steps", "900", "--lr", "3e-3",
        "--cache", "--workers", "0", "--out", str(out), "--log_every", "50", "--save_every", "450",
        "--figure_every", "900"]))
    return out


@pytest.fixture(scope="session")
def action_models():
    """A video classifier and a single-frame classifier trained from scratch on the same toy action clips (rendered
    in memory by the renderer that writes the world's SSV2-like files): their logits on 280 validation clips, and
    those clips' labels (classes in action_classes() order). About 3.5 minutes on 2 cores; test_toyworld and
    test_finetune share it."""
    from helpers import VIDEO_STEPS, train_classifier
    from toy.world import action_clips
    frames, labels = action_clips(2000, torch.Generator().manual_seed(1))
    val_frames, val_labels = action_clips(280, torch.Generator().manual_seed(2))
    video = train_classifier(frames, labels, val_frames, steps=VIDEO_STEPS)
    image = train_classifier(frames, labels, val_frames, steps=300, single_frames=True)
    return video, image, val_labels


@pytest.fixture(scope="session")
def toy_image_classifier():
    """One toy classifier per test session, trained from scratch on the ImageNet-like objects (rendered in memory:
    the world's PNG files hold these very pixels) as static 2-frame clips with ImageNet's normalisation, as
    finetune.py --task imagenet would. About 3 minutes on 2 cores. Returns the model, in eval mode."""
    import torch.nn.functional as F
    from augment import IMAGENET_MEAN, IMAGENET_STD, augment
    from model import VideoClassifier, make_config
    from toy.images import render, sample_objects
    torch.manual_seed(0)
    steps = 2000
    u8 = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8)[:, None].expand(-1, 2, -1, -1, -1)
    objects = sample_objects(16 * 300, torch.Generator().manual_seed(1))
    images = u8(render(objects)[0])
    model = VideoClassifier(make_config("toy", num_classes=16, frames=2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(images), (64,), generator=g)
        x = augment(images[idx], train=True, img_size=64, scale=(0.5, 1.0), generator=g, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD)
        loss = F.cross_entropy(model(x), objects["label"][idx], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model.eval()
