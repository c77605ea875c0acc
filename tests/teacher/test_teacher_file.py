"""`gsdd teacher` end to end: the file it writes, loading it as a teacher, and what is refused."""

import json
import struct

import pytest
import torch
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.core.errors import CheckpointError, ConfigError
from gsdd_cli.data import load_dataset, make_transform
from gsdd_cli.data.core import Dataset
from gsdd_cli.models.teacher import load_teacher, read_teacher_fields, teacher_header_fields
from gsdd_cli.models.teacher_file import read_teacher_file, save_teacher_file, weights_sha256

from .conftest import write_color_folder


def _dataset_like(ds, names, name="renamed"):
    return Dataset(name, ds.x_train, ds.y_train, ds.x_test, ds.y_test, list(names), mean=ds.mean, std=ds.std)


def test_file_is_safetensors_with_json_metadata(color_teacher):
    root, path, output = color_teacher
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]  # safetensors: 8-byte header length, then a JSON header
    header = json.loads(raw[8 : 8 + n])
    md = header["__metadata__"]
    assert json.loads(md["format"]) == "gsdd-teacher" and json.loads(md["arch"]) == "resnet18bn"
    state, meta = read_teacher_file(path)
    assert meta["class_names"] == ["blue", "green", "red"] and meta["num_classes"] == 3
    assert (meta["channels"], meta["height"], meta["width"]) == (3, 16, 16)
    assert meta["transform"] == "normalize" and len(meta["transform_params"]["mean"]) == 3
    assert meta["epochs"] == 4 and meta["recipe"]["optimizer"] == "sgd" and meta["recipe"]["schedule"] == "cosine"
    assert meta["weights_sha256"] == weights_sha256(state)
    assert any(k.endswith("running_mean") for k in state)  # BatchNorm statistics are stored
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and "test accuracy" in output


def test_loaded_teacher_is_right_and_frozen(color_teacher):
    root, path, _ = color_teacher
    ds = load_dataset(str(root))
    t = load_teacher(str(path), dataset=ds, device="cpu")
    assert not t.net.training and not any(p.requires_grad for p in t.net.parameters())
    assert len(t.bn_layers()) > 0
    idn = t.identity
    assert idn["source"] == "gsdd" and idn["arch"] == "resnet18bn" and idn["class_names"] == ds.class_names
    assert idn["class_map"] is None and idn["input_conversion"].startswith("none")
    x = make_transform(ds, "normalize")(ds.x_test)
    logits = t.logits(x)
    assert logits.shape == (12, 3)
    acc = float((logits.argmax(1) == ds.y_test).float().mean())
    assert acc > 0.6  # chance is 1/3; the colour classes are separable
    assert abs(acc - idn["test_accuracy"]) < 1e-6  # the recorded accuracy is what the file does
    assert torch.allclose(t.pixel_logits(ds.x_test), logits, atol=1e-4)
    x.requires_grad_(True)
    t.logits(x).sum().backward()  # gradients reach the images (for recovery from a teacher)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_other_network_space_is_converted(color_teacher):
    root, path, _ = color_teacher
    ds = load_dataset(str(root))
    t = load_teacher(str(path), dataset=ds, transform=make_transform(ds, "none"))
    assert "undo none" in t.identity["input_conversion"]
    ref = load_teacher(str(path), dataset=ds)
    assert torch.allclose(t.logits(ds.x_test), ref.pixel_logits(ds.x_test), atol=1e-4)


def test_class_count_mismatch_refused(color_teacher, tmp_path):
    _, path, _ = color_teacher
    two = load_dataset(str(write_color_folder(tmp_path / "two", classes=("blue", "red"), train=2, test=1)))
    with pytest.raises(ConfigError) as e:
        load_teacher(str(path), dataset=two)
    assert "has 3 classes but" in str(e.value) and "has 2" in str(e.value) and "\n" not in str(e.value)


