import os
import sys

import torch

# The tests import the project's flat modules (mask.py, model.py, ...) from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Two cores in CI: keep each test process on them without oversubscription.
torch.set_num_threads(min(2, os.cpu_count() or 1))
