"""ImageNet-1K from its folder layout, streamed: a generated 1 000-class tree of tiny images."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gsdd_cli.core.errors import DataError
from gsdd_cli.data import clear_cache, dataset_info, load_dataset
from gsdd_cli.data.imagenet1k import load_imagenet1k
from gsdd_cli.data.streaming import ImageFiles, StreamedTransformed, decode_resized, iter_batches
from gsdd_cli.data.transforms import apply_in_batches, make_transform
from gsdd_cli.evaluate.training import test_accuracy as accuracy_of

WNIDS = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]


def _image(path, seed, size):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """<data_dir>/imagenet/train/<wnid>/ with one image per class (sizes vary), flat val/ + CSV."""
    data_dir = tmp_path_factory.mktemp("inet")
    root = data_dir / "imagenet"
    for i, w in enumerate(WNIDS):
        (root / "train" / w).mkdir(parents=True)
        _image(root / "train" / w / f"{w}_{i}.png", i, (12 + i % 5, 9 + i % 7))
    (root / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    for j, c in enumerate((3, 999, 0, 3, 512)):
        stem = f"ILSVRC2012_val_{j + 1:08d}"
        _image(root / "val" / f"{stem}.png", 5000 + j, (10, 14))
        rows.append(f"{stem},{WNIDS[c]} 1 2 3 4 {WNIDS[c]} 5 6 7 8")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return data_dir


def test_streamed_layout_labels_and_shapes(imagenet_root):
    clear_cache()
    ds = load_dataset("imagenet1k", data_dir=imagenet_root)
    assert ds.streamed and isinstance(ds.x_train, ImageFiles)
    assert tuple(ds.x_train.shape) == (1000, 3, 224, 224) and ds.class_names == WNIDS
    assert ds.y_train.tolist() == list(range(1000))
    assert ds.y_test.tolist() == [3, 999, 0, 3, 512]
    assert ds.x_test.files[1].name == "ILSVRC2012_val_00000002.png"
    assert dataset_info("imagenet1k") == (1000, 3, 224, 224)
    x = ds.x_train[torch.tensor([0, 7])]
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1


def test_decode_is_torchvisions_evaluation_transform(imagenet_root):
    import torchvision.transforms.v2.functional as TF

    f = next((imagenet_root / "imagenet" / "train" / WNIDS[3]).iterdir())
    a = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float() / 255
    want = TF.center_crop(TF.resize(a, [256], antialias=True), [224, 224])
    got = decode_resized(f, 224)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) < 2e-3


def test_val_list_by_class_id_and_missing_labels(tmp_path, imagenet_root):
    root = tmp_path / "imagenet"
    root.mkdir()
    (root / "train").symlink_to(imagenet_root / "imagenet" / "train")
    (root / "val").mkdir()
    for j in range(3):
        _image(root / "val" / f"v{j}.png", j, (8, 8))
    (root / "val.txt").write_text("v0.JPEG 17\nv1.JPEG 0\nv2.JPEG " + WNIDS[5] + "\n")
    ds = load_imagenet1k(tmp_path)
    assert ds.y_test.tolist() == [17, 0, 5]
    (root / "val.txt").write_text("v0.JPEG 17\nv1.JPEG 0\n")
    with pytest.raises(DataError, match="no label for 1 of the 3 images"):
        load_imagenet1k(tmp_path)
    (root / "val.txt").write_text("v0.JPEG 17\nv1.JPEG 0\nv2.JPEG n99999999\n")
    with pytest.raises(DataError, match="neither a wnid"):
        load_imagenet1k(tmp_path)


def test_wrong_class_count_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="imagenet1k not found"):
        load_imagenet1k(tmp_path)
    for w in WNIDS[:3]:
        (tmp_path / "imagenet" / "train" / w).mkdir(parents=True)
    with pytest.raises(DataError, match="expected 1000 class folders, found 3"):
        load_imagenet1k(tmp_path)


def _small_files(tmp_path, n=10):
    files = []
    for i in range(n):
        files.append(tmp_path / f"{i}.png")
        _image(files[-1], 100 + i, (20 + i, 16))
    return ImageFiles(files, 32, 3, label="small", workers=0)


def test_stream_slices_equal_the_materialised_images(tmp_path):
    images = _small_files(tmp_path)
    whole = torch.stack([images.load(i) for i in range(len(images))])
    assert torch.equal(images[2:5], whole[2:5]) and torch.equal(images[[9, 0]], whole[[9, 0]])
    assert torch.equal(torch.cat(list(iter_batches(images, 4, workers=2))), whole)  # worker processes
    tf = make_transform(type("D", (), {"mean": (0.5,) * 3, "std": (0.25,) * 3, "channels": 3})(), "normalize")
    view = apply_in_batches(tf, images, "cpu", stream=True)
    assert isinstance(view, StreamedTransformed) and tuple(view.shape) == (10, 3, 32, 32)
    parts = [view[s : s + 3] for s in range(0, 10, 3)]  # sequential, as an accuracy loop takes them
    torch.testing.assert_close(torch.cat(parts), (whole - 0.5) / 0.25)
    torch.testing.assert_close(view[4:6], (whole[4:6] - 0.5) / 0.25)  # out of order restarts the stream


def test_accuracy_on_a_stream_equals_in_memory(tmp_path):
    images = _small_files(tmp_path)
    y = torch.arange(10) % 3
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    tf = make_transform(type("D", (), {"mean": (0.5,) * 3, "std": (0.25,) * 3, "channels": 3})(), "normalize")
    dense = apply_in_batches(tf, torch.stack([images.load(i) for i in range(10)]), "cpu")
    stream = apply_in_batches(tf, images, "cpu", stream=True)
    assert accuracy_of(net, stream, y, batch=4) == accuracy_of(net, dense, y, batch=4)


def test_in_memory_work_refuses_a_stream(tmp_path):
    images = _small_files(tmp_path, 3)
    with pytest.raises(DataError, match="expert training needs every image in memory"):
        apply_in_batches(make_transform(type("D", (), {"mean": (0.5,) * 3, "std": (0.25,) * 3, "channels": 3})(),
                                        "normalize"), images, "cpu", what="expert training")


def test_fingerprint_follows_the_files(tmp_path):
    images = _small_files(tmp_path, 4)
    y = torch.zeros(4, dtype=torch.long)
    a = images.fingerprint(y)
    assert a == ImageFiles(images.files, 32).fingerprint(y)
    _image(images.files[2], 7, (40, 40))
    assert images.fingerprint(y) != a
    assert images.fingerprint(y + 1) != images.fingerprint(y)


def test_cli_refuses_distribution_matching_on_a_stream(imagenet_root):
    r = subprocess.run([sys.executable, "-m", "gsdd_cli", "distill", "imagenet1k", "--algo", "dm", "--ipc", "1",
                        "--iterations", "1", "--data-dir", str(imagenet_root), "--out", str(imagenet_root / "x.gsd"),
                        "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "read from disk on demand" in r.stderr and r.stderr.count("\n") <= 3, r.stderr
    assert not (imagenet_root / "x.gsd").exists()
