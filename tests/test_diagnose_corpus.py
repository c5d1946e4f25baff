"""`mmops diagnose` against the corpus of real logs in tests/fixtures/logs/MANIFEST.yaml.

Every entry is a real excerpt (public issue threads, or the real vLLM CPU build) with its
expected verdict and root cause. The test prints the confusion of expected vs found and fails
below 95 % right root causes, or when any requested stop is called a crash.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from mmops.diagnose.scan import diagnose

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
MANIFEST = LOGS / "MANIFEST.yaml"
MIN_CAUSE_ACCURACY = 0.95


def _entries() -> list[dict]:
    if not MANIFEST.exists():
        pytest.skip("tests/fixtures/logs/MANIFEST.yaml does not exist yet")
    entries = yaml.safe_load(MANIFEST.read_text(encoding="utf-8")) or []
    if not entries:
        pytest.skip("MANIFEST.yaml has no entries yet")
    return entries


def test_corpus_root_causes_and_verdicts():
    rows = []
    for e in _entries():
        inc = diagnose([str(LOGS / e["file"])])
        found_cause = inc.findings[0].id if inc.findings else None
        rows.append((e, inc.verdict, found_cause))

    right_cause = sum(1 for e, _, c in rows if c == e["expected_cause"])
    right_verdict = sum(1 for e, v, _ in rows if v == e["expected_verdict"])
    stop_as_crash = [
        e["file"] for e, v, _ in rows if e["expected_verdict"] == "requested-stop" and v == "crash"
    ]

    verdicts = Counter((e["expected_verdict"], v) for e, v, _ in rows)
    print(f"\n{len(rows)} logs: {right_cause} right causes, {right_verdict} right verdicts")
    print("verdict confusion (expected -> found: count):")
    for (exp, got), n in sorted(verdicts.items()):
        print(f"  {exp:15} -> {got:15} {n}")
    print("misses (file: expected verdict/cause -> found):")
    for e, v, c in rows:
        if c != e["expected_cause"] or v != e["expected_verdict"]:
            print(f"  {e['file']}: {e['expected_verdict']}/{e['expected_cause']} -> {v}/{c}")

    assert not stop_as_crash, f"requested stops called a crash: {stop_as_crash}"
    assert right_cause / len(rows) >= MIN_CAUSE_ACCURACY, (
        f"{right_cause}/{len(rows)} right root causes, below {MIN_CAUSE_ACCURACY:.0%}"
    )


def test_corpus_entries_are_well_formed():
    valid = {"crash", "started", "requested-stop", "running-errors", "unknown"}
    for e in _entries():
        assert (LOGS / e["file"]).is_file(), e["file"]
        assert e["expected_verdict"] in valid, e
        assert e.get("source"), e["file"]
