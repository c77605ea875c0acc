"""Config resolution: spec defaults per dataset/IPC, precedence defaults < file < flags, strictness."""

import json

import pytest

from gsdd_cli.distill.config import build_config, spec_defaults
from gsdd_cli.core.errors import ConfigError

C10 = (10, 3, 32, 32)
C100 = (100, 3, 32, 32)
NETTE = (10, 3, 128, 128)


@pytest.mark.parametrize(
    "dataset,info,ipc,gpc,points,syn_steps,max_start,lr_lr,batch_syn",
    [
        ("cifar10", C10, 1, 30, 22, 60, 30, 1e-5, 300),
        ("cifar10", C10, 10, 160, 42, 60, 30, 1e-5, 380),
        ("cifar10", C10, 50, 250, 136, 60, 30, 1e-5, 360),
        ("cifar100", C100, 10, 80, 85, 60, 30, 1e-5, 512),
        ("cifar100", C100, 50, 400, 85, 60, 30, 1e-5, 640),
        ("imagenette", NETTE, 1, 64, 170, 20, 40, 1e-6, 150),
        ("imagewoof", NETTE, 10, 640, 170, 20, 40, 1e-5, 160),
    ],
)
def test_tm_defaults_follow_the_paper_table(dataset, info, ipc, gpc, points, syn_steps, max_start, lr_lr, batch_syn):
    cfg = build_config(dataset, flags={"algo": "tm", "ipc": ipc}, info=info)
    assert (cfg.gpc, cfg.points, cfg.syn_steps, cfg.max_start_epoch, cfg.lr_lr, cfg.batch_syn) == (
        gpc, points, syn_steps, max_start, lr_lr, batch_syn)
    assert cfg.iterations == 15_000 and cfg.expert_epochs == 2 and cfg.lr_init == 1e-2
    assert cfg.lr == 1e-3 and cfg.boundary_lambda == 0.1 and cfg.init_steps == 50_000


def test_dm_dc_defaults():
    dm = build_config("imagenette", flags={"algo": "dm", "ipc": 1}, info=NETTE)
    assert (dm.gpc, dm.points, dm.batch_real, dm.iterations) == (200, 54, 1024, 20_000)
    dc = build_config("imagenette", flags={"algo": "dc", "ipc": 1}, info=NETTE)
    assert (dc.gpc, dc.points, dc.batch_real, dc.iterations, dc.outer_loop, dc.inner_loop) == (200, 54, 720, 5_000, 1, 1)
    dc10 = build_config("cifar10", flags={"algo": "dc", "ipc": 10}, info=C10)
    assert (dc10.outer_loop, dc10.inner_loop) == (10, 50)
    dc50 = build_config("cifar10", flags={"algo": "dc", "ipc": 50}, info=C10)
    assert (dc50.outer_loop, dc50.inner_loop) == (50, 10)


def test_digits_defaults_are_small():
    d = spec_defaults("digits", "dm", 1, (10, 1, 16, 16))
    assert d["iterations"] <= 100 and d["init_steps"] <= 500
    cfg = build_config("digits", flags={"algo": "dm", "ipc": 1})
    assert (cfg.gpc, cfg.points) == (4, 18)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_precedence_defaults_file_flags(tmp_path, suffix):
    path = tmp_path / f"cfg{suffix}"
    values = {"algo": "dm", "ipc": 1, "iterations": 7, "lr": 0.002, "batch-real": 33}
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    cfg = build_config("digits", config_file=path, flags={"iterations": 3, "lr": None})
    assert cfg.iterations == 3  # flag beats file
    assert cfg.lr == 0.002 and cfg.batch_real == 33  # file beats default
    assert cfg.boundary_lambda == 0.1  # default
    assert cfg.algo == "dm" and cfg.ipc == 1


def test_extra_keys_and_bad_values_are_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("algo: dm\nipc: 1\nbogus_key: 3\n")
    with pytest.raises(ConfigError, match="bogus_key"):
        build_config("digits", config_file=path)
    with pytest.raises(ConfigError, match="lr"):
        build_config("digits", flags={"algo": "dm", "ipc": 1, "lr": -1.0})
    with pytest.raises(ConfigError, match="algorithm"):
        build_config("digits", flags={"algo": "xx", "ipc": 1})
    with pytest.raises(ConfigError, match="--ipc"):
        build_config("digits", flags={"algo": "dm", "ipc": 0})
    notmap = tmp_path / "list.json"
    notmap.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        build_config("digits", config_file=notmap, flags={"algo": "dm", "ipc": 1})
    with pytest.raises(ConfigError, match="exceed"):
        build_config("digits", flags={"algo": "dm", "ipc": 1, "gpc": 4, "points": 100})


def test_points_alone_gives_the_largest_gpc():
    cfg = build_config("cifar10", flags={"algo": "tm", "ipc": 1, "points": 22}, info=C10)
    assert (cfg.gpc, cfg.points) == (31, 22)


def test_unknown_dsa_op_is_rejected_by_both_configs():
    from gsdd_cli.evaluate import make_eval_config

    with pytest.raises(ConfigError, match="unknown DSA op"):
        build_config("digits", flags={"algo": "dm", "ipc": 1, "out": "x.gsd", "dsa_strategy": "color_wobble"})
    with pytest.raises(ConfigError, match="unknown DSA op"):
        make_eval_config(dsa_strategy="color_wobble")
    assert build_config("digits", flags={"algo": "dm", "ipc": 1, "out": "x.gsd",
                                         "dsa_strategy": "crop_flip"}).dsa_strategy == "crop_flip"


def test_ipc_defaults_to_10_and_pixel_settings():
    cfg = build_config("cifar10", flags={"algo": "tm"}, info=C10)
    assert cfg.ipc == 10 and cfg.param == "gaussian" and (cfg.gpc, cfg.points) == (160, 42)
    assert cfg.tm_memory == "auto" and cfg.lr_img is None
    px = build_config("cifar10", flags={"algo": "tm", "ipc": 1, "param": "pixel"}, info=C10)
    # the same schedule as the Gaussian run, the published pixel lr of MTT (CIFAR-10 IPC 1: 100)
    assert (px.gpc, px.points, px.lr_img, px.syn_steps, px.batch_syn) == (1, None, 100.0, 60, 300)
    assert build_config("digits", flags={"algo": "dm", "ipc": 1, "param": "PIXEL"}).lr_img == 1.0
    assert build_config("digits", flags={"algo": "dc", "ipc": 1, "param": "pixel"}).lr_img == 0.1
    assert build_config("digits", flags={"algo": "dm", "ipc": 1, "param": "pixel", "lr_img": 3.0}).lr_img == 3.0
    with pytest.raises(ConfigError, match="--gpc applies to Gaussian sets"):
        build_config("digits", flags={"algo": "dm", "ipc": 1, "param": "pixel", "gpc": 4})
    with pytest.raises(ConfigError, match="param"):
        build_config("digits", flags={"algo": "dm", "ipc": 1, "param": "voxel"})
    with pytest.raises(ConfigError, match="--tm-memory"):
        build_config("digits", flags={"algo": "tm", "ipc": 1, "tm_memory": "lots"})
