"""Fixtures for the distillation tests: a tiny synthetic 4-class RGB dataset (16×16) as a .npz file."""

import numpy as np
import pytest


def _make_tiny(path, per_class_train=12, per_class_test=6, classes=4, size=16, seed=0):
    rng = np.random.default_rng(seed)

    def images(n, c):
        x = rng.uniform(0, 60, size=(n, size, size, 3))
        half = size // 2
        r0, c0 = (c // 2) * half, (c % 2) * half  # class c lights up one quadrant in its own colour
        x[:, r0 : r0 + half, c0 : c0 + half, c % 3] += 180
        return np.clip(x, 0, 255).astype(np.uint8)

    xtr = np.concatenate([images(per_class_train, c) for c in range(classes)])
    ytr = np.repeat(np.arange(classes), per_class_train)
    xte = np.concatenate([images(per_class_test, c) for c in range(classes)])
    yte = np.repeat(np.arange(classes), per_class_test)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
             class_names=np.array([f"quadrant{c}" for c in range(classes)]))
    return path


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory):
    return str(_make_tiny(tmp_path_factory.mktemp("data") / "tiny.npz"))


@pytest.fixture(scope="session")
def tiny_experts(tiny_npz, tmp_path_factory, device):
    """2 experts × 2 epochs on the tiny set, trained on the test device (shared by the TM tests)."""
    from gsdd_cli.distill import make_experts_config, train_experts

    out = tmp_path_factory.mktemp("buffers") / "tiny"
    cfg = make_experts_config(dataset=tiny_npz, out=str(out), num=2, epochs=2, batch=16, device=device)
    train_experts(cfg)
    return str(out)
