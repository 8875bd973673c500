import os
import sys

import pytest
import torch

# The tests import the project's flat modules (mask.py, model.py, ...) from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Two cores in CI: keep each test process on them without oversubscription.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory):
    """One small toy world per test session, shared by every test that needs files in the real formats."""
    from toyworld import generate
    out = tmp_path_factory.mktemp("toyworld")
    summary = generate(str(out), seed=0, scale=0.2, workers=2)
    return out, summary


@pytest.fixture(scope="session")
def tiny_mae(toy_world, tmp_path_factory):
    """One tiny ST-MAE per test session, pretrained by pretrain.py on the first 80% of the toy child S's videos
    (the rest are held out). Returns its run folder."""
    import pretrain
    out = tmp_path_factory.mktemp("tiny_mae")
    pretrain.main(pretrain.parse_args([
        "--setting", "toy", "--data_root", str(toy_world[0]), "--data_frac", "0.8", "--steps", "1200",
        "--workers", "0", "--out", str(out), "--log_every", "50", "--save_every", "600", "--figure_every", "1200"]))
    return out
