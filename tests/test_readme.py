"""The README's test command is the one .ci/run executes."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_cmd = next(b for b in blocks if "pytest" in b)
    assert f"TEST_CMD='{test_cmd}'" in ci


def test_readme_main_job_uses_the_embedded_dataset():
    readme = (ROOT / "README.md").read_text()
    main_job = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)[0]
    assert "gsdd distill digits" in main_job and "gsdd render" in main_job and "gsdd eval" in main_job
