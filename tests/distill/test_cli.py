"""`gsdd distill` / `gsdd experts` through the CLI: outputs, one-line errors and exit codes."""

import json

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from gsdd_cli.cli import app

@pytest.fixture
def fast(device, backend):
    return ["--device", device, "--backend", backend, "--init-steps", "10", "-q"]  # GSDD_TEST_DEVICE


def _run(*args):
    return CliRunner().invoke(app, list(args))


def _one_line_error(res, code, text):
    assert res.exit_code == code, (res.exit_code, res.output)
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert lines[0].startswith("error:") and text in res.output, res.output
    assert "Traceback" not in res.output


def test_distill_cli_writes_outputs(tmp_path, fast):
    out = tmp_path / "d.gsd"
    res = _run("distill", "digits", "--algo", "dm", "--ipc", "1", "--iterations", "2", "--batch-real", "8",
               "--eval-every", "2", "--eval-epochs", "1", "--out", str(out), "--json", *fast)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["iterations"] == 2 and len(summary["evals"]) == 1
    assert 0 <= summary["evals"][0]["mean"] <= 1
    with safe_open(str(out), framework="pt") as f:
        md = f.metadata()
    assert md["algorithm"] == "dm"
    resolved = json.loads((tmp_path / "d.gsd.config.json").read_text())
    assert resolved["batch_real"] == 8 and resolved["transform"] == "normalize"
    assert json.loads(md["config"])["batch_real"] == 8
    log = [json.loads(l) for l in (tmp_path / "d.gsd.log.jsonl").read_text().splitlines()]
    assert any(r["event"] == "eval" for r in log)


def test_distill_cli_from_init_file_and_config_file(tmp_path, fast, device, backend):
    init = tmp_path / "init.gsd"
    res = _run("init", "digits", "--ipc", "1", "--steps", "5", "--out", str(init), "--backend", backend,
               "--device", device, "-q")
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("algo: dc\nipc: 1\niterations: 1\nbatch_real: 4\n")
    out = tmp_path / "dc.gsd"
    res = _run("distill", "digits", "--config", str(cfg), "--init", str(init), "--out", str(out), *fast)
    assert res.exit_code == 0, res.output
    resolved = json.loads((tmp_path / "dc.gsd.config.json").read_text())
    assert resolved["algo"] == "dc" and resolved["init"] == str(init) and resolved["iterations"] == 1


def test_distill_cli_errors(tmp_path, fast):
    out = str(tmp_path / "x.gsd")
    _one_line_error(_run("distill", "digits", "--algo", "xm", "--ipc", "1", "--out", out), 3, "unknown algorithm")
    _one_line_error(_run("distill", "nosuchset", "--algo", "dm", "--ipc", "1", "--out", out), 7, "unknown dataset")
    _one_line_error(_run("distill", "digits", "--algo", "tm", "--ipc", "1", "--param", "voxel", "--out", out), 3,
                    "param")
    bad = tmp_path / "bad.gsd"
    bad.write_bytes(b"not a safetensors file at all")
    _one_line_error(_run("distill", "digits", "--algo", "dm", "--ipc", "1", "--init", str(bad), "--out", out), 4,
                    "bad.gsd")
    _one_line_error(_run("distill", "digits", "--algo", "dm", "--ipc", "1", "--out", out, "--resume"), 3,
                    "no checkpoint")
    cfg = tmp_path / "extra.json"
    cfg.write_text('{"algo": "dm", "ipc": 1, "colour": "red"}')
    _one_line_error(_run("distill", "digits", "--config", str(cfg), "--out", out), 3, "colour")
    _one_line_error(_run("distill", "digits", "--algo", "dm", "--ipc", "0", "--out", out), 3, "--ipc")
    _one_line_error(_run("distill", "digits", "--algo", "dm", "--param", "pixel", "--gpc", "3", "--out", out), 3,
                    "--gpc applies to Gaussian sets")
    _one_line_error(_run("distill", "digits", "--algo", "tm", "--ipc", "1", "--buffers", str(tmp_path), "--out", out,
                         *fast), 3, "manifest")


