"""Generalisation check: `mmops diagnose` on real logs that were NOT used to write the rules.

tests/fixtures/logs/HELDOUT.yaml and DEV2.yaml list verbatim excerpts from public threads that are
neither in MANIFEST.yaml nor cited in the research notes. They were split by a fixed rule before
any of them was run through mmops: sha256(source URL), first hex digit 0-5 -> held-out, else dev.
Tune rules against the dev part only; the held-out part measures generalisation.

The test prints, held-out first: right root causes, right verdicts, the verdict confusion matrix and
the misses. It fails when a deliberate stop is called a crash, or when the right-cause figures drop
below the floors measured when the corpus was collected.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from mmops.diagnose.scan import VERDICTS as ALL_VERDICTS
from mmops.diagnose.scan import diagnose
from mmops.diagnose.table import load_signatures

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
# (name, manifest, part): RAY.yaml holds both parts of the Ray corpus, told apart by `part:`.
PARTS = (
    ("held-out", LOGS / "HELDOUT.yaml", None),
    ("ray held-out", LOGS / "RAY.yaml", "heldout"),
    ("dev2", LOGS / "DEV2.yaml", None),
    ("ray dev", LOGS / "RAY.yaml", "dev"),
)
# Batch 3 (numbers 401+ in heldout/ and dev2/, and the Ray corpus) was collected on 2026-12-04
# and measured before any rule was written from its dev part: held-out batch 3 7/14 right causes,
# Ray held-out 7/13 (after the Ray rules, written from the Ray dev part only).
VERDICTS = set(ALL_VERDICTS)

# Regression floors: right root causes, measured 2026-12-04 after the second batch (held-out 32
# logs, dev2 46). They may only go up. The target is 95 % on both parts; the held-out figure is
# the one that counts. (First batch alone, the day it was collected: 12/14 and 15/20.)
TARGET_CAUSE_ACCURACY = 0.95
HELDOUT_RIGHT_CAUSES_FLOOR = 33  # out of 46 (batches 1-2: 26/32, batch 3: 7/14), 2026-12-04
DEV2_RIGHT_CAUSES_FLOOR = 56  # out of 58 (batches 1-2: 44/46, batch 3: 12/12), 2026-12-04
RAY_HELDOUT_RIGHT_CAUSES_FLOOR = 7  # out of 13, 2026-12-04
RAY_DEV_RIGHT_CAUSES_FLOOR = 14  # out of 17, 2026-12-04
# Deliberate stops called a crash on 2026-12-04: 0 of 7 (so no xfail on that assertion).


def _entries(manifest: Path, part: str | None = None) -> list[dict]:
    if not manifest.exists():
        pytest.skip(f"{manifest.name} does not exist")
    entries = yaml.safe_load(manifest.read_text(encoding="utf-8")) or []
    return [e for e in entries if part is None or e.get("part") == part]


def _run(manifest: Path, part: str | None) -> list[tuple[dict, str, str | None]]:
    rows = []
    for e in _entries(manifest, part):
        inc = diagnose([str(LOGS / e["file"])])
        first = inc.findings[0] if inc.findings else None
        found = first.id if first is not None else None
        if first is not None and first.role == "consequence" and e["expected_cause"] is None:
            # Leading with a consequence ("the engine died") names no root cause: right where
            # the label says the cause cannot be named from the log.
            found = None
        rows.append((e, inc.verdict, found))
    return rows


def _report(name: str, rows: list[tuple[dict, str, str | None]]) -> int:
    n = len(rows)
    right_cause = sum(1 for e, _, c in rows if c == e["expected_cause"])
    right_verdict = sum(1 for e, v, _ in rows if v == e["expected_verdict"])
    print(f"\n== {name}: {n} logs: {right_cause}/{n} right root causes ({right_cause / n:.0%}), "
          f"{right_verdict}/{n} right verdicts ({right_verdict / n:.0%})")
    print("verdict confusion (expected -> found: count):")
    for (exp, got), k in sorted(Counter((e["expected_verdict"], v) for e, v, _ in rows).items()):
        print(f"  {exp:15} -> {got:15} {k}")
    print("misses (file: expected verdict/cause -> found):")
    for e, v, c in rows:
        if c != e["expected_cause"] or v != e["expected_verdict"]:
            print(f"  {e['file']}: {e['expected_verdict']}/{e['expected_cause']} -> {v}/{c}")
    return right_cause


def _stops_called_crash(rows) -> list[str]:
    return [e["file"] for e, v, _ in rows if e["expected_verdict"] == "requested-stop" and v == "crash"]


@pytest.fixture(scope="module")
def results() -> dict[str, list]:
    return {name: _run(manifest, part) for name, manifest, part in PARTS}


def test_heldout_and_dev_figures(results):
    right = {name: _report(name, results[name]) for name, _, _ in PARTS}  # held-out first
    assert right["held-out"] >= HELDOUT_RIGHT_CAUSES_FLOOR, right
    assert right["ray held-out"] >= RAY_HELDOUT_RIGHT_CAUSES_FLOOR, right
    assert right["dev2"] >= DEV2_RIGHT_CAUSES_FLOOR, right
    assert right["ray dev"] >= RAY_DEV_RIGHT_CAUSES_FLOOR, right


def test_no_deliberate_stop_called_crash(results):
    bad = [f for name, _, _ in PARTS for f in _stops_called_crash(results[name])]
    assert not bad, f"deliberate stops called a crash: {bad}"


def test_entries_are_well_formed():
    ids = {s.id for s in load_signatures()}
    for _, manifest, part in PARTS:
        for e in _entries(manifest, part):
            assert (LOGS / e["file"]).is_file(), e["file"]
            assert e["expected_verdict"] in VERDICTS, e
            assert e.get("source"), e["file"]
            if e["expected_cause"] is not None:
                assert e["expected_cause"] in ids, (e["file"], e["expected_cause"])
            else:
                assert e["expected_verdict"] in {"started", "requested-stop"} or e.get(
                    "expected_cause_note"
                ), e["file"]
