"""Datasets: digits (embedded), .npz files, image folders, CIFAR and ImageNet-subset discovery."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gsdd_cli.data import (
    DATASETS,
    clear_cache,
    dataset_info,
    default_transform_kind,
    load_dataset,
    resolve_data_dir,
)
from gsdd_cli.data.imagenet import SUBSETS, subset_class_names, subset_wnids
from gsdd_cli.core.errors import DataError, UnknownNameError


def _write_npz(path: Path, n_train=30, n_test=10, k=3, h=8, w=8, c=3, names=True, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w, c) if c > 1 else (h, w)
    arrays = dict(
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=np.arange(n_train) % k,
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=np.arange(n_test) % k,
    )
    if names:
        arrays["class_names"] = np.array([f"class{i}" for i in range(k)])
    np.savez_compressed(path, **arrays)
    return arrays


def test_registered_names():
    names = DATASETS.names()
    for n in ("digits", "cifar10", "cifar100", "imagenette", "imagewoof", "imagefruit", "imageyellow",
              "imagemeow", "imagesquawk"):
        assert n in names


def test_digits_shapes_and_split():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 16, 16) and ds.x_test.shape == (360, 1, 16, 16)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    assert (ds.num_classes, ds.channels, ds.height, ds.width) == (10, 1, 16, 16)
    # stratified: every class in both splits with ~80/20 proportions
    tr, te = torch.bincount(ds.y_train, minlength=10), torch.bincount(ds.y_test, minlength=10)
    assert (te >= 35).all() and (tr >= 139).all()
    assert ds.default_transform == "normalize" and len(ds.mean) == 1
    # deterministic across reloads and in-process cached
    clear_cache()
    again = load_dataset("digits")
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    assert load_dataset("digits") is again
    assert dataset_info("digits") == (10, 1, 16, 16)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        load_dataset("cifar11")
    assert "cifar10" in str(e.value) and "digits" in str(e.value)
    with pytest.raises(UnknownNameError):
        dataset_info("imagenete")


def test_npz_shared_format(tmp_path):
    arrays = _write_npz(tmp_path / "toy.npz")
    ds = load_dataset(str(tmp_path / "toy.npz"))
    assert ds.x_train.shape == (30, 3, 8, 8) and ds.x_test.shape == (10, 3, 8, 8)
    assert ds.class_names == ["class0", "class1", "class2"]
    expected = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(ds.x_train, expected)
    assert torch.equal(ds.y_train, torch.from_numpy(arrays["y_train"]).long())
    assert dataset_info(str(tmp_path / "toy.npz")) == (3, 3, 8, 8)
    # normalisation constants are computed from the training set
    assert ds.mean == pytest.approx(tuple(expected.mean(dim=(0, 2, 3)).tolist()), abs=1e-5)


def test_npz_grayscale_without_names(tmp_path):
    _write_npz(tmp_path / "g.npz", c=1, names=False, k=4)
    ds = load_dataset(tmp_path / "g.npz")
    assert ds.shape == (1, 8, 8) and ds.class_names == ["0", "1", "2", "3"]
    assert dataset_info(str(tmp_path / "g.npz")) == (4, 1, 8, 8)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="missing array"):
        load_dataset(str(tmp_path / "bad.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable"):
        load_dataset(str(tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="no such"):
        load_dataset(str(tmp_path / "absent.npz"))


def test_image_folder(tmp_path):
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(d / f"{i}.png")
    ds = load_dataset(str(root))
    assert ds.x_train.shape == (6, 3, 12, 10) and ds.x_test.shape == (4, 3, 12, 10)
    assert ds.class_names == ["cat", "dog"] and ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    assert dataset_info(str(root)) == (2, 3, 12, 10)


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("GSDD_DATA_DIR")
    assert resolve_data_dir() == Path("~/.cache/gsdd/data").expanduser()


def test_cifar_missing_offline_is_one_line(_isolated_data_dir):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", download=False)
    msg = str(e.value)
    assert "\n" not in msg and "cifar-10-batches-py" in msg and "cifar10.npz" in msg
    assert str(_isolated_data_dir) in msg


def test_cifar_from_npz_pack(_isolated_data_dir):
    _write_npz(_isolated_data_dir / "cifar10-pack.npz", n_train=20, n_test=10, k=10, h=32, w=32)
    ds = load_dataset("cifar10", download=False)
    assert ds.name == "cifar10" and ds.shape == (3, 32, 32)
    assert ds.default_transform == "zca"
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2023, 0.1994, 0.2010)
    assert dataset_info("cifar10") == (10, 3, 32, 32)


def test_default_transform_kind():
    assert default_transform_kind("cifar10", "tm") == "zca"
    assert default_transform_kind("cifar100", "TM") == "zca"
    assert default_transform_kind("cifar10", "dm") == "normalize"
    assert default_transform_kind("imagenette", "tm") == "normalize"
    assert default_transform_kind("digits", "tm") == "normalize"


# ------------------------------------------------------------------------------ ImageNet subsets
def _fake_class_index(imagenet: Path) -> list[str]:
    """A 1000-line LOC_synset_mapping.txt whose descriptions carry the subsets' expected names."""
    wnids = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
    desc = {i: f"class number {i}" for i in range(1000)}
    for s in SUBSETS.values():
        for cid, name in zip(s.class_ids, s.names):
            desc[cid] = f"{name}, synonym"
    imagenet.mkdir(parents=True, exist_ok=True)
    (imagenet / "LOC_synset_mapping.txt").write_text("\n".join(f"{w} {desc[i]}" for i, w in enumerate(wnids)))
    return wnids


