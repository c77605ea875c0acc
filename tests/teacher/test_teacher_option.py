"""`--teacher` is declared once (core.options.teacher_option) and becomes a flag of any command that
includes it; `gsdd teacher --help` shows its recipe flags."""

from typing import Optional

import typer
from pydantic import BaseModel, ConfigDict
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.cli.options import command
from gsdd_cli.core.options import teacher_option


class _WithTeacher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: Optional[str] = teacher_option()


def test_teacher_option_becomes_a_flag():
    seen = {}
    demo = typer.Typer()

    @demo.command()
    @command(_WithTeacher)
    def run(cfg: _WithTeacher) -> None:
        seen["teacher"] = cfg.teacher

    runner = CliRunner()
    res = runner.invoke(demo, ["--help"])
    assert res.exit_code == 0 and "--teacher" in res.output and "torchvision" in res.output
    res = runner.invoke(demo, ["--teacher", "resnet18=w.pth"])
    assert res.exit_code == 0 and seen["teacher"] == "resnet18=w.pth"


def test_teacher_command_help():
    res = CliRunner().invoke(app, ["teacher", "--help"])
    assert res.exit_code == 0
    for flag in ("--arch", "--epochs", "--out", "--device", "--lr", "--transform", "resnet18bn"):
        assert flag in res.output
    assert "teacher" in CliRunner().invoke(app, ["--help"]).output
