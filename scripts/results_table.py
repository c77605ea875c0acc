#!/usr/bin/env python3
"""Turn the output folder of scripts/gpu_checks.sh into the markdown rows of docs/results.md.

    python3 scripts/results_table.py OUT [OUT ...]      # one folder per call of the device tool is fine

For each phase found (OUT/<phase>.steps.jsonl) it prints the heading of its table in docs/results.md
and one row per run: device, date, commit and command from the phase's first record, then the
figures (quick: steps, kernel tests, render benchmark; suite: passed / failed / skipped per test
file's outcome; accuracy: one row per distilled set with its --vs-random evaluation). A step that
did not finish (its time limit, an error) shows as such; nothing is filled in that was not measured.
Standard library only, so it runs wherever the phase ran.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEADERS = {
    "quick": ("| device | date | commit | command | steps (rc, s) | kernel tests | render fwd+bwd (native) |\n"
              "|---|---|---|---|---|---|---|"),
    "suite": ("| device | date | commit | command | passed | failed | skipped | test seconds | not passed |\n"
              "|---|---|---|---|---|---|---|---|---|"),
    "accuracy": ("| device | date | commit | command | set | iterations (s/it) | distill s | accuracy | "
                 "random real, same bytes | IOR (pp) | eval |\n|---|---|---|---|---|---|---|---|---|---|---|"),
}


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return rows


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def pct(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def runs_of(steps: list[dict]) -> list[tuple[dict, list[dict]]]:
    """Split a steps file (several runs may append to it) into (start record, its steps)."""
    out: list[tuple[dict, list[dict]]] = []
    for row in steps:
        if row.get("event") == "start":
            out.append((row, []))
        elif out and row.get("event") == "step":
            out[-1][1].append(row)
    return out


def lead(start: dict) -> str:
    label = " (CPU smoke)" if start.get("smoke") else ""
    return (f"| {start.get('device', '?')}{label} | {start.get('date', '?')} | {start.get('commit', '?')} | "
            f"`{start.get('command', '?')}` |")


def step_list(steps: list[dict]) -> str:
    return ", ".join(f"{s['step']} {s['rc']}/{s['seconds']}" for s in steps) or "none"


def quick_rows(out: Path, start: dict, steps: list[dict]) -> list[str]:
    log = (out / "quick.log").read_text(errors="replace") if (out / "quick.log").is_file() else ""
    counts = re.findall(r"^=*\s*(\d+ passed[^=\n]*?)\s*=*$", log, flags=re.M) or \
        re.findall(r"^(\d+ passed.*)$", log, flags=re.M)
    tests = counts[0].strip() if counts else "no pytest summary"
    bench = read_json(out / "bench.json") or {}
    cells = []
    for res in bench.get("results", []):
        native = res.get("native", {})
        if "fwd_bwd_ms" in native:
            cells.append(f"{res['setting']} {native['fwd_bwd_ms']:.2f} ms")
        else:
            cells.append(f"{res.get('setting', '?')}: {native.get('skipped') or res.get('check', {}).get('error', 'n/a')}")
    return [f"{lead(start)} {step_list(steps)} | {tests} | {'; '.join(cells) or 'no bench.json'} |"]


def suite_rows(out: Path, start: dict, steps: list[dict]) -> list[str]:
    tests = read_jsonl(out / "suite.jsonl")
    by = {k: [t for t in tests if t["outcome"] == k] for k in ("passed", "failed", "skipped")}
    seconds = sum(t["seconds"] for t in tests)
    bad = [t["test"] + (f" ({t['when']})" if t["when"] != "call" else "") for t in by["failed"]]
    run = next((s for s in steps if s["step"] == "tests"), None)
    if run is not None and run["rc"] in (124, 137):
        bad.append(f"cut at the time limit after {run['seconds']} s")
    return [f"{lead(start)} {len(by['passed'])} | {len(by['failed'])} | {len(by['skipped'])} | {seconds:.0f} | "
            f"{'; '.join(bad) or '—'} |"]


def accuracy_rows(out: Path, start: dict, steps: list[dict]) -> list[str]:
    acc = out / "accuracy"
    plan = {p["run"]: p for p in read_jsonl(acc / "plan.jsonl")}
    rc = {s["step"]: s for s in steps}
    rows = []
    for run in ("dm", "tm"):
        dist, ev = read_json(acc / f"{run}-distill.json"), read_json(acc / f"{run}-eval.json")
        if dist is None:
            why = rc.get(run) or rc.get(f"{run}_probe") or rc.get(f"{run}_init")
            rows.append(f"{lead(start)} {run.upper()} | not finished ({why['step']} rc {why['rc']})" if why else
                        f"{lead(start)} {run.upper()} | not run")
            rows[-1] += " | | | | | | |"
            continue
        p = plan.get(run, {})
        what = f"{run.upper()} IPC {dist['ipc']} {dist['param']} ({dist['dataset']})"
        its = f"{dist['iterations']} ({p['seconds_per_iteration']:.3f})" if p else str(dist["iterations"])
        if ev is None:
            e = rc.get(f"eval_{run}")
            why = f" (rc {e['rc']})" if e else ""
            rows.append(f"{lead(start)} {what} | {its} | {dist['seconds']:.1f} | not finished{why} | | | |")
            continue
        rnd = ev.get("baselines", {}).get("random-real")
        ior = ev.get("metrics", {}).get("ior")
        rnd_cell = pct(rnd["mean"], rnd["std"]) if rnd else "—"
        ior_cell = f"{ior['mean']:+.2f} ± {ior['std']:.2f}" if ior else "—"
        rows.append(f"{lead(start)} {what} | {its} | {dist['seconds']:.1f} | {pct(ev['mean'], ev['std'])} | "
                    f"{rnd_cell} | {ior_cell} | {ev['arch']}, {ev['epochs']} epochs × {ev['runs']} runs |")
    return rows


ROWS = {"quick": quick_rows, "suite": suite_rows, "accuracy": accuracy_rows}


def table(out: Path) -> str:
    parts = []
    for phase, rows_of in ROWS.items():
        runs = runs_of(read_jsonl(out / f"{phase}.steps.jsonl"))
        if not runs:
            continue
        parts.append(f"### {phase}\n\n{HEADERS[phase]}")
        # the files (bench.json, suite.jsonl, accuracy/) hold the last run: rows for that one
        start, steps = runs[-1]
        parts.extend(rows_of(out, start, steps))
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0 if argv else 2
    missing = [a for a in argv if not Path(a).is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    text = "\n".join(table(Path(a)) for a in argv).strip()
    if not text:
        print("error: no <phase>.steps.jsonl in " + ", ".join(argv), file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
