import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Every data test gets its own empty data dir (no writes to ~/.cache, no stray downloads)."""
    d = tmp_path / "gsdd-data"
    d.mkdir()
    monkeypatch.setenv("GSDD_DATA_DIR", str(d))
    return d
