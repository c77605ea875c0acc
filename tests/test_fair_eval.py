"""Fair metrics in `gsdd eval`: IOR / HLR / LRS (DD-Ranking), fresh random-real subsets per run, --like."""

import json
import math

import pytest
from typer.testing import CliRunner

import gsdd_cli
from gsdd_cli.cli import app
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.evaluate import (
    evaluate_baseline,
    evaluate_gsd,
    fair_metrics,
    label_robust_score,
    label_robust_score_paper,
    make_eval_config,
    subset_seed,
)

runner = CliRunner()
TINY = dict(arch="convnetd1", epochs=1, runs=2)  # epochs must be > 0


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))


def test_lrs_paper_matches_the_definition():
    e = math.e
    assert label_robust_score_paper(0.0, 0.0) == pytest.approx((1 - 1 / e) / (e - 1 / e))
    assert label_robust_score_paper(1.0, -1.0) == pytest.approx(1.0)  # α = 1
    assert label_robust_score_paper(-1.0, 1.0) == pytest.approx(0.0)  # α = −1
    # α = λ·IOR − (1 − λ)·HLR with λ = 0.3
    assert label_robust_score_paper(0.2, 0.1, lam=0.3) == pytest.approx((math.exp(0.06 - 0.07) - 1 / e) / (e - 1 / e))


def _ddranking_0_2_0(syn, rnd, full, lrs_lambda=0.5):
    """DD-Ranking 0.2.0, ddranking/metrics/hard_label.py, LabelRobustScoreHard.compute_metrics, written
    out: its accuracies are percentages (utils/meter.py accuracy: × 100 / batch), then
    hlr = full − syn, ior = syn − rnd, alpha = λ·ior − (1 − λ)·hlr,
    lrs = (exp(alpha) − exp(−1)) / (exp(1) − exp(−1)), not rescaled."""
    hlr = 1.00 * (full - syn)
    ior = 1.00 * (syn - rnd)
    alpha = lrs_lambda * ior - (1 - lrs_lambda) * hlr
    return ior, hlr, (math.exp(alpha) - math.exp(-1)) / (math.exp(1) - math.exp(-1))


def test_units_and_lrs_follow_ddranking():
    syn, rnd, full = [0.4525, 0.46], [0.34, 0.35], [0.5, 0.49]  # fractions, as gsdd's accuracies
    m = fair_metrics(syn, random=rnd, full=full, lrs_lambda=0.6)
    ref = [_ddranking_0_2_0(100 * s, 100 * r, 100 * f, 0.6) for s, r, f in zip(syn, rnd, full)]
    assert m["ior"]["per_run"] == pytest.approx([r[0] for r in ref])
    assert m["ior"]["per_run"] == pytest.approx([11.25, 11.0])  # percentage points
    assert m["hlr"]["per_run"] == pytest.approx([r[1] for r in ref])
    assert m["hlr"]["per_run"] == pytest.approx([4.75, 3.0])
    assert m["lrs"]["per_run"] == pytest.approx([r[2] for r in ref])
    assert m["lrs"]["per_run"][0] == pytest.approx((math.exp(4.85) - math.exp(-1)) / (math.e - math.exp(-1)))
    assert m["lrs_paper"]["per_run"] == pytest.approx([label_robust_score_paper(s - r, f - s, 0.6)
                                                       for s, r, f in zip(syn, rnd, full)])
    assert label_robust_score(11.25, 4.75, 0.6) == pytest.approx(ref[0][2])


def test_fair_metrics_pairs_runs():
    m = fair_metrics([0.9, 0.7], random=[0.5, 0.6], full=[1.0, 0.9])
    assert m["ior"]["per_run"] == pytest.approx([40.0, 10.0]) and m["ior"]["mean"] == pytest.approx(25.0)
    assert m["hlr"]["per_run"] == pytest.approx([10.0, 20.0]) and m["hlr"]["std"] == pytest.approx(5.0)
    assert m["lrs"]["per_run"] == pytest.approx([label_robust_score(40, 10), label_robust_score(10, 20)])
    given = fair_metrics([0.9, 0.7], full=0.95)
    assert given["hlr"]["per_run"] == pytest.approx([5.0, 25.0]) and "lrs" not in given and "ior" not in given
    with pytest.raises(ConfigError, match="pairs runs"):
        fair_metrics([0.9, 0.7], random=[0.5])
    with pytest.raises(ConfigError, match="weight"):
        fair_metrics([0.9], random=[0.5], lrs_lambda=2)


def test_random_real_draws_a_fresh_subset_per_run():
    cfg = make_eval_config(**TINY, seed=4)
    a = evaluate_baseline("digits", "random-real", 2, cfg)
    b = evaluate_baseline("digits", "random-real", 2, cfg)
    idx = a.extra["random_indices"]
    assert len(idx) == 2 and len(idx[0]) == 20 and idx[0] != idx[1]
    assert a.extra["subset_seeds"] == [subset_seed(4, 0), subset_seed(4, 1)]
    assert idx == b.extra["random_indices"] and a.final_accuracy == b.final_accuracy  # reproducible
    other = evaluate_baseline("digits", "random-real", 2, make_eval_config(**TINY, seed=5))
    assert other.extra["random_indices"][0] != idx[0]
    labels = gsdd_cli.load_dataset("digits").y_train
    assert [int(labels[i]) for i in idx[0]] == [c for c in range(10) for _ in range(2)]  # class-major


