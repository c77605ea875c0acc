"""torchvision teachers offline: local weights files, gsdd's cache, a failed download, ImageNet class maps."""

import urllib.error

import pytest
import torch

from gsdd_cli.core.errors import CheckpointError, ConfigError, DataError, UnknownNameError
from gsdd_cli.data.core import Dataset
from gsdd_cli.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, SUBSETS, subset_class_names
from gsdd_cli.models import teacher_sources
from gsdd_cli.models.teacher import load_teacher
from gsdd_cli.models.teacher_sources import parse_teacher_spec

IMAGENETTE_IDS = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


def _fake(name, class_names, channels=3, size=16):
    k = len(class_names)
    x = torch.rand(k, channels, size, size)
    y = torch.arange(k)
    return Dataset(name, x, y, x, y, list(class_names), mean=IMAGENET_MEAN[:channels], std=IMAGENET_STD[:channels])


def _no_download(*a, **k):
    raise AssertionError("nothing may be downloaded here")


def test_spec_grammar(tmp_path):
    assert parse_teacher_spec("resnet18") == teacher_sources.TeacherSpec("torchvision", "resnet18", "DEFAULT")
    s = parse_teacher_spec("ResNet50:IMAGENET1K_V2=/w/r50.pth")
    assert (s.kind, s.name, s.weights, str(s.path)) == ("torchvision", "resnet50", "IMAGENET1K_V2", "/w/r50.pth")
    assert parse_teacher_spec("t.pt").kind == "gsdd" and parse_teacher_spec("runs/teacher").kind == "gsdd"
    with pytest.raises(ConfigError):
        parse_teacher_spec("  ")


def test_local_weights_file_loads_with_imagenette_class_map(resnet18_weights, monkeypatch):
    monkeypatch.setattr(teacher_sources, "download", _no_download)
    ds = _fake("imagenette", subset_class_names(SUBSETS["imagenette"]))
    t = load_teacher(f"resnet18={resnet18_weights}", dataset=ds, device="cpu")
    idn = t.identity
    assert idn["source"] == "torchvision" and idn["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert idn["num_classes"] == 1000 and idn["class_names"][0] == "tench"
    assert idn["class_map"] == IMAGENETTE_IDS and idn["dataset_wnids"][0] == "n01440764"
    assert idn["resolution"] == [224, 224] and idn["input_transform"]["mean"] == list(IMAGENET_MEAN)
    assert idn["input_conversion"] == "resize 16x16 -> 224x224 (bilinear, antialias)"
    assert idn["matches_published"] is False  # random weights, not the published file
    assert len(t.bn_layers()) == 20 and not t.net.training
    x = torch.randn(2, 3, 16, 16)
    full = t.logits(x, all_classes=True)
    assert full.shape == (2, 1000) and torch.equal(t.logits(x), full[:, IMAGENETTE_IDS])


def test_subset_without_published_wnids_uses_class_index(resnet18_weights, _isolated_data_dir):
    fruit = _fake("imagefruit", subset_class_names(SUBSETS["imagefruit"]))
    ids = sorted(SUBSETS["imagefruit"].class_ids)
    t = load_teacher(f"resnet18={resnet18_weights}", dataset=fruit)
    assert t.identity["class_map"] == ids and t.identity["dataset_wnids"] is None
    imagenet = _isolated_data_dir / "imagenet"  # now with a class-index file: the wnids are recorded
    imagenet.mkdir()
    wnids = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
    (imagenet / "LOC_synset_mapping.txt").write_text("\n".join(f"{w} class {i}" for i, w in enumerate(wnids)))
    t = load_teacher(f"resnet18={resnet18_weights}", dataset=fruit)
    assert t.identity["dataset_wnids"] == [wnids[i] for i in ids]


def test_wnid_folders_map_through_class_index(resnet18_weights, _isolated_data_dir):
    wnids = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
    ds = _fake("folder", [wnids[5], wnids[900], wnids[42]])
    with pytest.raises(DataError, match="needs the 1000-wnid list") as e:
        load_teacher(f"resnet18={resnet18_weights}", dataset=ds)
    assert "\n" not in str(e.value)
    imagenet = _isolated_data_dir / "imagenet"
    imagenet.mkdir()
    (imagenet / "LOC_synset_mapping.txt").write_text("\n".join(f"{w} class {i}" for i, w in enumerate(wnids)))
    t = load_teacher(f"resnet18={resnet18_weights}", dataset=ds)
    assert t.identity["class_map"] == [5, 900, 42]
    bad = _fake("folder", [wnids[5], "n99999999"])
    with pytest.raises(ConfigError, match="'n99999999' are not ImageNet-1K wnids"):
        load_teacher(f"resnet18={resnet18_weights}", dataset=bad)


def test_imagenet_teacher_refused_on_other_classes(resnet18_weights):
    cifar_like = _fake("cifar10", ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                   "ship", "truck"])
    with pytest.raises(ConfigError, match="has 1000 classes but dataset cifar10 has 10") as e:
        load_teacher(f"resnet18={resnet18_weights}", dataset=cifar_like)
    assert "\n" not in str(e.value)
    gray = _fake("imagenette", subset_class_names(SUBSETS["imagenette"]), channels=1)
    with pytest.raises(ConfigError, match="takes RGB images"):
        load_teacher(f"resnet18={resnet18_weights}", dataset=gray)


