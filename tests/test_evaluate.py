"""Evaluation protocol: config defaults, training on digits beats chance, .gsd files, baselines."""

import json
import math

import pytest
import torch

from gsdd_cli.data import load_dataset, make_transform
from gsdd_cli.core.errors import ConfigError, DataError, UnknownNameError
from gsdd_cli.evaluate import (
    EvalConfig,
    EvalResult,
    evaluate_baseline,
    evaluate_gsd,
    file_sha256,
    make_eval_config,
    resolve_settings,
    select_random_real,
    train_and_evaluate,
)
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import make_header, save_gsd

# Threshold for "beats chance by a wide margin" on digits (10 classes, chance 10 %):
# ConvNetD3 on 10 real images per class for 10 epochs reaches ~85 %; require ≥ 50 %.
DIGITS_MIN_ACCURACY = 0.50


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))


def test_config_validation():
    assert EvalConfig().epochs == 1000 and EvalConfig().arch == "convnet"
    with pytest.raises(ConfigError, match="epochs"):
        make_eval_config(epochs=-1)
    with pytest.raises(ConfigError, match="lr"):
        make_eval_config(lr=0)
    with pytest.raises(ConfigError, match="epochz"):
        make_eval_config(epochz=3)
    with pytest.raises(UnknownNameError):
        make_eval_config(arch="resnet19")
    with pytest.raises(ConfigError):
        resolve_settings(make_eval_config(device="tpu"))


def test_protocol_defaults():
    tm = resolve_settings(EvalConfig(device="cpu"), algorithm="tm", syn_lr=0.0123)
    assert (tm.optimizer, tm.lr, tm.batch_size, tm.runs, tm.weight_decay, tm.eval_every) == (
        "sgd", 0.0123, 256, 5, 5e-4, 500)
    dm = resolve_settings(EvalConfig(device="cpu"), algorithm="dm")
    assert (dm.lr, dm.batch_size) == (0.01, 128)
    for arch, lr in (("alexnet", 1e-3), ("vit", 5e-5), ("vgg11", 1e-2), ("resnet18", 1e-2)):
        st = resolve_settings(EvalConfig(arch=arch, device="cpu"), algorithm="tm", syn_lr=0.02)
        assert (st.optimizer, st.lr, st.runs, st.weight_decay) == ("adamw", lr, 3, 0.05)
    given = resolve_settings(EvalConfig(lr=0.5, runs=2, batch_size=7, device="cpu"), syn_lr=0.02)
    assert (given.lr, given.runs, given.batch_size) == (0.5, 2, 7)


def test_digits_real_images_beat_chance(device):
    ds = load_dataset("digits")
    cfg = make_eval_config(epochs=10, runs=1, device=device, seed=0)
    steps = []
    res = evaluate_baseline(ds, "random-real", ipc=10, cfg=cfg, on_step=steps.append)
    assert res.num_train_images == 100 and res.num_test_images == 360
    assert res.final_accuracy[0] >= DIGITS_MIN_ACCURACY, res.summary()
    assert res.best_accuracy[0] >= res.final_accuracy[0]
    assert len(steps) == 11 and steps[-1].test_acc == res.final_accuracy[0]
    json.dumps(res.model_dump())


def test_train_and_evaluate_is_reproducible_and_reports_stats(device):
    ds = load_dataset("digits")
    idx = select_random_real(ds, 2, seed=1)
    assert torch.equal(idx, select_random_real(ds, 2, seed=1)) and idx.numel() == 20
    tf = make_transform(ds, "normalize")
    x, tx = tf(ds.x_train[idx]), tf(ds.x_test[:100])
    cfg = make_eval_config(arch="convnetd1", epochs=2, runs=2, device=device, seed=3)  # CUDA: deterministic kernels
    a = train_and_evaluate(x, ds.y_train[idx], tx, ds.y_test[:100], cfg, num_classes=10)
    b = train_and_evaluate(x, ds.y_train[idx], tx, ds.y_test[:100], cfg, num_classes=10)
    assert a.final_accuracy == b.final_accuracy and len(a.final_accuracy) == 2
    m = sum(a.final_accuracy) / 2
    assert a.mean == pytest.approx(m)
    assert a.std == pytest.approx(math.sqrt(sum((v - m) ** 2 for v in a.final_accuracy) / 2))
    assert a.checkpoints == [1, 2, 3] and a.seed == 3
    assert isinstance(EvalResult.model_validate(a.model_dump()), EvalResult)


def test_random_real_needs_enough_images():
    ds = load_dataset("digits")
    with pytest.raises(DataError, match="only"):
        select_random_real(ds, 1000, seed=0)
    with pytest.raises(ConfigError, match="ipc"):
        evaluate_baseline(ds, "random-real", ipc=None, cfg=make_eval_config(epochs=1, device="cpu"))
    with pytest.raises(ConfigError, match="baseline"):
        evaluate_baseline(ds, "half", ipc=1)


def _save_digits_gsd(path, height=16, syn_lr=0.02):
    ds = load_dataset("digits")
    gi = GaussianImages.random(10, 1, 12, 1, height, height, generator=torch.Generator().manual_seed(0))
    header = make_header(gi, dataset="digits", class_names=ds.class_names, ipc=1, algorithm="tm",
                         syn_lr=syn_lr, transform="normalize")
    save_gsd(path, gi, header)
    return path


def test_evaluate_gsd(tmp_path, device, backend):
    path = _save_digits_gsd(tmp_path / "d.gsd")
    cfg = make_eval_config(arch="convnetd1", epochs=1, runs=1, device=device)
    res = evaluate_gsd(path, cfg, backend=backend)
    assert res.dataset == "digits" and res.algorithm == "tm" and res.transform == "normalize"
    assert res.lr == 0.02 and res.lr_source.startswith("learned") and res.batch_size == 256
    assert res.file_sha256 == file_sha256(path) and res.num_train_images == 10
    assert res.extra["gpc"] == 1 and 0.0 <= res.final_accuracy[0] <= 1.0


def test_evaluate_gsd_shape_mismatch(tmp_path):
    path = _save_digits_gsd(tmp_path / "small.gsd", height=8)
    with pytest.raises(DataError, match="distilled for digits"):
        evaluate_gsd(path, make_eval_config(epochs=1, device="cpu"), backend="reference")


def test_eval_refuses_a_set_too_large_to_decode(tmp_path, monkeypatch, make_digits_gsd):
    """A set whose decoded images exceed the free memory fails in one line before rendering."""
    import gsdd_cli.core.devices as devices
    from gsdd_cli.core.errors import ConfigError
    from gsdd_cli.evaluate import EvalConfig, evaluate_gsd

    path = make_digits_gsd(tmp_path / "d.gsd")
    monkeypatch.setattr(devices, "available_bytes", lambda device: 1000)
    with pytest.raises(ConfigError, match="needs .* GiB on cpu"):
        evaluate_gsd(path, EvalConfig(epochs=1, runs=1, device="cpu"))
