"""Bad inputs: datasets (non-finite or out-of-range pixels, < 2 classes, empty classes, unreadable image
folders), config files (encoding, types, ranges, unknown keys at any depth) and flags (--scale, --epochs)."""

import numpy as np
import pytest

DATASETS = ["nan", "inf", "float-0-255", "float-negative", "one-class", "no-images", "class-missing-in-test",
            "folder-unreadable", "folder-class-without-test"]


def _bad_dataset(rb, root, kind):
    p = root / f"{kind}.npz"
    if kind == "nan":
        return rb.make_npz(p, dtype=np.float32, scale=1.0, poke=np.nan), "NaN"
    if kind == "inf":
        return rb.make_npz(p, dtype=np.float32, scale=1.0, poke=np.inf), "Inf"
    if kind == "float-0-255":
        return rb.make_npz(p, dtype=np.float32, scale=255.0), "0–255"
    if kind == "float-negative":
        return rb.make_npz(p, dtype=np.float32, scale=1.0, poke=-0.5), "[0, 1]"
    if kind == "one-class":
        return rb.make_npz(p, classes=1), "at least 2 classes"
    if kind == "no-images":
        return rb.make_npz(p, train=0, test=0), "no images"
    if kind == "class-missing-in-test":
        return rb.make_npz(p, test_classes=2), "no test images"
    folder = root / kind
    for split in ("train", "test"):
        for c in ("a", "b"):
            if kind == "folder-class-without-test" and split == "test" and c == "b":
                continue
            (folder / split / c).mkdir(parents=True)
            if kind == "folder-unreadable":
                (folder / split / c / "0.png").write_bytes(b"not an image")
            else:
                from PIL import Image

                Image.new("RGB", (rb.SIZE, rb.SIZE), (10, 20, 30)).save(folder / split / c / "0.png")
    return folder, ("cannot read image" if kind == "folder-unreadable" else "no test images")


@pytest.mark.parametrize("command", ["init", "distill", "eval-baseline", "experts"])
@pytest.mark.parametrize("kind", DATASETS)
def test_bad_dataset(rb, tmp_path, command, kind):
    ds, needle = _bad_dataset(rb, tmp_path, kind)
    before = rb.tree(tmp_path)
    args = {
        "init": ["init", ds, "--ipc", "1", "--steps", "1", "--device", "cpu", "--out", tmp_path / "o.gsd"],
        "distill": ["distill", ds, *rb.FAST_DISTILL, "--out", tmp_path / "o.gsd"],
        "eval-baseline": ["eval", "--baseline", "random-real", "--dataset", ds, "--ipc", "1", "--epochs", "1",
                          "--runs", "1", "--device", "cpu", "-q"],
        "experts": ["experts", ds, "--num", "1", "--epochs", "1", "--device", "cpu", "--out", tmp_path / "buf"],
    }[command]
    rb.assert_clean_failure(rb.invoke(*args), 8, needle)
    rb.assert_untouched(tmp_path, before)


def test_float_dataset_in_range_is_accepted(rb, tmp_path):
    ds = rb.make_npz(tmp_path / "f.npz", dtype=np.float32, scale=1.0)
    res = rb.invoke("init", ds, "--ipc", "1", "--steps", "1", "--device", "cpu", "--out", tmp_path / "o.gsd", "-q")
    assert res.exit_code == 0, res.output


