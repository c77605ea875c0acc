"""`gsdd eval` through typer's CliRunner: exit codes, one-line errors, table and JSON output."""

import json

import pytest
import torch
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.data import load_dataset
from gsdd_cli.sets.gaussians import GaussianImages
from gsdd_cli.sets.gsdfile import make_header, save_gsd

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))


def run(*args):
    return runner.invoke(app, ["eval", *[str(a) for a in args]])


def _assert_clean_error(res, code, *needles):
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    err = res.stderr.strip()
    assert err.startswith("error:") and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    for n in needles:
        assert n in err, err


@pytest.fixture
def gsd(tmp_path):
    ds = load_dataset("digits")
    gi = GaussianImages.random(10, 1, 8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    header = make_header(gi, dataset="digits", class_names=ds.class_names, ipc=1, algorithm="dm",
                         transform="normalize")
    return save_gsd(tmp_path / "x.gsd", gi, header)


def test_file_and_baseline_both_or_neither(gsd):
    _assert_clean_error(run(gsd, "--baseline", "full", "--dataset", "digits"), 3, "not both")
    _assert_clean_error(run(), 3, "nothing to evaluate")


def test_missing_and_corrupt_files(tmp_path):
    _assert_clean_error(run(tmp_path / "absent.gsd"), 4, "no such file")
    bad = tmp_path / "bad.gsd"
    bad.write_bytes(b"\x00" * 64)
    _assert_clean_error(run(bad), 4)


def test_unknown_names(gsd):
    _assert_clean_error(run(gsd, "--arch", "resnet19"), 7, "resnet18")
    _assert_clean_error(run("--baseline", "full", "--dataset", "cifar11", "--epochs", "1"), 7, "cifar10")
    _assert_clean_error(run("--baseline", "everything", "--dataset", "digits"), 3, "random-real")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--epochs", "-1"], "epochs"),
        (["--runs", "0"], "runs"),
        (["--lr", "-0.1"], "lr"),
        (["--batch-size", "0"], "--batch-size"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_numbers(gsd, args, needle):
    _assert_clean_error(run(gsd, *args), 3, needle)


@pytest.mark.cpu_only(reason="checks the error for --device cuda on a machine without a GPU")
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_gpu(gsd):
    # the same device rule (and exit code) as every other command
    _assert_clean_error(run(gsd, "--device", "cuda"), 6, "no CUDA GPU")


def test_baseline_flag_rules(gsd):
    _assert_clean_error(run("--baseline", "random-real", "--dataset", "digits"), 3, "--ipc")
    _assert_clean_error(run("--baseline", "random-real", "--ipc", "0", "--dataset", "digits"), 3, "--ipc")
    _assert_clean_error(run("--baseline", "full"), 3, "--dataset")
    _assert_clean_error(run(gsd, "--ipc", "3"), 3, "--ipc")


def test_missing_dataset_is_a_data_error(tmp_path):
    res = run("--baseline", "full", "--dataset", "cifar10", "--data-dir", tmp_path / "empty", "--epochs", "1")
    # download may be attempted; offline it must fail cleanly with exit code 8
    if res.exit_code != 0:
        _assert_clean_error(res, 8, "cifar")


def test_eval_file_json_and_table(gsd, device, backend):
    res = run(gsd, "--arch", "convnetd1", "--epochs", "1", "--runs", "1", "--device", device,
              "--backend", backend, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["arch"] == "convnetd1" and data["runs"] == 1 and data["lr"] == 0.01
    assert data["batch_size"] == 128 and len(data["final_accuracy"]) == 1 and len(data["file_sha256"]) == 64
    table = run(gsd, "--arch", "convnetd1", "--epochs", "1", "--runs", "2", "--device", device, "--quiet")
    assert table.exit_code == 0, table.output
    assert "mean ± std" in table.stdout and "convnetd1" in table.stdout


def test_eval_baseline_json(device):
    res = run("--baseline", "random-real", "--ipc", "1", "--dataset", "digits", "--arch", "convnetd1",
              "--epochs", "1", "--runs", "1", "--device", device, "--json", "-q")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["source"] == "baseline:random-real" and data["num_train_images"] == 10


def test_help_mentions_eval():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "eval" in res.stdout
