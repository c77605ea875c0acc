"""Output discipline of every command: an output that names an input, a folder where a file is meant (and
the reverse), a read-only folder, a full disk, a name too long. Each must end in one `error:` line with
its exit code, leave no partial or side file, and keep a pre-existing output of the same name intact."""

import errno
import os

import pytest


def _distill(rb, work, *extra):
    return rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, *extra)


# ------------------------------------------------------------------------------ output == an input
@pytest.mark.parametrize("case", ["render-grid", "init-out", "distill-config", "distill-dataset", "distill-init",
                                  "experts-dataset"])
def test_output_that_names_an_input_is_refused(rb, work, case):
    (work / "c.yaml").write_text("iterations: 2\n")
    rb.make_npz(work / "folder-ds.npz")
    before = rb.tree(work)
    args = {
        "render-grid": ["render", work / "x.gsd", "--grid", work / "x.gsd"],
        "init-out": ["init", work / "ds.npz", "--ipc", "1", "--steps", "1", "--out", work / "ds.npz", "--device", "cpu"],
        "distill-config": ["distill", work / "ds.npz", *rb.FAST_DISTILL, "--config", work / "c.yaml",
                           "--out", work / "c.yaml"],
        "distill-dataset": ["distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", work / "ds.npz"],
        "distill-init": ["distill", work / "ds.npz", *rb.FAST_DISTILL, "--init", work / "x.gsd", "--out", work / "x.gsd"],
        "experts-dataset": ["experts", work / "ds.npz", "--num", "1", "--epochs", "1", "--out", work / "ds.npz"],
    }[case]
    rb.assert_clean_failure(rb.invoke(*args), 3, "refusing to overwrite an input")
    rb.assert_untouched(work, before)


def test_render_png_folder_equal_to_grid_is_refused(rb, work):
    before = rb.tree(work)
    rb.assert_clean_failure(rb.invoke("render", work / "x.gsd", "--png", work / "o", "--grid", work / "o"), 3)
    rb.assert_untouched(work, before)


# ----------------------------------------------------------------------------- file vs folder, names
@pytest.mark.parametrize("case", ["init-out-folder", "distill-out-folder", "render-grid-folder", "render-png-file",
                                  "experts-out-file", "init-parent-file", "init-name-too-long"])
def test_output_path_problems_fail_before_any_work(rb, work, case):
    (work / "afolder").mkdir()
    (work / "afile").write_text("keep me")
    long = "n" * 300 + ".gsd"
    before = rb.tree(work)
    args = {
        "init-out-folder": ["init", work / "ds.npz", "--ipc", "1", "--steps", "1", "--device", "cpu", "--out", work / "afolder"],
        "distill-out-folder": ["distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", work / "afolder"],
        "render-grid-folder": ["render", work / "x.gsd", "--grid", work / "afolder"],
        "render-png-file": ["render", work / "x.gsd", "--png", work / "afile"],
        "experts-out-file": ["experts", work / "ds.npz", "--num", "1", "--epochs", "1", "--out", work / "afile"],
        "init-parent-file": ["init", work / "ds.npz", "--ipc", "1", "--steps", "1", "--device", "cpu",
                             "--out", work / "afile" / "x.gsd"],
        "init-name-too-long": ["init", work / "ds.npz", "--ipc", "1", "--steps", "1", "--device", "cpu",
                               "--out", work / long],
    }[case]
    err = rb.assert_clean_failure(rb.invoke(*args), 9)
    assert "cannot write" in err
    rb.assert_untouched(work, before)


# --------------------------------------------------------------------------------- read-only folder
def _deny_writes(monkeypatch, folder):
    """Simulate a folder nobody may write to (we may run as root, where chmod does not bind)."""
    import gsdd_cli.core.outputs as outputs

    real = os.access

    def access(path, mode, *a, **k):
        if os.path.realpath(path) == os.path.realpath(folder) and mode & os.W_OK:
            return False
        return real(path, mode, *a, **k)

    monkeypatch.setattr(outputs.os, "access", access)


