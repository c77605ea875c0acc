"""docs/api.md's code blocks (and the README's library example) run as written, next to a digits.gsd."""

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _run(blocks: list[str], name: str) -> dict:
    ns: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{name} block {i + 1}", "exec"), ns)
    return ns


def test_api_doc_examples_run(tmp_path, monkeypatch, make_digits_gsd):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))
    make_digits_gsd(tmp_path / "digits.gsd", gpc=4)
    monkeypatch.chdir(tmp_path)
    ns = _run(_python_blocks(ROOT / "docs" / "api.md"), "docs/api.md")
    # the quick start trained the network on 40 network-space images
    assert isinstance(ns["net"], torch.nn.Module) and len(ns["train"]) == 40
    assert ns["train"].tensors[0].shape == (40, 1, 16, 16)
    assert set(ns["res"].metrics) >= {"ior", "hlr", "lrs"}
    assert (tmp_path / "digits.pt").is_file() and (tmp_path / "digits-distilled.npz").is_file()


def test_readme_library_example_runs(tmp_path, monkeypatch, make_digits_gsd):
    monkeypatch.setenv("GSDD_DATA_DIR", str(tmp_path / "data"))
    make_digits_gsd(tmp_path / "digits.gsd", gpc=4)
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(ROOT / "README.md")
    assert len(blocks) == 1 and "gsdd_cli.load" in blocks[0]
    ns = _run(blocks, "README.md")
    assert len(ns["train"]) == 40 and isinstance(ns["net"], torch.nn.Module)