def test_subset_wnids_from_class_index(tmp_path):
    wnids = _fake_class_index(tmp_path / "imagenet")
    meow = subset_wnids(SUBSETS["imagemeow"], tmp_path / "imagenet")
    assert meow == sorted(wnids[i] for i in SUBSETS["imagemeow"].class_ids)
    assert subset_class_names(SUBSETS["imagemeow"])[:3] == ["tabby", "tiger cat", "persian"]
    # hard-coded lists need no file and come out in ascending wnid order
    assert subset_wnids(SUBSETS["imagenette"], tmp_path / "nowhere")[0] == "n01440764"
    assert subset_class_names(SUBSETS["imagewoof"])[0] == "shih-tzu"  # id 155 = smallest wnid


def test_subset_name_check(tmp_path):
    imagenet = tmp_path / "imagenet"
    _fake_class_index(imagenet)
    lines = (imagenet / "LOC_synset_mapping.txt").read_text().splitlines()
    lines[953] = lines[953].split(" ")[0] + " hedgehog"  # id 953 must be pineapple
    (imagenet / "LOC_synset_mapping.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match="pineapple"):
        subset_wnids(SUBSETS["imagefruit"], imagenet)


def test_imagenet_subset_missing(_isolated_data_dir):
    with pytest.raises(DataError) as e:
        load_dataset("imagenette")
    assert "imagenet/train/<wnid>" in str(e.value) and "\n" not in str(e.value)


def test_imagenet_subset_loads_and_resizes(_isolated_data_dir):
    imagenet = _isolated_data_dir / "imagenet"
    wnids = sorted(SUBSETS["imagenette"].wnids)
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        for w in wnids + ["n09999999"]:  # an extra class that is not part of the subset
            d = imagenet / split / w
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(d / f"{i}.JPEG")
    ds = load_dataset("imagenette")
    assert ds.x_train.shape == (20, 3, 128, 128) and ds.x_test.shape == (10, 3, 128, 128)
    assert ds.y_train.tolist() == [c for c in range(10) for _ in range(2)]
    assert ds.class_names[0] == "tench" and ds.mean == (0.485, 0.456, 0.406)
    assert (_isolated_data_dir / "cache" / "imagenette-128.npz").is_file()
    clear_cache()
    again = load_dataset("imagenette")  # from the uint8 cache
    assert torch.allclose(again.x_train, ds.x_train, atol=1 / 255 + 1e-6)
