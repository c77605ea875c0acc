"""Shared fixtures, and the one switch that runs the pipeline tests on a GPU.

The device switch: ``GSDD_TEST_DEVICE`` (``cpu`` by default, or ``cuda``) picks the device every
pipeline test runs on, through two session fixtures:

* ``device``  — ``"cpu"`` or ``"cuda"``: pass it wherever a test used to write ``device="cpu"`` or
  ``"--device", "cpu"`` (``build_config(..., flags={"device": device})``,
  ``make_eval_config(device=device)``, ``[..., "--device", device]``).
* ``backend`` — the renderer those tests use: ``"reference"`` on CPU (what they passed literally
  before), ``"native"`` on CUDA (the CUDA kernels; a missing extension is a failure, never a silent
  fallback to the reference).

Converting a test file: take ``device`` / ``backend`` as arguments instead of the literals; a module
level ``FAST = {"device": "cpu", ...}`` becomes a fixture or a ``{**FAST, "device": device}``
merge. A check that only holds on CPU (a tolerance, a timing, "no GPU here") either becomes
device-aware with a comment saying why, or the test is marked
``@pytest.mark.cpu_only(reason="...")``: under ``GSDD_TEST_DEVICE=cuda`` it is skipped with that
reason. On CPU nothing changes. ``GSDD_TEST_DEVICE=cuda`` without a usable GPU stops the session
with a usage error (exit code 4) instead of quietly testing the CPU.

On CUDA the session also asks torch for deterministic kernels (cuDNN / cuBLAS): the rasterizer is
deterministic by construction, and with this the resume tests can demand bit-identical tensors.

``GSDD_TEST_REPORT=FILE`` appends one JSON line per finished test to FILE as it finishes (what
``scripts/gpu_checks.sh suite`` returns: a run cut short by its time limit keeps what finished).
"""

import json
import os

import pytest
import torch

# Tests use the reference renderer on CPU unless a test asks otherwise.
os.environ.setdefault("GSDD_BACKEND", "auto")
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

DEVICES = ("cpu", "cuda")
TEST_DEVICE = (os.environ.get("GSDD_TEST_DEVICE", "cpu") or "cpu").strip().lower()

if TEST_DEVICE == "cuda":
    # must be set before cuBLAS starts; torchrun children inherit it
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def pytest_configure(config):
    if TEST_DEVICE not in DEVICES:
        raise pytest.UsageError(f"GSDD_TEST_DEVICE={TEST_DEVICE!r}: use one of {', '.join(DEVICES)}")
    if TEST_DEVICE == "cuda":
        if not torch.cuda.is_available():
            raise pytest.UsageError("GSDD_TEST_DEVICE=cuda but torch sees no CUDA GPU "
                                    f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                                    "refusing to run the suite on the CPU instead")
        torch.backends.cudnn.benchmark = False
        # warn_only: an op without a deterministic CUDA kernel warns (and a resume test that then
        # differs fails with the warning in its output) instead of raising mid-pipeline
        torch.use_deterministic_algorithms(True, warn_only=True)


def pytest_report_header(config):
    name = torch.cuda.get_device_name(0) if TEST_DEVICE == "cuda" else "cpu"
    return f"gsdd test device: {TEST_DEVICE} ({name}); set GSDD_TEST_DEVICE=cuda for the GPU run"


def pytest_collection_modifyitems(config, items):
    for item in items:
        mark = item.get_closest_marker("cpu_only")
        if mark is None:
            continue
        reason = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "")
        if not reason:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.cpu_only needs reason=...")
        if TEST_DEVICE != "cpu":
            item.add_marker(pytest.mark.skip(reason=f"CPU-only: {reason}"))


def pytest_runtest_logreport(report):
    path = os.environ.get("GSDD_TEST_REPORT")
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return
    row = {"test": report.nodeid, "outcome": report.outcome, "when": report.when,
           "seconds": round(report.duration, 3), "device": TEST_DEVICE}
    if report.skipped and isinstance(report.longrepr, tuple):
        row["reason"] = str(report.longrepr[2])
    elif report.failed:
        row["error"] = str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


@pytest.fixture(scope="session")
def device():
    """The device the pipeline tests run on: GSDD_TEST_DEVICE (default cpu)."""
    return TEST_DEVICE


@pytest.fixture(scope="session")
def backend(device):
    """The renderer for ``device``: the reference on CPU (as before), the native kernels on CUDA."""
    return "reference" if device == "cpu" else "native"


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def make_digits_gsd():
    """Factory: save a random digits .gsd (10 classes × GPC, 12 Gaussians, 1×16×16, IPC 1) and return
    its path; the header records the transform (and its parameters unless ``params=False``)."""
    from gsdd_cli.data import load_dataset, make_transform
    from gsdd_cli.sets.gaussians import GaussianImages
    from gsdd_cli.sets.gsdfile import make_header, save_gsd

    def make(path, *, transform="normalize", params=True, gpc=3, syn_lr=None, algorithm="dm"):
        ds = load_dataset("digits")
        gi = GaussianImages.random(10, gpc, 12, 1, 16, 16, generator=torch.Generator().manual_seed(5))
        extra = {"transform_params": make_transform(ds, transform).describe()} if params else {}
        header = make_header(gi, dataset="digits", class_names=ds.class_names, ipc=1, algorithm=algorithm,
                             transform=transform, syn_lr=syn_lr, **extra)
        return save_gsd(path, gi, header)

    return make
