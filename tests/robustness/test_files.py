"""Files you can trust: strict .gsd header validation (every field docs/format.md lists), checkpoint
integrity on --resume, file permissions that follow the umask, strict JSON, the exit-code table."""

import json
import os
import re
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gsdd_cli.sets.gsdfile import REQUIRED_FIELDS


def _rewrite(src: Path, dst: Path, mutate) -> Path:
    tensors = load_file(str(src))
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    mutate(meta)
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_header_field_removed(rb, work, field):
    bad = _rewrite(work / "x.gsd", work / "bad.gsd", lambda m: m.pop(field))
    needle = "not a gsdd file" if field == "format" else ("version" if field == "format_version" else field)
    rb.assert_clean_failure(rb.invoke("info", bad), 4, needle)


MISTYPED = {
    "created-yesterday": ("created", "yesterday", "ISO-8601"),
    "created-no-offset": ("created", "2025-01-31T12:00:00", "UTC offset"),
    "payload-as-string": ("payload_bytes", '"648"', "not as strings"),
    "num-classes-as-string": ("num_classes", '"3"', "num_classes"),
    "height-float": ("height", "8.0", "height"),
    "antialias-int": ("antialias", "1", "antialias"),
    "antialias-string": ("antialias", '"true"', "antialias"),
    "class-names-not-list": ("class_names", '"c0,c1,c2"', "class_names"),
    "class-name-number": ("class_names", '["c0", 1, "c2"]', "class_names"),
    "value-range-reversed": ("value_range", "[1.0, 0.0]", "value_range"),
    "value-range-short": ("value_range", "[0.0]", "value_range"),
    "value-range-nan": ("value_range", "[0.0, NaN]", "value_range"),
    "offset-other": ("cholesky_offset", "[0.5, 0.0, 0.6]", "cholesky_offset"),
    "syn-lr-negative": ("syn_lr", "-0.1", "syn_lr"),
    "syn-lr-infinite": ("syn_lr", "Infinity", "syn_lr"),
    "syn-lr-string": ("syn_lr", '"0.01"', "syn_lr"),
    "config-not-object": ("config", "[1, 2]", "config"),
    "transform-params-null": ("transform_params", "null", "transform_params"),
    "transform-unknown": ("transform", "whiten", "transform"),
    "color-space-unknown": ("color_space", "srgb", "color_space"),
    "ipc-zero": ("ipc", "0", "ipc"),
    "dataset-empty": ("dataset", "", "dataset"),
    "not-json": ("gpc", "{oops", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(MISTYPED))
def test_header_field_mistyped(rb, work, name):
    field, raw, needle = MISTYPED[name]
    bad = _rewrite(work / "x.gsd", work / "bad.gsd", lambda m: m.__setitem__(field, raw))
    rb.assert_clean_failure(rb.invoke("info", bad), 4, needle)


def test_header_unknown_extra_field_is_kept(rb, work):
    ok = _rewrite(work / "x.gsd", work / "extra.gsd", lambda m: m.__setitem__("made_by", "another tool"))
    res = rb.invoke("info", ok, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["made_by"] == "another tool"


# ------------------------------------------------------------------------------------ checkpoints
def _checkpointed(rb, work):
    out = work / "o.gsd"
    res = rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, "--iterations", "4", "--stop-after", "2",
                    "--out", out)
    assert res.exit_code == 0, res.output
    return out, Path(str(out) + ".ckpt")


def _flip_tensor_byte(path: Path) -> None:
    import zipfile

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    # the local header's name and extra lengths (torch pads entries through the local extra field)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, needle", [
    ("flip-byte", "checksum"),
    ("zero-bytes", "empty"),
    ("truncated", "unreadable"),
    ("foreign", "not a gsdd checkpoint"),
    ("garbage", "unreadable"),
])
def test_damaged_checkpoint(rb, work, damage, needle):
    out, ckpt = _checkpointed(rb, work)
    if damage == "flip-byte":
        _flip_tensor_byte(ckpt)
    elif damage == "zero-bytes":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "foreign":
        torch.save({"weights": torch.ones(3)}, ckpt)
    else:
        ckpt.write_bytes(os.urandom(300))
    before = rb.tree(work)
    res = rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, "--iterations", "4", "--out", out, "--resume")
    rb.assert_clean_failure(res, 4, needle)
    rb.assert_untouched(work, before)  # the damaged checkpoint, log and config stay for inspection


def test_checkpoint_round_trip_verifies(rb, work):
    from gsdd_cli.distill import load_checkpoint
    from gsdd_cli.distill.checkpoint import checkpoint_checksum

    _, ckpt = _checkpointed(rb, work)
    state = load_checkpoint(ckpt)
    assert state["checksum"] == checkpoint_checksum(state) and state["last_loss"] is not None


# ------------------------------------------------------------------------------------ permissions
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(rb, work, umask, mode):
    old = os.umask(umask)
    try:
        assert rb.invoke("render", work / "x.gsd", "--grid", work / "g.png", "--png", work / "png", "-q").exit_code == 0
        res = rb.invoke("distill", work / "ds.npz", *rb.FAST_DISTILL, "--out", work / "d.gsd")
        assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    for p in (work / "g.png", work / "png" / "000_c0_0000.png", work / "d.gsd", work / "d.gsd.config.json",
              work / "d.gsd.log.jsonl"):
        assert oct(p.stat().st_mode & 0o777) == oct(mode), p
    assert oct((work / "png").stat().st_mode & 0o777) == oct(0o777 & ~umask)


def test_replaced_file_keeps_its_mode(rb, work):
    (work / "g.png").write_bytes(b"old")
    (work / "g.png").chmod(0o640)
    assert rb.invoke("render", work / "x.gsd", "--grid", work / "g.png", "-q").exit_code == 0
    assert (work / "g.png").stat().st_mode & 0o777 == 0o640 and (work / "g.png").read_bytes() != b"old"


# ---------------------------------------------------------------------------------- strict JSON
def test_json_outputs_never_carry_nan(rb):
    from gsdd_cli.core.outputs import dumps_json, json_safe

    assert json.loads(dumps_json({"a": float("nan"), "b": [float("inf"), 1.5]})) == {"a": None, "b": [None, 1.5]}
    assert json_safe((1.0, float("-inf"))) == [1.0, None]


# --------------------------------------------------------------------------------- exit codes
def test_exit_codes_in_readme_and_help(rb):
    from gsdd_cli.core.errors import EXIT_CODES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|$", readme, re.M))
    assert sorted(int(k) for k in table) == sorted(code for code, _ in EXIT_CODES)
    for cmd in ([], ["render"], ["distill"], ["info"]):
        res = rb.runner.invoke(rb.app, [*cmd, "--help"], terminal_width=200)
        text = " ".join(res.stdout.split())
        for code, what in EXIT_CODES:
            assert f"{code} {what}" in text, (cmd, code)
