"""Each option is declared once: flags, config keys, --help and OUT.config.json all come from the model.

The parametrized test at the end feeds every numeric flag of every command a wrong type, a
non-finite number and an out-of-range value and wants one `error:` line with exit code 3.
"""

from __future__ import annotations

import json
import re
import typing

import annotated_types as at
import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.cli.options import cli_fields, command, help_text, is_bool
from gsdd_cli.core.options import flag_names, option
from gsdd_cli.distill.config import DistillConfig, build_config

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _help(*args: str) -> str:
    res = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return " ".join(ANSI.sub("", res.output).replace("│", " ").split())


def _click_command(name: str):
    cmd = typer.main.get_command(app)
    return cmd.commands[name]


def test_distill_flags_config_keys_and_help_agree_with_the_model():
    params = {p.name: p for p in _click_command("distill").params}
    text = _help("distill")
    for name, field in cli_fields(DistillConfig).items():
        assert name in params, f"no flag for {name}"
        spelled = flag_names(name, field)[0].split("/")[0]
        assert spelled in params[name].opts or params[name].opts == [name] or spelled in str(params[name].opts)
        if not params[name].hidden:
            words = " ".join(help_text(field).split())
            assert words[:40] in text, (name, words[:40])
    # every field (flags and config-only ones alike) is a config key, and nothing else is
    hidden = {n for n in DistillConfig.model_fields if n not in cli_fields(DistillConfig)}
    assert hidden == {"dsa_strategy", "quantize", "antialias", "train_opacity", "batch_train", "min_syn_lr"}
    cfg = build_config("digits", flags={"algo": "dm", "ipc": 1, "out": "x.gsd"})
    assert set(cfg.model_dump()) == set(DistillConfig.model_fields)


def test_distill_resolved_config_file_has_every_field(tmp_path):
    out = tmp_path / "d.gsd"
    res = runner.invoke(app, ["distill", "digits", "--algo", "dm", "--ipc", "1", "--iterations", "1",
                              "--init-steps", "2", "--batch-real", "8", "--out", str(out), "-q", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    resolved = json.loads((tmp_path / "d.gsd.config.json").read_text())
    assert set(resolved) == set(DistillConfig.model_fields) and resolved["batch_real"] == 8


def test_adding_an_option_is_one_edit(tmp_path):
    """A field added to a model appears as a flag with its help, as a config key, and in the dump."""

    class Extended(DistillConfig):
        new_knob: float = option(2.5, "A knob added by one edit.", gt=0)

    seen = {}
    sub = typer.Typer()

    @sub.command("x")
    @command(Extended, layered=(Extended,))
    def x(given: dict) -> None:
        seen.update(given)

    @sub.callback()
    def _root() -> None:
        pass

    res = runner.invoke(sub, ["x", "digits", "--new-knob", "4", "--algo", "dm"])
    assert res.exit_code == 0, res.output
    assert seen == {"dataset": "digits", "new_knob": 4.0, "algo": "dm"}
    helped = runner.invoke(sub, ["x", "--help"], env={"COLUMNS": "300"})
    assert "--new-knob" in helped.output and "A knob added by one edit. (default: 2.5)" in helped.output
    res = runner.invoke(sub, ["x", "digits", "--new-knob", "abc"])
    assert res.exit_code == 3 and res.output.startswith("error: invalid value for --new-knob")
    cfg = Extended.model_validate({"dataset": "digits", "algo": "dm", "new_knob": 1.0})
    assert cfg.model_dump()["new_knob"] == 1.0
    with pytest.raises(Exception, match="greater than 0"):
        Extended.model_validate({"dataset": "digits", "algo": "dm", "new_knob": 0.0})


def test_a_name_declared_twice_is_refused():
    class A(BaseModel):
        seed: int = option(0, "a")

    class B(BaseModel):
        seed: int = option(0, "b")

    with pytest.raises(TypeError, match="declared by both"):
        command(A, B)(lambda a, b: None)


def test_known_errors_of_a_new_user():
    res = runner.invoke(app, ["init", "digits", "--ipc", "1", "--lr", "inf", "--out", "x.gsd"])
    assert res.exit_code == 3 and res.output.strip() == "error: invalid value for --lr: Input should be a finite number (got inf)"
    res = runner.invoke(app, ["budget", "--ipc", "1", "--algo", "foo"])
    assert res.exit_code == 3 and res.output.startswith("error: invalid value for --algo")


# ---------------------------------------------------------------- every numeric flag of every command
def _fields_by_command():
    """(command, flag, field, base args that are valid on their own)."""
    from gsdd_cli.cli.commands import budget, distill, eval as eval_cmd, experts, export, init, render

    specs = {
        "budget": ([budget.BudgetOptions], ["--ipc", "1"]),
        "init": ([init.InitConfig], ["digits", "--ipc", "1", "--out", "{tmp}/i.gsd"]),
        "distill": ([distill.DistillConfig, distill.DistillRun],
                    ["digits", "--algo", "dm", "--ipc", "1", "--out", "{tmp}/d.gsd"]),
        "experts": ([experts.ExpertsConfig], ["digits", "--out", "{tmp}/e"]),
        "render": ([render.RenderConfig], ["{tmp}/absent.gsd", "--grid", "{tmp}/g.png"]),
        "eval": ([eval_cmd.EvalConfig, eval_cmd.EvalOptions], ["{tmp}/absent.gsd"]),
        "export": ([export.ExportOptions], ["{tmp}/absent.gsd", "--format", "pt", "--out", "{tmp}/x.pt"]),
    }
    for cmd, (models, base) in specs.items():
        for model in models:
            for name, field in cli_fields(model).items():
                if is_bool(field):
                    continue
                tp = typing.get_args(field.annotation) or (field.annotation,)
                kinds = {t for t in tp if t in (int, float)}
                if kinds:
                    yield cmd, flag_names(name, field)[0], field, kinds.pop(), base


def _bad_values(field, kind):
    yield "text", "abc"
    if kind is float:
        yield "nan", "nan"
        yield "inf", "inf"
    for m in field.metadata:
        if isinstance(m, at.Gt):
            yield "range", str(m.gt)
        elif isinstance(m, at.Ge):
            yield "range", str(m.ge - 1)
        elif isinstance(m, at.Lt):
            yield "range", str(m.lt)
        elif isinstance(m, at.Le):
            yield "range", str(m.le + 1)


CASES = [(cmd, flag, what, value, base)
         for cmd, flag, field, kind, base in _fields_by_command()
         for what, value in _bad_values(field, kind)]


def test_the_matrix_covers_every_command_with_numbers():
    assert {c[0] for c in CASES} == {"budget", "init", "distill", "experts", "render", "eval", "export"}
    assert len(CASES) > 80


@pytest.mark.parametrize("cmd, flag, what, value, base", CASES,
                         ids=[f"{c[0]}{c[1]}-{c[2]}" for c in CASES])
def test_every_invalid_flag_value_is_one_error_line_exit_3(tmp_path, cmd, flag, what, value, base):
    args = [a.format(tmp=tmp_path) for a in base]
    if flag in args:  # replace the base value of this flag
        i = args.index(flag)
        args = args[:i] + args[i + 2:]
    res = runner.invoke(app, [cmd, *args, flag, value])
    assert res.exit_code == 3, (res.exit_code, res.output)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[0].startswith("error:") and sum(ln.startswith("error:") for ln in lines) == 1, res.output
    assert flag in lines[0] or flag.lstrip("-") in lines[0], res.output
    assert "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []
