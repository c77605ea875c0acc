import os

import pytest
import torch

# Tests use the reference renderer on CPU unless a test asks otherwise.
os.environ.setdefault("GSDD_BACKEND", "auto")
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def make_digits_gsd():
    """Factory: save a random digits .gsd (10 classes × GPC, 12 Gaussians, 1×16×16, IPC 1) and return
    its path; the header records the transform (and its parameters unless ``params=False``)."""
    from gsdd_cli.data import load_dataset, make_transform
    from gsdd_cli.sets.gaussians import GaussianImages
    from gsdd_cli.sets.gsdfile import make_header, save_gsd

    def make(path, *, transform="normalize", params=True, gpc=3, syn_lr=None, algorithm="dm"):
        ds = load_dataset("digits")
        gi = GaussianImages.random(10, gpc, 12, 1, 16, 16, generator=torch.Generator().manual_seed(5))
        extra = {"transform_params": make_transform(ds, transform).describe()} if params else {}
        header = make_header(gi, dataset="digits", class_names=ds.class_names, ipc=1, algorithm=algorithm,
                             transform=transform, syn_lr=syn_lr, **extra)
        return save_gsd(path, gi, header)

    return make
