"""summary.md: one page for whoever takes the escalation: how the run ended, the signatures
it matched, the remedies mmops tried, and `mmops diagnose` on the last failed attempt."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from mmops import __version__
from mmops.errors import MmopsError
from mmops.serve.events import StateChanged, iso_time
from mmops.serve.replay import RunReplay
from mmops.serve.states import TERMINAL, State

EVIDENCE_CHARS = 240
_FAILED_STATES = (State.BACKOFF, State.FAILED)


@dataclass(frozen=True)
class Diagnosis:
    """`mmops diagnose` on one attempt log: its text report, or why there is none."""

    attempt: int
    failed: bool  # the supervisor saw this attempt fail (else: the last attempt, diagnosed anyway)
    text: str
    verdict: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the page says beside the run's own story (each from its own file of the bundle)."""

    name: str
    created: float
    versions: str
    devices: str
    doctor: str
    files: int
    left_out: int
    root: Path | None = None  # where runs were looked for, when there was none


def diagnose_attempt(replay: RunReplay) -> Diagnosis | None:
    """Diagnose the last attempt that failed (the last attempt when none did); None when the
    run has no attempt log at all (a preflight refusal starts nothing)."""
    logs = replay.attempts()
    failed = sorted(
        {e.attempt for e in replay.transitions if e.state in _FAILED_STATES and e.attempt >= 1}
    )
    chosen = [a for a in failed if a in logs]
    if chosen:
        attempt, was_failed = chosen[-1], True
    elif logs:
        attempt, was_failed = logs[-1], False
    else:
        return None
    from mmops.diagnose.report import render  # the report `mmops diagnose` prints
    from mmops.diagnose.scan import diagnose

    path = replay.path / f"attempt-{attempt}.log"
    try:
        incident = diagnose([str(path)])
    except MmopsError as exc:  # an empty log: nothing to explain
        return Diagnosis(attempt, was_failed, f"nothing to diagnose: {exc}")
    return Diagnosis(attempt, was_failed, render(incident, color=False), incident.verdict)


def render_summary(facts: Facts, replay: RunReplay | None, diagnosis: Diagnosis | None) -> str:
    """The page, in Markdown."""
    out = [
        f"# {facts.name}",
        "",
        f"Written {iso_time(facts.created)} by mmops {__version__} on `{platform.node()}`.",
        "",
        "## Run",
    ]
    if replay is None:
        where = f" under `{facts.root}`" if facts.root else ""
        out.append(
            f"No run: no `mmops serve` run folder{where}. This bundle holds the machine's facts "
            "only: versions, devices, environment and the doctor's checks that need no model."
        )
    else:
        out += _run_lines(replay)
        out += ["", "## Signatures matched"]
        out += _signature_lines(replay) or ["none recorded by the supervisor"]
        out += ["", "## Remedies tried"]
        out += _remedy_lines(replay) or ["none"]
        out += ["", "## Diagnosis"]
        if diagnosis is None:
            out.append("no attempt log to diagnose (no attempt was started)")
        else:
            which = "last failed attempt" if diagnosis.failed else "last attempt (it did not fail)"
            out.append(f"`mmops diagnose` on attempt-{diagnosis.attempt}.log, the {which}:")
            out += ["", "```text", diagnosis.text.replace("```", "'''"), "```"]
    out += [
        "",
        "## Machine",
        f"- versions: {facts.versions} (versions.txt)",
        f"- devices: {facts.devices} (devices.txt)",
        f"- doctor: {facts.doctor} (doctor.json)",
        "",
        "## In this bundle",
        f"{facts.files} files; {facts.left_out} thing{'s' if facts.left_out != 1 else ''} left out "
        "(MANIFEST.txt says what and why). Secrets are masked as ***.",
    ]
    return "\n".join(out) + "\n"


def _run_lines(replay: RunReplay) -> list[str]:
    st = replay.snapshot()
    out = [f"- folder: `{replay.path}`"]
    if not replay.history:
        return [*out, "- no events recorded (events.jsonl is missing or empty)"]
    state = st.state.value
    if st.state not in TERMINAL:
        state += " (still running)" if replay.owner_alive() else " (mmops gone: killed?)"
    of = f" of {st.max_attempts}" if st.max_attempts else ""
    when = f"at attempt {st.attempt}{of}" if st.attempt else "before any attempt"
    out.append(f"- verdict: **{state}** {when}: {st.reason}")
    if st.fix and st.state == State.FAILED:
        out.append(f"- fix: {st.fix}")
    first = replay.transitions[0] if replay.transitions else None
    if first is not None:
        out.append(f"- started {iso_time(first.time)}; last event {iso_time(st.last_time or 0)}")
    if st.model:
        out.append(f"- served: {st.model} at {st.url}")
    elif st.url:
        out.append(f"- url: {st.url}")
    if st.startup_s is not None:
        out.append(f"- last start-up to READY: {st.startup_s:.1f} s")
    launch = _last_argv(replay.transitions)
    if launch:
        out.append(f"- launch: `{_code(launch)}`")
    return out


def _last_argv(transitions: list[StateChanged]) -> str | None:
    for ev in reversed(transitions):
        argv = ev.fields.get("argv")
        if ev.state == State.STARTING and isinstance(argv, list):
            return " ".join(str(a) for a in argv)
    return None


def _signature_lines(replay: RunReplay) -> list[str]:
    out = []
    for ev in replay.transitions:
        cause = ev.cause
        if cause is None:
            continue
        where = f" line {cause.line_no}" if cause.line_no else ""
        out.append(f"- attempt {ev.attempt} ({ev.state.value}): `{cause.id}` {cause.title}")
        if cause.line:
            out.append(f"  -{where}: `{_code(cause.line)}`")
    return out


def _remedy_lines(replay: RunReplay) -> list[str]:
    out = []
    for ev in replay.transitions:
        change = ev.change
        if change is not None:
            out.append(
                f"- after attempt {ev.attempt} (`{change.signature}`): `{_code(change.change)}`"
            )
        by_hand = ev.fields.get("launch_change")
        if by_hand:
            out.append(f"- changed by hand before attempt {ev.attempt + 1}: {by_hand}")
        for fix in ev.fixed_by if ev.state == State.READY else []:
            out.append(f"- READY at attempt {ev.attempt} with `{_code(fix.change)}`")
    return out


def _code(text: str) -> str:
    """Text for a Markdown code span: one line, no backticks, not endless."""
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 1] + "…"
