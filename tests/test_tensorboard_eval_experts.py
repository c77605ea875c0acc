"""`gsdd experts --tensorboard DIR` and `gsdd eval --tensorboard DIR`: the event files hold what the
command reported (its --json, its on_step records); the option is declared once for all three
commands; a missing package is one `error:` line (exit 11) before any work."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.core.errors import ConfigError, FileSystemError
from gsdd_cli.core.tensorboard import MISSING, EventWriter, check_tensorboard
from gsdd_cli.distill.config import DistillConfig
from gsdd_cli.distill.experts import train_experts
from gsdd_cli.distill.experts_config import ExpertsConfig, make_experts_config
from gsdd_cli.evaluate import EvalConfig, evaluate_baseline, make_eval_config

runner = CliRunner()
EVAL = ["--epochs", "2", "--runs", "2", "--device", "cpu", "--backend", "reference"]


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    """3 classes of 8×8 RGB noise, each class brighter in its own channel (12 train, 4 test images each)."""
    rng = np.random.default_rng(3)

    def part(n):
        x = rng.uniform(0, 90, (3 * n, 8, 8, 3))
        for c in range(3):
            x[c * n:(c + 1) * n, :, :, c] += 150
        return x.astype(np.uint8), np.repeat(np.arange(3), n)

    (xtr, ytr), (xte, yte) = part(12), part(4)
    path = tmp_path_factory.mktemp("tb-data") / "tiny.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, class_names=np.array(["r", "g", "b"]))
    return str(path)


def _events(logdir):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    ea = ea_mod.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def _scalars(ea, tag) -> dict[int, float]:
    return {e.step: e.value for e in ea.Scalars(tag)}


def test_one_declaration_for_three_commands():
    fields = [m.model_fields["tensorboard"] for m in (DistillConfig, ExpertsConfig, EvalConfig)]
    assert all(f.description == fields[0].description for f in fields)
    assert all(f.json_schema_extra == fields[0].json_schema_extra and f.default is None for f in fields)
    for cmd in ("distill", "experts", "eval"):
        res = runner.invoke(app, [cmd, "--help"], terminal_width=200)
        assert "--tensorboard" in res.output, cmd


def test_experts_scalars_match_the_steps_and_the_json(tmp_path, tiny_npz):
    pytest.importorskip("tensorboard")
    tb, out = tmp_path / "tb", tmp_path / "buffers"
    steps = []
    cfg = make_experts_config(dataset=tiny_npz, out=str(out), num=2, epochs=3, batch=16, device="cpu",
                              tensorboard=str(tb))
    result = train_experts(cfg, steps.append)
    ea = _events(tb)
    for i in (0, 1):
        mine = [s for s in steps if s.expert == i]
        assert [s.epoch for s in mine] == [1, 2, 3]
        loss, acc = _scalars(ea, f"expert_{i:04d}/train_loss"), _scalars(ea, f"expert_{i:04d}/train_acc")
        secs = _scalars(ea, f"expert_{i:04d}/epoch_seconds")
        assert sorted(loss) == sorted(acc) == sorted(secs) == [1, 2, 3]
        for s in mine:
            assert loss[s.epoch] == pytest.approx(s.loss, rel=1e-6)
            assert acc[s.epoch] == pytest.approx(s.train_acc, rel=1e-6)
            assert secs[s.epoch] == pytest.approx(s.seconds, rel=1e-6) and s.seconds > 0
        assert _scalars(ea, f"expert_{i:04d}/test_acc") == {3: pytest.approx(result.test_acc[i], rel=1e-6)}
    assert _scalars(ea, "experts/test_acc") == {i: pytest.approx(result.test_acc[i], rel=1e-6) for i in (0, 1)}

    # the CLI: a third expert is trained, the finished two are skipped (nothing logged for them)
    tb2 = tmp_path / "tb2"
    res = runner.invoke(app, ["experts", tiny_npz, "--out", str(out), "--num", "3", "--epochs", "3", "--batch",
                              "16", "--device", "cpu", "--tensorboard", str(tb2), "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["trained"] == [2] and summary["skipped"] == [0, 1]
    ea2 = _events(tb2)
    assert {t for t in ea2.Tags()["scalars"] if t.startswith("expert_")} == {
        f"expert_0002/{k}" for k in ("train_loss", "train_acc", "test_acc", "epoch_seconds")}
    assert _scalars(ea2, "experts/test_acc") == {2: pytest.approx(summary["test_acc"]["2"], abs=1e-4)}


def _eval_json(args):
    res = runner.invoke(app, ["eval", *args, *EVAL, "--json", "-q"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _check_group(ea, group, res):
    """Per run: the curve every pass, the test accuracy at each evaluation point, the results at the end."""
    passes = res["epochs"] + 1
    for r in range(res["runs"]):
        run = f"{group}/run_{r + 1}/"
        assert sorted(_scalars(ea, run + "train_loss")) == list(range(1, passes + 1))
        assert sorted(_scalars(ea, run + "pass_seconds")) == list(range(1, passes + 1))
        test = _scalars(ea, run + "test_acc")
        assert sorted(test) == res["checkpoints"]
        assert test[passes] == pytest.approx(res["final_accuracy"][r], rel=1e-6)
        assert max(test.values()) == pytest.approx(res["best_accuracy"][r], rel=1e-6)
    finals = _scalars(ea, f"{group}/final_accuracy")
    assert finals == {r + 1: pytest.approx(a, rel=1e-6) for r, a in enumerate(res["final_accuracy"])}
    for key in ("mean", "std"):
        assert _scalars(ea, f"{group}/final_accuracy_{key}") == {passes: pytest.approx(res[key], rel=1e-5, abs=1e-7)}
        assert _scalars(ea, f"{group}/best_accuracy_{key}") == {
            passes: pytest.approx(res[f"best_{key}"], rel=1e-5, abs=1e-7)}


def test_eval_with_vs_random_logs_each_set_under_its_own_tag(tmp_path, make_digits_gsd):
    pytest.importorskip("tensorboard")
    f, tb = make_digits_gsd(tmp_path / "d.gsd"), tmp_path / "tb"
    res = _eval_json([str(f), "--vs-random", "--full-acc", "97.5", "--tensorboard", str(tb)])
    ea = _events(tb)
    _check_group(ea, "distilled", res)
    _check_group(ea, "random-real", res["baselines"]["random-real"])
    for key in ("ior", "hlr", "lrs", "lrs_paper"):
        assert _scalars(ea, f"metrics/{key}") == {3: pytest.approx(res["metrics"][key]["mean"], rel=1e-5, abs=1e-6)}
    for group, r in (("distilled", res), ("random-real", res["baselines"]["random-real"])):
        text = ea.Tensors(f"{group}/summary/text_summary")[0].tensor_proto.string_val[0].decode()
        assert text.startswith(f"convnet: {100 * r['mean']:.2f} ± {100 * r['std']:.2f} % final"), text
    assert not [t for t in ea.Tags()["scalars"] if t.startswith(("full/", "eval/"))]


def test_eval_of_a_file_and_of_a_baseline(tmp_path, make_digits_gsd):
    pytest.importorskip("tensorboard")
    f, tb = make_digits_gsd(tmp_path / "d.gsd"), tmp_path / "tb"
    res = _eval_json([str(f), "--tensorboard", str(tb)])
    _check_group(_events(tb), "distilled", res)
    tb2 = tmp_path / "tb2"
    base = _eval_json(["--baseline", "random-real", "--dataset", "digits", "--ipc", "1", "--tensorboard", str(tb2)])
    ea = _events(tb2)
    _check_group(ea, "random-real", base)
    assert {t.split("/")[0] for t in ea.Tags()["scalars"]} == {"random-real"}
    # the library call writes the same (the CLI only passes the option through)
    tb3 = tmp_path / "tb3"
    lib = evaluate_baseline("digits", "random-real", 1, make_eval_config(epochs=2, runs=2, device="cpu",
                                                                         tensorboard=str(tb3)))
    assert np.allclose(list(_scalars(_events(tb3), "random-real/final_accuracy").values()), lib.final_accuracy)
    assert lib.final_accuracy == base["final_accuracy"]


@pytest.mark.parametrize("cmd", ["experts", "eval", "baseline"])
def test_missing_package_is_one_line_before_any_work(monkeypatch, tmp_path, make_digits_gsd, cmd):
    f = make_digits_gsd(tmp_path / "d.gsd")
    before = sorted(tmp_path.iterdir())
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError

    def no_work(*a, **k):
        raise AssertionError("work started before the tensorboard check")

    monkeypatch.setattr("gsdd_cli.distill.experts.load_dataset", no_work)
    monkeypatch.setattr("gsdd_cli.evaluate.protocol.load_gsd", no_work)
    monkeypatch.setattr("gsdd_cli.evaluate.baselines.load_dataset", no_work)
    tb = tmp_path / "tb"
    args = {"experts": ["experts", "digits", "--out", str(tmp_path / "buf")],
            "eval": ["eval", str(f), "--device", "cpu"],
            "baseline": ["eval", "--baseline", "full", "--dataset", "digits", "--device", "cpu"]}[cmd]
    res = runner.invoke(app, [*args, "--tensorboard", str(tb)])
    assert res.exit_code == 11, res.output
    assert res.stderr.strip().splitlines() == [f"error: {MISSING}"]
    assert sorted(tmp_path.iterdir()) == before  # no expert folder, no event folder


def test_folder_checks_before_work(tmp_path, tiny_npz):
    pytest.importorskip("tensorboard")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_tensorboard(str(f))
    with pytest.raises(FileSystemError):
        check_tensorboard(str(f / "below"))  # a part of the path is a file
    res = runner.invoke(app, ["experts", tiny_npz, "--out", str(tmp_path / "buf"), "--num", "1", "--epochs", "1",
                              "--device", "cpu", "--tensorboard", str(f)])
    assert res.exit_code == 3 and "is a file" in res.stderr, res.output
    assert not (tmp_path / "buf").exists()


def test_discard_takes_back_only_what_the_writer_made(tmp_path):
    pytest.importorskip("tensorboard")
    fresh = tmp_path / "a" / "b"
    w = EventWriter(str(fresh))
    w.scalar("x", 1.0, 1)
    assert len(list(fresh.glob("events.out.tfevents.*"))) == 1
    w.discard()
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    old = EventWriter(str(kept))
    old.close()
    w = EventWriter(str(kept))
    w.scalar("x", 2.0, 1)
    w.discard()
    assert sorted(p.name for p in kept.iterdir()) == sorted(["notes.txt", *(p.name for p in kept.glob("events*"))])
    assert len(list(kept.glob("events.out.tfevents.*"))) == 1  # the earlier writer's file stays
