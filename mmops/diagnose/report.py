"""The text report of one diagnosis: what `mmops diagnose` prints and bundles summarise."""

from __future__ import annotations

from mmops.diagnose.scan import Incident
from mmops.term import paint

VERDICT_COLORS = {
    "started": "32",
    "requested-stop": "36",
    "crash": "31",
    "running-errors": "33",
    "incomplete": "33",
    "unknown": "35",
}
SHORT_EVIDENCE = 3  # evidence lines shown for the cause without --all
WIDTH = 160  # evidence text is cut to this many characters without --all


def _cut(text: str, show_all: bool) -> str:
    return text if show_all or len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def _facts_line(facts: dict) -> str:
    parts = []
    if "vllm_version" in facts:
        parts.append(f"vLLM {facts['vllm_version']}")
    if "platform" in facts:
        parts.append(f"platform {facts['platform']}")
    if "model" in facts:
        parts.append(f"model {facts['model']}")
    if "max_model_len" in facts:
        parts.append(f"max-model-len {facts['max_model_len']:,}")
    if facts.get("kv_cache_tokens"):
        parts.append(f"KV cache {facts['kv_cache_tokens']:,} tokens")
    if "max_concurrency" in facts:
        parts.append(f"max concurrency {facts['max_concurrency']:g}x")
    if "startup_seconds" in facts:
        parts.append(f"ready after {facts['startup_seconds']} s")
    phase = facts.get("phase")
    if phase:
        detail = f" ({phase['detail']})" if phase.get("detail") else ""
        parts.append(f"start-up reached: {phase['title']}{detail}")
    return ", ".join(parts)


def render(incident: Incident, show_all: bool = False, color: bool = False) -> str:
    """The human report: verdict line, cause with evidence, meaning and fix, then the rest."""
    facts = incident.facts
    verdict = paint(incident.verdict.upper(), VERDICT_COLORS[incident.verdict] + ";1", color)
    cause = incident.cause
    head = f"{verdict}"
    if cause is not None:
        head += f": {cause.signature.title} [{cause.id}]"
    lines = [head]
    summary = _facts_line(facts)
    if summary:
        lines.append(f"  {summary}")
    files = facts.get("files", [])
    n = facts.get("lines", 0)
    lines.append(f"  read {n:,} line{'' if n == 1 else 's'} from {', '.join(files)}")

    if cause is not None:
        label = "cause" if cause.role == "cause" else "no root cause in the log; first symptom"
        lines.append("")
        lines.append(paint(f"{label}: {cause.signature.title}", "1", color))
        shown = cause.evidence if show_all else cause.evidence[:SHORT_EVIDENCE]
        for ev in shown:
            lines.append(f"  {ev.file}:{ev.line}: {_cut(ev.text, show_all)}")
        if cause.count > len(shown):
            lines.append(f"  ... {cause.count - len(shown)} more matching lines")
        lines.append(f"  meaning: {cause.signature.meaning}")
        lines.append(f"  fix: {cause.fix}")
        if cause.role == "cause":
            auto = cause.auto_remedy or "does not retry (needs a change by hand)"
            lines.append(f"  mmops serve: {auto}")
        if cause.role != "cause" or cause.weak:
            _unknown_lines(lines, facts, show_all)

    rest = incident.findings[1:]
    if rest:
        lines.append("")
        lines.append("then (consequences):" if cause and cause.role == "cause" else "also:")
        for f in rest:
            first = f.evidence[0] if f.evidence else None
            where = f" first at {first.file}:{first.line}" if first else ""
            lines.append(f"  {f.id}: {f.signature.title} ({f.count} lines){where}")
            if show_all:
                for ev in f.evidence:
                    lines.append(f"    {ev.file}:{ev.line}: {ev.text}")

    if "first_failed_request" in facts:
        counts = ", ".join(
            f"{facts[k]} x {k[5:]}" for k in ("http_4xx", "http_5xx") if facts.get(k)
        )
        first = facts["first_failed_request"]
        lines.append("")
        lines.append(f"failed requests: {counts}; first at {first['file']}:{first['line']}:")
        lines.append(f"  {_cut(first['text'], show_all)}")
    if incident.verdict == "incomplete":
        lines.append("")
        lines.append(
            "the log ends during start-up with no error: still loading, or cut (a longer log, or "
            "`mmops tui --attach` on the server, shows where it goes)."
        )
        _open_traceback_line(lines, facts)
    if incident.verdict == "unknown":
        lines.append("")
        lines.append("no known signature matched.")
        _unknown_lines(lines, facts, show_all)
        if "last_exception" not in facts and "open_traceback" in facts:
            _open_traceback_line(lines, facts)
        elif "last_exception" not in facts and "first_error" not in facts:
            lines.append(
                "  no error lines either: the log may be cut before the error, or the process "
                "was killed from outside (check `dmesg` for the OOM killer)."
            )
    elif incident.verdict == "requested-stop" and "stop_requested_at" in facts:
        at = facts["stop_requested_at"]
        lines.append(f"  stop requested at {at['file']}:{at['line']}")
    if show_all and facts.get("last_traceback"):
        lines.append("")
        lines.append("last traceback (tail):")
        for t in facts["last_traceback"]:
            lines.append(f"  {t}")
    return "\n".join(lines)


def _open_traceback_line(lines: list[str], facts: dict) -> None:
    opened = facts.get("open_traceback")
    if opened:
        lines.append(
            f"  a traceback starts at {opened['file']}:{opened['line']} and the log ends before "
            "its exception line: the error is in the part that was cut off (ask for the whole "
            "log, or `mmops logs --errors` on the run)."
        )


def _unknown_lines(lines: list[str], facts: dict, show_all: bool) -> None:
    exc = facts.get("last_exception")
    err = facts.get("first_error")
    if exc:
        lines.append(
            f"  last exception: {exc['file']}:{exc['line']}: {_cut(exc['text'], show_all)}"
        )
    if err and err != exc:
        lines.append(
            f"  first error line: {err['file']}:{err['line']}: {_cut(err['text'], show_all)}"
        )
