"""`gsdd export`: pt / npz round-trip bit for bit with load(...).render() and .dataset(); image folders,
the DD-Ranking folder, atomic outputs and one-line errors."""

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import gsdd_cli
from gsdd_cli.cli import app
from gsdd_cli.data import load_dataset
from gsdd_cli.data.sources import load_image_folder, load_npz
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.export import class_folder_names, export_set, to_uint8_nhwc

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def gsd(tmp_path, make_digits_gsd):
    return make_digits_gsd(tmp_path / "d.gsd", syn_lr=0.015, algorithm="tm")


# The round trips render on GSDD_TEST_DEVICE (tests/conftest.py): the export and the set it is
# compared with render on the same device and backend, so the bits must agree there too.
def test_pt_round_trips_both_spaces(tmp_path, gsd, device):
    s = gsdd_cli.load(gsd, device=device)
    export_set(gsd, "pt", tmp_path / "net.pt", device=device)
    export_set(gsd, "pt", tmp_path / "pix.pt", space="pixel", device=device)
    net = torch.load(tmp_path / "net.pt", weights_only=True)
    pix = torch.load(tmp_path / "pix.pt", weights_only=True)
    assert torch.equal(net["images"], s.dataset().tensors[0].cpu()) and net["space"] == "network"
    assert torch.equal(pix["images"], s.render().cpu()) and pix["space"] == "pixel"
    assert torch.equal(net["labels"], s.labels.cpu()) and net["labels"].dtype == torch.int64
    assert (net["ipc"], net["gpc"], net["syn_lr"], net["class_names"]) == (1, 3, 0.015, s.class_names)
    tf = net["transform"]
    assert tf["kind"] == "normalize" and tf["mean"] == [float(v) for v in s.transform.mean.flatten()]
    assert len(net["source_sha256"]) == 64


def test_pt_carries_the_zca_matrix(tmp_path, make_digits_gsd):
    path = make_digits_gsd(tmp_path / "z.gsd", transform="zca")
    export_set(path, "pt", tmp_path / "z.pt")
    obj = torch.load(tmp_path / "z.pt", weights_only=True)
    s = gsdd_cli.load(path)
    zca = obj["transform"]
    assert zca["kind"] == "zca" and zca["matrix"].shape == (256, 256) and zca["eps"] == 0.1
    flat = s.render().reshape(30, -1)
    rebuilt = ((flat - zca["mean"]) @ zca["matrix"]).reshape(obj["images"].shape)
    assert torch.allclose(rebuilt, obj["images"], atol=1e-5)


def test_npz_round_trips_and_is_a_dataset(tmp_path, gsd, device):
    s = gsdd_cli.load(gsd, device=device)
    export_set(gsd, "npz", tmp_path / "f.npz", with_test=True, device=device)
    back = load_npz(tmp_path / "f.npz")
    assert torch.equal(back.x_train, s.render().cpu()) and torch.equal(back.y_train, s.labels.cpu())
    real = load_dataset("digits")
    assert torch.equal(back.x_test, real.x_test) and back.class_names == s.class_names
    assert gsdd_cli.load_dataset(str(tmp_path / "f.npz")).x_train.shape == (30, 1, 16, 16)
    export_set(gsd, "npz", tmp_path / "u.npz", uint8=True, device=device)
    with np.load(tmp_path / "u.npz") as z:
        assert z["x_train"].dtype == np.uint8 and "x_test" not in z.files
        assert np.array_equal(z["x_train"], to_uint8_nhwc(s.render()))


def test_imagefolder_writes_pngs_in_label_order(tmp_path, gsd, device):
    s = gsdd_cli.load(gsd, device=device)
    res = export_set(gsd, "imagefolder", tmp_path / "folder", with_test=True, device=device)
    assert "quantizes" in res.notes[0]
    side = json.loads((tmp_path / "folder" / "gsdd_export.json").read_text())
    assert side["class_folders"] == [str(i) for i in range(10)] and side["ipc"] == 1
    back = load_image_folder(tmp_path / "folder")
    expect = torch.from_numpy(to_uint8_nhwc(s.render())).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(back.x_train, expect) and torch.equal(back.y_train, s.labels.cpu())
    assert back.x_test.shape[0] == load_dataset("digits").x_test.shape[0]


def test_class_folder_names_sort_in_label_order():
    assert class_folder_names(["airplane", "cat", "dog"]) == ["airplane", "cat", "dog"]
    assert class_folder_names(["tench", "English springer"]) == ["000_tench", "001_English-springer"]
    assert class_folder_names([str(i) for i in range(12)])[10] == "010_10"  # "10" < "2" as text
    assert class_folder_names(["a b", "a-b"]) == ["000_a-b", "001_a-b"]  # clash after sanitizing


