import os

import pytest
import torch

# Tests use the reference renderer on CPU unless a test asks otherwise.
os.environ.setdefault("GSDD_BACKEND", "auto")
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