@pytest.fixture
def tiny(device):
    return {**TINY, "device": device}  # GSDD_TEST_DEVICE (tests/conftest.py)


def test_baseline_like_a_file(tmp_path, make_digits_gsd, tiny):
    path = make_digits_gsd(tmp_path / "z.gsd", transform="zca")
    res = evaluate_baseline(None, "random-real", cfg=make_eval_config(**tiny), like=path)
    assert res.transform == "zca" and res.extra["ipc"] == 1 and res.num_train_images == 10
    assert res.extra["like"] == str(path)
    with pytest.raises(ConfigError, match="IPC and transform"):
        evaluate_baseline(None, "random-real", ipc=2, cfg=make_eval_config(**tiny), like=path)


def test_vs_random_and_full(tmp_path, make_digits_gsd, tiny, backend):
    path = make_digits_gsd(tmp_path / "d.gsd", syn_lr=0.02, algorithm="tm")
    phases = set()
    res = evaluate_gsd(path, make_eval_config(**tiny), backend=backend, vs_random=True, full_accuracy=0.97,
                       on_step=lambda st: phases.add(st.phase))
    rnd = res.baselines["random-real"]
    assert phases == {"distilled", "random-real"}
    # the same protocol: lr and batch size as resolved for the file (learned lr, TM batch 256)
    assert (rnd.lr, rnd.batch_size, rnd.runs, rnd.transform) == (0.02, 256, 2, "normalize")
    assert rnd.num_train_images == 10 and len(rnd.extra["random_indices"]) == 2
    m = res.metrics
    assert m["ior"]["per_run"] == pytest.approx([100 * (d - r) for d, r in zip(res.final_accuracy, rnd.final_accuracy)])
    assert m["hlr"]["per_run"] == pytest.approx([100 * (0.97 - d) for d in res.final_accuracy])
    assert m["full_accuracy_source"] == "given" and "lrs" in m
    json.dumps(res.model_dump())
    trained = evaluate_gsd(path, make_eval_config(**tiny), backend=backend, full=True)
    assert trained.baselines["full"].num_train_images == 1437 and "ior" not in trained.metrics
    assert trained.metrics["full_accuracy_source"] == "trained"
    with pytest.raises(ConfigError, match="not both"):
        evaluate_gsd(path, make_eval_config(**tiny), full=True, full_accuracy=0.9)
    with pytest.raises(ConfigError, match="fraction"):
        evaluate_gsd(path, make_eval_config(**tiny), full_accuracy=97.0)


def _cli(*args):
    return runner.invoke(app, ["eval", *[str(a) for a in args]])


def test_cli_vs_random_table_and_json(tmp_path, make_digits_gsd, device):
    path = make_digits_gsd(tmp_path / "d.gsd")
    flags = ["--arch", "convnetd1", "--epochs", "1", "--runs", "2", "--device", device, "-q"]
    table = _cli(path, "--vs-random", "--full-acc", "97.5", *flags)
    assert table.exit_code == 0, table.output
    assert "IOR" in table.stdout and "HLR" in table.stdout and "LRS" in table.stdout
    data = json.loads(_cli(path, "--vs-random", "--json", *flags).stdout)
    assert set(data["metrics"]) == {"ior"} and data["baselines"]["random-real"]["num_train_images"] == 10
    only_ior = _cli(path, "--vs-random", *flags)
    assert "LRS needs both" in only_ior.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--full-acc", "0.9"], "percentage"),
        (["--full-acc", "120"], "percentage"),
        (["--full", "--full-acc", "90"], "not both"),
        (["--like", "{gsd}"], "--like only applies"),
    ],
)
def test_cli_flag_rules_for_files(tmp_path, make_digits_gsd, args, needle):
    path = make_digits_gsd(tmp_path / "d.gsd")
    res = _cli(path, *[a.format(gsd=path) for a in args])
    assert res.exit_code == 3 and res.stderr.startswith("error:") and needle in res.stderr, res.output


def test_cli_flag_rules_for_baselines(tmp_path, make_digits_gsd, device):
    path = make_digits_gsd(tmp_path / "d.gsd")
    for args, needle in (
        (["--baseline", "random-real", "--like", path, "--ipc", "2"], "--like takes"),
        (["--baseline", "random-real", "--dataset", "digits", "--ipc", "1", "--vs-random"], "do not apply"),
        (["--baseline", "random-real"], "--like"),
    ):
        res = _cli(*args)
        assert res.exit_code == 3 and needle in res.stderr, res.output
    ok = _cli("--baseline", "random-real", "--like", path, "--arch", "convnetd1", "--epochs", "1", "--runs", "1",
              "--device", device, "-q")
    assert ok.exit_code == 0 and "ipc 1" in ok.stdout and "like" in ok.stdout, ok.output


def test_lrs_equals_ddranking_020_output():
    """Per-run (IOR, HLR, LRS) from the CSV DD-Ranking 0.2.0 wrote for a CIFAR-10 set (docs/export.md, λ 0.5):
    gsdd's ``lrs`` of the same points must be DD-Ranking's number."""
    written = [(20.300000000000004, 24.939999999999998, -0.11470625499075052),
               (23.620000000000005, 24.959999999999994, 0.06119340985740051)]
    for ior, hlr, lrs in written:
        assert label_robust_score(ior, hlr, 0.5) == pytest.approx(lrs, rel=1e-12, abs=1e-15)