def test_distill_cli_interrupt_exit_code(tmp_path, monkeypatch, fast):
    import gsdd_cli.distill.loop as loop
    from gsdd_cli.core.algorithms import get_algorithm

    out = tmp_path / "i.gsd"
    base = get_algorithm("dm").load()

    class Interrupting(base):
        def step(self, iteration):
            metrics = super().step(iteration)
            if iteration == 1:
                raise KeyboardInterrupt  # as a second Ctrl-C mid-run would
            return metrics

    class Entry:
        @staticmethod
        def load():
            return Interrupting

    monkeypatch.setattr(loop, "get_algorithm", lambda name: Entry)
    res = _run("distill", "digits", "--algo", "dm", "--ipc", "1", "--iterations", "4", "--batch-real", "4",
               "--save-every", "1", "--out", str(out), *fast)
    assert res.exit_code == 130, res.output
    assert "--resume" in res.output and "i.gsd.ckpt" in res.output
    monkeypatch.setattr(loop, "get_algorithm", get_algorithm)
    res = _run("distill", "digits", "--algo", "dm", "--ipc", "1", "--iterations", "4", "--batch-real", "4",
               "--save-every", "1", "--out", str(out), "--resume", *fast)
    assert res.exit_code == 0, res.output and out.exists()


def test_experts_cli(tiny_npz, tmp_path, device):
    out = tmp_path / "buf"
    res = _run("experts", tiny_npz, "--num", "1", "--epochs", "1", "--batch", "16", "--out", str(out), "--device",
               device, "-q", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["trained"] == [0]
    assert (out / "expert_0000.safetensors").is_file() and (out / "manifest.json").is_file()
    _one_line_error(_run("experts", tiny_npz, "--num", "0", "--out", str(out)), 3, "num")


def test_experts_print_a_time_estimate(tiny_npz, tmp_path, device):
    res = _run("experts", tiny_npz, "--num", "2", "--epochs", "3", "--batch", "16", "--out", str(tmp_path / "b"),
               "--device", device)
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("experts: the first epoch took"))
    assert "2 expert(s) × 3 epochs will take about" in line and "to shorten it" not in line
    res = _run("experts", tiny_npz, "--num", "2", "--epochs", "3", "--batch", "16", "--out", str(tmp_path / "b"),
               "--device", device)
    assert res.exit_code == 0 and "first epoch took" not in res.stderr  # nothing left to train: no estimate


def test_time_estimate_names_what_shortens_a_long_run():
    import torch

    from gsdd_cli.distill.experts import format_duration, time_estimate

    assert [format_duration(s) for s in (45, 720, 3 * 3600 + 600, 52 * 3600)] == ["45 s", "12 min", "3 h 10 min",
                                                                                   "2 d 4 h"]
    short = time_estimate(0.5, 5, 10, torch.device("cpu"))
    assert short.endswith("5 expert(s) × 10 epochs will take about 25 s")
    long = time_estimate(30.0, 100, 50, torch.device("cpu"), ("--num-experts", "--experts-epochs"))
    assert "about 41 h 40 min" in long
    assert long.endswith("to shorten it: fewer experts (--num-experts), fewer epochs (--experts-epochs), "
                         "a GPU (--device cuda)")
    assert "a GPU" not in time_estimate(30.0, 100, 50, torch.device("cuda"))


def test_too_short_cached_experts_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))
    res = _run("distill", "digits", "--algo", "tm", "--ipc", "1", "--max-start-epoch", "4", "--expert-epochs", "2",
               "--experts-epochs", "4", "--out", str(tmp_path / "o.gsd"))
    _one_line_error(res, 3, "--experts-epochs 4 is below the 5 epochs")
    assert not (tmp_path / "data" / "experts").exists() and not (tmp_path / "o.gsd").exists()