@pytest.mark.parametrize("command", ["init", "distill", "experts", "render-png", "render-grid"])
def test_read_only_folder_simulated(rb, work, monkeypatch, command):
    ro = work / "ro"
    ro.mkdir()
    before = rb.tree(work)
    _deny_writes(monkeypatch, ro)
    args = {
        "init": ["init", work / "ds.npz", "--ipc", "1", "--steps", "1", "--device", "cpu", "--out", ro / "i.gsd"],
        "distill": ["distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", ro / "d.gsd"],
        "experts": ["experts", work / "ds.npz", "--num", "1", "--epochs", "1", "--out", ro / "buf"],
        "render-png": ["render", work / "x.gsd", "--png", ro / "png"],
        "render-grid": ["render", work / "x.gsd", "--grid", ro / "g.png"],
    }[command]
    rb.assert_clean_failure(rb.invoke(*args), 9, "no permission")
    rb.assert_untouched(work, before)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_folder_chmod(rb, work):
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        before = rb.tree(work)
        rb.assert_clean_failure(rb.invoke("render", work / "x.gsd", "--grid", ro / "g.png"), 9, "permission")
        rb.assert_untouched(work, before)
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("code, needle", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_write_refused_by_the_file_system(rb, work, monkeypatch, code, needle):
    """The check passed but the write itself fails (a read-only mount, a permission race)."""
    rb.make_gsd(work / "g.png", "old")  # pre-existing output of the same name
    before = rb.tree(work)
    rb.failing_writes(monkeypatch, code=code)
    rb.assert_clean_failure(rb.invoke("render", work / "x.gsd", "--grid", work / "g.png"), 9, needle)
    rb.assert_untouched(work, before)


# --------------------------------------------------------------------------------------- full disk
@pytest.mark.parametrize("command, after", [
    ("init", 0),
    ("distill", 1),  # the config is written, the final .gsd (and the rescue checkpoint) is not
    ("experts", 1),  # the manifest is written, the expert file is not
    ("render-png", 2),  # two PNGs written, the third fails
    ("render-grid", 0),
])
def test_full_disk(rb, work, monkeypatch, command, after):
    out = {"init": work / "o.gsd", "distill": work / "o.gsd", "experts": work / "buf", "render-png": work / "png",
           "render-grid": work / "g.png"}[command]
    args = {
        "init": ["init", work / "ds.npz", "--ipc", "1", "--steps", "1", "--device", "cpu", "--out", out],
        "distill": ["distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", out],
        "experts": ["experts", work / "ds.npz", "--num", "1", "--epochs", "1", "--batch", "8", "--device", "cpu",
                    "--out", out, "-q"],
        "render-png": ["render", work / "x.gsd", "--png", out, "-q"],
        "render-grid": ["render", work / "x.gsd", "--grid", out, "-q"],
    }[command]
    before = rb.tree(work)
    calls = rb.failing_writes(monkeypatch, after=after)
    rb.assert_clean_failure(rb.invoke(*args), 9, "disk full")
    assert calls["n"] > after  # the simulated failure was reached
    rb.assert_untouched(work, before)  # no partial file, no side file (config, log, manifest), no PNG


@pytest.mark.parametrize("command", ["init", "distill", "render-grid", "render-png"])
def test_full_disk_keeps_a_previous_output(rb, work, monkeypatch, command):
    prev = {"init": work / "o.gsd", "distill": work / "o.gsd", "render-grid": work / "g.png",
            "render-png": work / "png"}[command]
    if command == "render-png":
        prev.mkdir()
        (prev / "000_c0_0000.png").write_bytes(b"old png")
        (prev / "notes.txt").write_text("mine")
    else:
        rb.make_gsd(prev, "old")
    args = {
        "init": ["init", work / "ds.npz", "--ipc", "1", "--steps", "1", "--device", "cpu", "--out", prev],
        "distill": ["distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", prev],
        "render-grid": ["render", work / "x.gsd", "--grid", prev, "-q"],
        "render-png": ["render", work / "x.gsd", "--png", prev, "-q"],
    }[command]
    before = rb.tree(work)
    rb.failing_writes(monkeypatch, after={"distill": 1, "render-png": 2}.get(command, 0))
    rb.assert_clean_failure(rb.invoke(*args), 9)
    rb.assert_untouched(work, before)


def test_render_png_into_an_existing_folder_replaces_only_on_success(rb, work):
    png = work / "png"
    png.mkdir()
    (png / "notes.txt").write_text("mine")
    res = rb.invoke("render", work / "x.gsd", "--png", png, "-q")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in png.iterdir())
    assert names == ["000_c0_0000.png", "001_c1_0000.png", "002_c2_0000.png", "notes.txt"]


def test_bad_backend_creates_nothing(rb, work):
    before = rb.tree(work)
    rb.assert_clean_failure(rb.invoke("render", work / "x.gsd", "--png", work / "new", "--backend", "nope"), 3, "backend")
    rb.assert_clean_failure(rb.invoke("init", work / "ds.npz", "--ipc", "1", "--out", work / "new" / "i.gsd",
                                      "--backend", "nope", "--device", "cpu"), 3, "backend")
    rb.assert_clean_failure(rb.invoke("distill", work / "ds.npz", "--algo", "dm", "--ipc", "1", "--device", "cpu",
                                      "--backend", "nope", "--out", work / "new" / "d.gsd"), 3, "backend")
    rb.assert_untouched(work, before)


def test_failed_final_write_keeps_the_finished_state(rb, work, monkeypatch):
    """The .gsd does not fit but the checkpoint does: the run is not lost, --resume writes the output."""
    import gsdd_cli.sets.gsdfile as gsdfile
    from gsdd_cli.core.outputs import fs_error

    def full(path, data):
        raise fs_error(OSError(errno.ENOSPC, "No space left on device"), path)

    monkeypatch.setattr(gsdfile, "atomic_write_bytes", full)
    err = rb.assert_clean_failure(rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", work / "o.gsd"),
                                  9, "disk full")
    assert "--resume" in err and not (work / "o.gsd").exists() and (work / "o.gsd.ckpt").exists()
    monkeypatch.undo()
    res = rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", work / "o.gsd", "--resume")
    assert res.exit_code == 0, res.output
    assert (work / "o.gsd").exists() and not (work / "o.gsd.ckpt").exists()
