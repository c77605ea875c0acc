import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gsdd_cli.core.errors import GsdFormatError
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import load_gsd, make_header, read_header, save_gsd

NAMES = ["zero", "one", "two"]


def make_set(gpc=2, points=5, channels=3, res=16, seed=0):
    return GaussianImages.random(3, gpc, points, channels, res, res, generator=torch.Generator().manual_seed(seed))


def write(tmp_path, name="a.gsd", **kw):
    imgs = make_set(**kw)
    header = make_header(imgs, dataset="toy", class_names=NAMES, ipc=1, algorithm="init", transform="normalize",
                         transform_params={"mean": [0.5] * imgs.channels, "std": [0.25] * imgs.channels},
                         config={"steps": 3})
    return save_gsd(tmp_path / name, imgs, header), imgs


def rewrite(path, mutate_tensors=None, mutate_meta=None):
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    if mutate_tensors:
        mutate_tensors(tensors)
    if mutate_meta:
        mutate_meta(meta)
    save_file(tensors, str(path), metadata=meta)


def test_round_trip(tmp_path):
    path, imgs = write(tmp_path)
    gsd = load_gsd(path)
    h = gsd.header
    assert (h.gpc, h.points_per_image, h.num_classes, h.channels, h.height, h.width) == (2, 5, 3, 3, 16, 16)
    assert h.payload_bytes == 6 * 5 * 18 and h.payload_bytes <= h.budget_bytes
    assert h.budget_bytes == 3 * 1 * 3 * 16 * 16 * 4
    assert h.transform == "normalize" and h.config == {"steps": 3} and h.class_names == NAMES
    for name in ("xy", "cholesky", "rgb", "opacity"):
        torch.testing.assert_close(getattr(gsd.images, name).detach(), getattr(imgs, name).detach().bfloat16().float())
    torch.testing.assert_close(gsd.images.render().detach(), imgs.render().detach())
    assert read_header(path) == h
    # Raw file check: bf16 tensors of the documented shapes, int64 labels.
    raw = load_file(str(path))
    assert raw["xy"].dtype == torch.bfloat16 and raw["xy"].shape == (6, 5, 2)
    assert raw["labels"].dtype == torch.int64 and raw["labels"].tolist() == [0, 0, 1, 1, 2, 2]
    # Saving again is byte-stable apart from the creation time.
    save_gsd(tmp_path / "b.gsd", gsd.images, gsd.header)
    assert load_file(str(tmp_path / "b.gsd")).keys() == raw.keys()


def test_grayscale_round_trip(tmp_path):
    path, _ = write(tmp_path, channels=1)
    assert load_gsd(path).images.render().shape == (6, 1, 16, 16)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    path, _ = write(tmp_path)
    before = path.read_bytes()
    imgs = make_set(seed=1)
    header = make_header(imgs, dataset="toy", class_names=NAMES, ipc=1)
    import errno

    import gsdd_cli.core.outputs as outputs
    from gsdd_cli.core.errors import FileSystemError

    def boom(tmp, data):
        Path(tmp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "_write_all", boom)
    with pytest.raises(FileSystemError, match="disk full"):
        save_gsd(path, imgs, header)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gsd"]


def test_refuses_to_save_nan(tmp_path):
    imgs = make_set()
    with torch.no_grad():
        imgs.rgb[0, 0] = float("nan")
    with pytest.raises(GsdFormatError, match="NaN"):
        save_gsd(tmp_path / "x.gsd", imgs, make_header(imgs, dataset="toy", class_names=NAMES, ipc=1))
    assert not (tmp_path / "x.gsd").exists()


def test_budget_violation_cannot_be_written(tmp_path):
    imgs = make_set(gpc=2, points=200)  # 2·200·18 = 7 200 > 3·16·16·4 = 3 072 bytes per class
    with pytest.raises(GsdFormatError, match="exceeds the budget"):
        make_header(imgs, dataset="toy", class_names=NAMES, ipc=1)


def _bad_cases():
    def set_meta(key, value):
        return dict(mutate_meta=lambda m: m.__setitem__(key, value))

    def del_meta(key):
        return dict(mutate_meta=lambda m: m.pop(key))

    def set_tensor(key, fn):
        return dict(mutate_tensors=lambda t: t.__setitem__(key, fn(t[key])))

    return {
        "foreign": (dict(mutate_meta=lambda m: (m.clear(), m.update({"framework": "pt"}))), "not a gsdd file"),
        "version": (set_meta("format_version", "3"), "unsupported .gsd format version"),
        "missing key": (del_meta("gpc"), "missing required field 'gpc'"),
        "bad json": (set_meta("class_names", "[zero"), "not valid JSON"),
        "class names": (set_meta("class_names", json.dumps(["a", "b"])), "class_names has 2 entries"),
        "over budget": (dict(mutate_meta=lambda m: (m.update({"ipc": "0"}))), "ipc"),
        "payload": (set_meta("payload_bytes", "999"), "payload_bytes 999"),
        "missing tensor": (dict(mutate_tensors=lambda t: t.pop("opacity")), "missing tensor"),
        "dtype": (set_tensor("xy", lambda x: x.float()), "expected bfloat16"),
        "shape": (set_tensor("rgb", lambda x: x[:, :4].contiguous()), "has shape"),
        "nan": (set_tensor("cholesky", lambda x: x.index_fill(0, torch.tensor([0]), float("nan"))), "NaN or Inf"),
        "inf": (set_tensor("opacity", lambda x: x.index_fill(0, torch.tensor([1]), float("inf"))), "NaN or Inf"),
        "labels": (set_tensor("labels", lambda x: x.flip(0).contiguous()), "class-major"),
        "label dtype": (set_tensor("labels", lambda x: x.float()), "labels"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_rejects_bad_files(tmp_path, case):
    path, _ = write(tmp_path)
    mutation, message = _bad_cases()[case]
    rewrite(path, **mutation)
    with pytest.raises(GsdFormatError, match=message):
        load_gsd(path)


def test_rejects_not_safetensors_and_truncated(tmp_path):
    junk = tmp_path / "junk.gsd"
    junk.write_bytes(b"\x00\x01hello world, not a safetensors file")
    with pytest.raises(GsdFormatError, match="not a valid safetensors"):
        load_gsd(junk)
    empty = tmp_path / "empty.gsd"
    empty.write_bytes(b"")
    with pytest.raises(GsdFormatError):
        load_gsd(empty)
    path, _ = write(tmp_path)
    data = path.read_bytes()
    trunc = tmp_path / "trunc.gsd"
    trunc.write_bytes(data[:-40])
    with pytest.raises(GsdFormatError):
        load_gsd(trunc)
    hdr_len = struct.unpack("<Q", data[:8])[0]
    trunc.write_bytes(data[: 8 + hdr_len // 2])
    with pytest.raises(GsdFormatError):
        load_gsd(trunc)
    with pytest.raises(GsdFormatError, match="no such file"):
        load_gsd(tmp_path / "missing.gsd")
    with pytest.raises(GsdFormatError, match="not a file"):
        load_gsd(tmp_path)
