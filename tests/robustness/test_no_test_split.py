"""Datasets without a test split: init, distill and experts use them; what measures accuracy says in
one line that it needs test images (issue 19: refuse only what is needed)."""

import numpy as np
import pytest
from PIL import Image

from gsdd_cli.data import load_dataset


def _folder_without_test(root, size):
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (size, size), (40 * k, 20, 30)).save(root / "train" / c / f"{k}.png")
    return root


def test_npz_and_folder_without_test_split_load(rb, tmp_path):
    ds = load_dataset(str(rb.make_npz(tmp_path / "d.npz", with_test=False)))
    assert not ds.has_test and ds.x_test.shape == (0, *ds.shape) and ds.x_train.shape[0] == 12
    folder = load_dataset(str(_folder_without_test(tmp_path / "f", rb.SIZE)))
    assert not folder.has_test and folder.num_classes == 2 and folder.x_train.shape[0] == 4
    assert load_dataset(str(rb.make_npz(tmp_path / "t.npz"))).has_test


def test_init_distill_experts_accept_no_test_split(rb, tmp_path):
    ds = rb.make_npz(tmp_path / "d.npz", with_test=False)
    res = rb.invoke("init", ds, "--ipc", "1", "--steps", "1", "--device", "cpu", "--out", tmp_path / "i.gsd", "-q")
    assert res.exit_code == 0, res.output
    res = rb.invoke("distill", ds, *rb.FAST_DISTILL, "--out", tmp_path / "d.gsd")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d.gsd").is_file()
    res = rb.invoke("experts", ds, "--num", "1", "--epochs", "1", "--device", "cpu", "--out", tmp_path / "buf",
                    "--json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "buf" / "expert_0000.safetensors").is_file()


@pytest.mark.parametrize("command", ["eval", "eval-baseline", "distill-eval-every", "export-with-test"])
def test_accuracy_needs_a_test_split_one_line(rb, tmp_path, command):
    ds = rb.make_npz(tmp_path / "d.npz", with_test=False)
    gsd = rb.make_gsd(tmp_path / "x.gsd", str(ds))
    before = rb.tree(tmp_path)
    args = {
        "eval": ["eval", gsd, "--epochs", "1", "--runs", "1", "--device", "cpu", "-q"],
        "eval-baseline": ["eval", "--baseline", "random-real", "--dataset", ds, "--ipc", "1", "--epochs", "1",
                          "--runs", "1", "--device", "cpu", "-q"],
        "distill-eval-every": ["distill", ds, *rb.FAST_DISTILL, "--eval-every", "1", "--out", tmp_path / "o.gsd"],
        "export-with-test": ["export", gsd, "--format", "npz", "--with-test", "--out", tmp_path / "o.npz"],
    }[command]
    err = rb.assert_clean_failure(rb.invoke(*args), 8, "no test split")
    assert {"eval": "gsdd eval", "eval-baseline": "gsdd eval --baseline", "distill-eval-every": "--eval-every",
            "export-with-test": "--with-test"}[command] in err
    rb.assert_untouched(tmp_path, before)


def test_half_a_test_split_is_refused(rb, tmp_path):
    p = tmp_path / "h.npz"
    x = np.zeros((4, rb.SIZE, rb.SIZE, 3), np.uint8)
    np.savez(p, x_train=x, y_train=np.array([0, 0, 1, 1]), x_test=x)
    rb.assert_clean_failure(rb.invoke("init", p, "--ipc", "1", "--steps", "1", "--device", "cpu",
                                      "--out", tmp_path / "o.gsd"), 8, "has x_test but no y_test")


def test_export_without_test_starts_another_distillation(rb, tmp_path):
    ds = rb.make_npz(tmp_path / "d.npz")
    gsd = rb.make_gsd(tmp_path / "x.gsd", str(ds))
    res = rb.invoke("export", gsd, "--format", "npz", "--out", tmp_path / "e.npz", "-q")
    assert res.exit_code == 0, res.output
    res = rb.invoke("init", tmp_path / "e.npz", "--ipc", "1", "--gpc", "1", "--steps", "1", "--device", "cpu",
                    "--out", tmp_path / "again.gsd", "-q")
    assert res.exit_code == 0, res.output