def test_ddranking_folder(tmp_path, gsd, make_digits_gsd, device):
    s = gsdd_cli.load(gsd, device=device)
    export_set(gsd, "ddranking", tmp_path / "dd", device=device)
    d = tmp_path / "dd"
    assert torch.equal(torch.load(d / "images.pt", weights_only=True), s.dataset().tensors[0].cpu())
    assert torch.equal(torch.load(d / "labels.pt", weights_only=True), s.labels.cpu())
    assert float(torch.load(d / "syn_lr.pt", weights_only=True)) == pytest.approx(0.015)
    cfg = yaml.safe_load((d / "ddranking.yaml").read_text())
    assert cfg["ipc"] == 1 and cfg["use_zca"] is False and cfg["syn_lr"] == 0.015 and cfg["syn_batch_size"] == 256
    assert cfg["model_name"] == "ConvNet-3" and cfg["im_size"] == [16, 16] and cfg["step_size"] == 502
    assert cfg["num_epochs"] == 1001 and cfg["dataset"] is None  # digits: DD-Ranking has no such dataset
    assert "mean" in (d / "ddranking.yaml").read_text()  # the normalization to reproduce, as a comment
    assert not (d / "zca.pt").exists()
    assert "custom_val_trans" in (d / "ddranking_transforms.py").read_text()
    res = export_set(gsd, "ddranking", tmp_path / "d300", epochs=300)
    cfg = yaml.safe_load((tmp_path / "d300" / "ddranking.yaml").read_text())
    assert (cfg["num_epochs"], cfg["step_size"]) == (301, 152)  # gsdd: 301 passes, lr x 0.1 after pass 151
    assert any("cannot load dataset 'digits'" in n for n in res.notes)
    with pytest.raises(ConfigError, match="epochs"):
        export_set(gsd, "pt", tmp_path / "e.pt", epochs=300)
    z = make_digits_gsd(tmp_path / "z.gsd", transform="zca", algorithm="dm")
    export_set(z, "ddranking", tmp_path / "ddz")
    cfg = yaml.safe_load((tmp_path / "ddz" / "ddranking.yaml").read_text())
    assert cfg["use_zca"] is True and cfg["syn_lr"] == 0.01 and cfg["syn_batch_size"] == 128
    assert torch.load(tmp_path / "ddz" / "zca.pt", weights_only=True)["matrix"].shape == (256, 256)


def test_bad_requests(tmp_path, gsd):
    with pytest.raises(ConfigError, match="format"):
        export_set(gsd, "tfrecord", tmp_path / "x")
    with pytest.raises(ConfigError, match="input file"):
        export_set(gsd, "pt", gsd)
    with pytest.raises(ConfigError, match="does not apply"):
        export_set(gsd, "ddranking", tmp_path / "x", space="pixel")
    with pytest.raises(ConfigError, match="does not apply"):
        export_set(gsd, "npz", tmp_path / "x.npz", space="network")
    with pytest.raises(ConfigError, match="uint8"):
        export_set(gsd, "pt", tmp_path / "x.pt", uint8=True)
    with pytest.raises(ConfigError, match="with-test"):
        export_set(gsd, "pt", tmp_path / "x.pt", with_test=True)
    with pytest.raises(ConfigError, match="is a folder"):
        export_set(gsd, "pt", tmp_path)


def test_folders_are_atomic_and_need_force(tmp_path, gsd, monkeypatch):
    out = tmp_path / "f"
    export_set(gsd, "imagefolder", out)
    with pytest.raises(ConfigError, match="not empty"):
        export_set(gsd, "imagefolder", out)
    (out / "stale.txt").write_text("old")
    export_set(gsd, "imagefolder", out, force=True)
    assert not (out / "stale.txt").exists() and (out / "gsdd_export.json").exists()

    import gsdd_cli.export as ex

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "_save_pngs", boom)
    with pytest.raises(RuntimeError):
        export_set(gsd, "imagefolder", tmp_path / "g")
    assert not (tmp_path / "g").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cli_export(tmp_path, gsd, device):
    res = runner.invoke(app, ["export", str(gsd), "--format", "pt", "--out", str(tmp_path / "c.pt"), "--device", device,
                              "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_images"] == 30
    bad = runner.invoke(app, ["export", str(gsd), "--format", "png", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 3 and bad.stderr.startswith("error:") and "Traceback" not in bad.output
    missing = runner.invoke(app, ["export", str(tmp_path / "none.gsd"), "-f", "pt", "-o", str(tmp_path / "x.pt")])
    assert missing.exit_code == 4 and "no such file" in missing.stderr