def test_weights_with_another_class_order_refused(resnet18_weights, monkeypatch):
    """Weights whose categories are not in the standard order (here: two swapped) never load silently."""
    import torchvision

    w = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cats = list(w.meta["categories"])
    cats[0], cats[1] = cats[1], cats[0]
    monkeypatch.setitem(w.meta, "categories", cats)
    ds = _fake("imagenette", subset_class_names(SUBSETS["imagenette"]))
    with pytest.raises(ConfigError, match="class 0 is 'goldfish', but imagenette class 0 is 'tench'"):
        load_teacher(f"resnet18={resnet18_weights}", dataset=ds)


def test_wrong_or_unreadable_local_file_refused(resnet18_weights, tmp_path):
    ds = _fake("imagenette", subset_class_names(SUBSETS["imagenette"]))
    with pytest.raises(CheckpointError, match="not weights of torchvision resnet34") as e:
        load_teacher(f"resnet34={resnet18_weights}", dataset=ds)
    assert "\n" not in str(e.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="not a readable state dict"):
        load_teacher(f"resnet18={junk}", dataset=ds)
    with pytest.raises(DataError, match="no such weights file"):
        load_teacher(f"resnet18={tmp_path / 'absent.pth'}", dataset=ds)
    with pytest.raises(UnknownNameError, match="unknown torchvision classifier 'resnet7'"):
        load_teacher("resnet7", dataset=ds)
    with pytest.raises(UnknownNameError, match="has no weights 'V9'"):
        load_teacher("resnet18:V9", dataset=ds)


def test_failed_download_is_one_line_with_offline_hint(monkeypatch, _isolated_data_dir):
    def offline(url, dest, hash_prefix):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(teacher_sources, "download", offline)
    ds = _fake("imagenette", subset_class_names(SUBSETS["imagenette"]))
    with pytest.raises(DataError) as e:
        load_teacher("resnet18", dataset=ds)
    msg = str(e.value)
    assert "cannot download the resnet18 weights" in msg and "name resolution" in msg and "\n" not in msg
    assert "--teacher resnet18=PATH/resnet18-f37072fd.pth" in e.value.hint
    assert str(_isolated_data_dir / "teachers") in e.value.hint
    with pytest.raises(DataError, match="downloading is off"):
        load_teacher("resnet18", dataset=ds, download=False)


def test_cached_weights_are_used_without_download(resnet18_weights, monkeypatch, _isolated_data_dir):
    monkeypatch.setattr(teacher_sources, "download", _no_download)
    cache = _isolated_data_dir / "teachers"
    cache.mkdir()
    (cache / "resnet18-f37072fd.pth").write_bytes(resnet18_weights.read_bytes())
    ds = _fake("imagenette", subset_class_names(SUBSETS["imagenette"]))
    t = load_teacher("resnet18", dataset=ds)
    assert t.identity["weights_file"] == str(cache / "resnet18-f37072fd.pth")


def test_download_goes_into_gsdd_cache(resnet18_weights, monkeypatch, _isolated_data_dir):
    seen = {}

    def fake(url, dest, hash_prefix):
        seen.update(url=url, dest=dest, prefix=hash_prefix)
        dest.write_bytes(resnet18_weights.read_bytes())

    monkeypatch.setattr(teacher_sources, "download", fake)
    ds = _fake("imagenette", subset_class_names(SUBSETS["imagenette"]))
    load_teacher("resnet18", dataset=ds)
    assert seen == {"url": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
                    "dest": _isolated_data_dir / "teachers" / "resnet18-f37072fd.pth", "prefix": "f37072fd"}


def test_extracted_subset_folder_named_by_wnids(resnet18_weights):
    """An ImageWoof folder whose classes are its published wnids maps without a class-index file."""
    woof = _fake("/data/imagewoof", sorted(SUBSETS["imagewoof"].wnids))
    t = load_teacher(f"resnet18={resnet18_weights}", dataset=woof)
    assert t.identity["class_map"] == sorted(SUBSETS["imagewoof"].class_ids)
    assert t.identity["dataset_wnids"] == sorted(SUBSETS["imagewoof"].wnids)