def test_class_order_mismatch_refused(color_teacher):
    root, path, _ = color_teacher
    ds = load_dataset(str(root))
    with pytest.raises(ConfigError, match=r"orders the classes differently .*2 of 3 positions.*0: 'blue' vs 'red'"):
        load_teacher(str(path), dataset=_dataset_like(ds, ["red", "green", "blue"]))
    with pytest.raises(ConfigError, match=r"different classes: the teacher has 'green'.* the dataset has 'cyan'"):
        load_teacher(str(path), dataset=_dataset_like(ds, ["blue", "cyan", "red"]))


def test_channel_mismatch_refused(color_teacher):
    _, path, _ = color_teacher
    digits = load_dataset("digits")
    gray = Dataset("gray", digits.x_train[:6], torch.tensor([0, 1, 2] * 2), digits.x_train[:0], digits.y_train[:0],
                   ["blue", "green", "red"])
    with pytest.raises(ConfigError, match="3-channel images"):
        load_teacher(str(path), dataset=gray)


def test_corrupt_and_foreign_files_refused(color_teacher, tmp_path):
    _, path, _ = color_teacher
    raw = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.pt"
    raw[-100] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: len(raw) // 2])
    pickled = tmp_path / "pickle.pt"
    torch.save({"w": torch.zeros(2)}, pickled)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    cases = {flipped: "corrupt", truncated: "not a gsdd teacher file", pickled: "not a gsdd teacher file",
             foreign: "not a gsdd teacher", tmp_path / "absent.pt": "no such file"}
    ds = load_dataset("digits")
    for p, words in cases.items():
        with pytest.raises(CheckpointError) as e:
            load_teacher(str(p), dataset=ds)
        assert words in str(e.value) and "\n" not in str(e.value), (p, str(e.value))
        assert e.value.exit_code == 4


def test_metadata_that_does_not_fit_the_weights_refused(color_teacher, tmp_path):
    _, path, _ = color_teacher
    state, meta = read_teacher_file(path)
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "weights_sha256")}
    other = tmp_path / "other.pt"
    save_teacher_file(other, state, {**meta, "arch": "convnet"})
    with pytest.raises(CheckpointError, match="do not fit a convnet network"):
        load_teacher(str(other), dataset=load_dataset(str(color_teacher[0])))


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["teacher", "digits", "--arch", "nonet", "--out", str(tmp_path / "t.pt")])
    assert res.exit_code == 3 and "unknown model 'nonet'" in res.output
    res = runner.invoke(app, ["teacher", "digits", "--epochs", "0", "--out", str(tmp_path / "t.pt")])
    assert res.exit_code == 3
    (tmp_path / "dir.pt").mkdir()
    res = runner.invoke(app, ["teacher", "digits", "--out", str(tmp_path / "dir.pt")])  # checked before work
    assert res.exit_code == 9 and "Traceback" not in res.output


def test_interrupt_leaves_no_file(tmp_path, monkeypatch):
    from gsdd_cli.evaluate import teacher_train

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher_train, "train_epoch", stop)
    out = tmp_path / "out"
    out.mkdir()
    cfg = teacher_train.make_teacher_config(dataset="digits", out=str(out / "t.pt"), arch="convnet",
                                            epochs=1, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        teacher_train.train_teacher(cfg)
    assert list(out.iterdir()) == []  # no file, no temporary file


def test_header_fields_round_trip(color_teacher, make_digits_gsd, tmp_path):
    root, path, _ = color_teacher
    t = load_teacher(str(path), dataset=load_dataset(str(root)))
    fields = teacher_header_fields(t.identity)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    from gsdd_cli.data import load_dataset as ld
    from gsdd_cli.sets.gaussians import GaussianImages
    from gsdd_cli.sets.gsdfile import make_header, read_header, save_gsd

    gi = GaussianImages.random(10, 1, 4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    header = make_header(gi, dataset="digits", class_names=ld("digits").class_names, ipc=1, **fields)
    save_gsd(tmp_path / "x.gsd", gi, header)
    back = read_teacher_fields(read_header(tmp_path / "x.gsd").model_dump())
    assert back["weights_sha256"] == t.identity["weights_sha256"] and back["class_names"] == ["blue", "green", "red"]
    assert back["source"] == "gsdd" and back["class_map"] is None
    assert read_teacher_fields(fields) == back
    assert read_teacher_fields({"dataset": "digits"}) is None
