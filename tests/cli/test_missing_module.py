"""A missing Python package (optional extra or broken install) is one `error:` line, exit code 11."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gsdd_cli.cli import app
from gsdd_cli.core.errors import MissingModuleError, missing_module_error

runner = CliRunner()


def _one_error_line(res, needle):
    assert res.exit_code == 11, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error:") and sum(ln.startswith("error:") for ln in lines) == 1, lines
    assert needle in lines[0], lines[0]


def test_yaml_config_without_pyyaml(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ipc: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now raises ModuleNotFoundError
    res = runner.invoke(app, ["distill", "digits", "--config", str(cfg), "--out", str(tmp_path / "o.gsd")])
    _one_error_line(res, "pip install pyyaml")
    assert not (tmp_path / "o.gsd").exists()


def test_ddranking_export_without_pyyaml(tmp_path, monkeypatch):
    from gsdd_cli.sets.gaussians import GaussianImages
    from gsdd_cli.sets.gsdfile import make_header, save_gsd
    import torch

    imgs = GaussianImages.random(10, 1, 8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    gsd = save_gsd(tmp_path / "x.gsd", imgs, make_header(imgs, dataset="digits", class_names=[str(i) for i in range(10)],
                                                         ipc=1, algorithm="init", transform="normalize"))
    monkeypatch.setitem(sys.modules, "yaml", None)
    res = runner.invoke(app, ["export", str(gsd), "--format", "ddranking", "--out", str(tmp_path / "ddr")])
    _one_error_line(res, "'yaml' is not installed")
    assert not (tmp_path / "ddr").exists()


@pytest.mark.parametrize("module, pip", [("torch", "pip install torch"), ("rich", "pip install rich")])
def test_entry_point_without_a_core_dependency(module, pip):
    code = f"import sys; sys.modules[{module!r}] = None; from gsdd_cli.cli import main; main(['--help'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 11, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == f"error: the Python package {module!r} is not installed; install it with: {pip}"


def test_names_map_to_what_to_install():
    def err(name):
        return missing_module_error(ModuleNotFoundError(f"No module named {name!r}", name=name))

    assert "pip install scikit-learn" in str(err("sklearn.datasets"))
    assert "pip install 'gsdd[tensorboard]'" in str(err("tensorboard"))
    own = err("gsdd_cli.sets")
    assert isinstance(own, MissingModuleError) and "installation is broken" in str(own)
    assert missing_module_error(ModuleNotFoundError("no name")) is None