# -------------------------------------------------------------------------------------- configs
CONFIGS = {
    "latin-1": (b"iterations: 2 # caf\xe9\n", "UTF-8"),
    "binary": (b"\x00\x01\x02PK\x03\x04\xff\xfe", "UTF-8"),
    "binary-utf8": (b"iterations: 2\x00\x00", "binary"),
    "yaml-syntax": (b"iterations: [2\n", "not valid YAML"),
    "json-syntax": (b'{"iterations": 2,}', "not valid"),
    "not-a-mapping": (b"- 1\n- 2\n", "mapping"),
    "list-for-number": (b"iterations: [2]\n", "'iterations'"),
    "string-for-number": (b"iterations: '2'\n", "'iterations'"),
    "bool-for-number": (b"batch_real: true\n", "'batch_real'"),
    "float-for-int": (b"iterations: 2.5\n", "'iterations'"),
    "negative-count": (b"batch_real: -4\n", "'batch_real'"),
    "zero-count": (b"eval_runs: 0\n", "'eval_runs'"),
    "zero-eval-epochs": (b"eval_epochs: 0\n", "'eval_epochs'"),
    "nan-lr": (b"lr: .nan\n", "'lr'"),
    "inf-lr": (b"lr: .inf\n", "'lr'"),
    "nan-init-lr": (b"init_lr: .nan\n", "'init_lr'"),
    "unknown-key": (b"iteratons: 2\n", "iteratons"),
    "unknown-nested-key": (b"dm:\n  iterations: 2\n", "'dm'"),
    "dict-for-number": (b"lr: {value: 0.1}\n", "'lr'"),
    "ipc-bool": (b"ipc: true\n", "--ipc"),
    "ipc-float": (b"ipc: 1.5\n", "--ipc"),
    "bad-backend": (b"backend: warp\n", "backend"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bad_config_file(rb, work, name):
    text, needle = CONFIGS[name]
    suffix = ".json" if name == "json-syntax" else ".yaml"
    cfg = work / f"c{suffix}"
    cfg.write_bytes(text)
    before = rb.tree(work)
    # --init and --stop-after keep an (unexpectedly) accepted config fast instead of a 20 000-iteration run
    args = ["distill", work / "ds.npz", "--algo", "dm", "--device", "cpu", "--init", work / "x.gsd",
            "--stop-after", "1", "--config", cfg, "--out", work / "o.gsd", "-q"]
    if not name.startswith("ipc"):
        args += ["--ipc", "1"]
    rb.assert_clean_failure(rb.invoke(*args), 3, needle)
    rb.assert_untouched(work, before)


def test_config_folder_and_missing(rb, work):
    rb.assert_clean_failure(rb.invoke("distill", work / "ds.npz", "--algo", "dm", "--ipc", "1", "--config", work,
                                      "--out", work / "o.gsd"), 3, "folder")
    rb.assert_clean_failure(rb.invoke("distill", work / "ds.npz", "--algo", "dm", "--ipc", "1",
                                      "--config", work / "absent.yaml", "--out", work / "o.gsd"), 3, "does not exist")


# ---------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("scale, needle", [("nan", "finite"), ("inf", "finite"), ("-1", "(0, 64]"), ("0", "(0, 64]"),
                                           ("65", "(0, 64]"), ("0.01", "0×0"), ("0.06", "0×0")])
def test_render_scale(rb, work, scale, needle):
    before = rb.tree(work)
    rb.assert_clean_failure(rb.invoke("render", work / "x.gsd", "--grid", work / "g.png", "--scale", scale), 3, needle)
    rb.assert_untouched(work, before)


def test_render_smallest_scale_gives_one_pixel(rb, work):
    from PIL import Image

    res = rb.invoke("render", work / "x.gsd", "--png", work / "p", "--scale", "0.125", "-q")  # 8 px × 0.125 = 1 px
    assert res.exit_code == 0, res.output
    assert Image.open(next((work / "p").iterdir())).size == (1, 1)


@pytest.mark.parametrize("args, needle", [
    (["--epochs", "0"], "epochs"),
    (["--epochs", "-3"], "epochs"),
    (["--lr", "nan"], "lr"),
    (["--lr", "inf"], "lr"),
])
def test_eval_flags(rb, work, args, needle):
    res = rb.invoke("eval", work / "x.gsd", "--dataset", work / "ds.npz", "--runs", "1", "--device", "cpu", *args)
    rb.assert_clean_failure(res, 3, needle)


@pytest.mark.parametrize("args, needle", [(["--lr", "nan"], "lr"), (["--lr", "inf"], "lr"),
                                          (["--stop-after", "0"], "stop-after"), (["--eval-epochs", "0"], "--eval-epochs")])
def test_distill_flags(rb, work, args, needle):
    before = rb.tree(work)
    rb.assert_clean_failure(rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, *args, "--out", work / "o.gsd"),
                            3, needle)
    rb.assert_untouched(work, before)
