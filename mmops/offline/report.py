"""The report of one offline run: each output with its prompt, text, token counts and finish
reason; the time of each stage and the throughput. One dict (``--json`` prints it as it is) and
its text form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGE_NAMES = (
    ("engine_start_s", "engine start"),
    ("preprocess_s", "preprocessing"),
    ("generate_s", "generation"),
)


def build(
    result: dict[str, Any],
    *,
    model: str,
    model_type: str,
    modality: str,
    python: str,
    engine: dict[str, Any],
    sampling: dict[str, Any],
    run_dir: Path,
    log: Path,
    preflight: str,
    wall_s: float,
    notes: list[str],
) -> dict[str, Any]:
    """The whole report as one JSON-ready dict."""
    outputs = list(result.get("outputs") or [])
    prompt_tokens = sum(int(o.get("prompt_tokens") or 0) for o in outputs)
    output_tokens = sum(int(o.get("output_tokens") or 0) for o in outputs)
    timings = dict(result.get("timings") or {})
    timings["total_s"] = round(wall_s, 3)
    gen = float(timings.get("generate_s") or 0.0)
    throughput = {
        "requests": len(outputs),
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "output_tokens_per_s": round(output_tokens / gen, 2) if gen > 0 else None,
        "total_tokens_per_s": round((prompt_tokens + output_tokens) / gen, 2) if gen > 0 else None,
        "requests_per_s": round(len(outputs) / gen, 3) if gen > 0 else None,
    }
    return {
        "ok": True,
        "model": model,
        "model_type": model_type,
        "modality": modality,
        "python": python,
        "vllm_version": result.get("vllm_version"),
        "engine_args": engine,
        "sampling": {**sampling, "stop_token_ids": result.get("stop_token_ids")},
        "outputs": outputs,
        "timings": timings,
        "throughput": throughput,
        "frames": result.get("frames") or [],
        "preflight": preflight,
        "run_dir": str(run_dir),
        "log": str(log),
        "notes": [*notes, *(result.get("notes") or [])],
    }


def render(report: dict[str, Any]) -> str:
    """The text form: a header, one block per output, then timings and throughput."""
    outs = report["outputs"]
    lines = [
        f"mmops offline: {report['model_type']} on {report['model']} "
        f"({report['modality']}, {len(outs)} prompt{'s' if len(outs) != 1 else ''})",
        f"  vLLM {report.get('vllm_version') or '?'} via {report['python']}",
    ]
    for frames in report.get("frames") or []:
        lines.append(
            f"  video {Path(frames['path']).name}: frames {frames['indices']} of "
            f"{frames['total_frames']}"
        )
    stops = report["sampling"].get("stop_token_ids")
    if stops:
        lines.append(f"  stop_token_ids: {stops}")
    for o in outs:
        lines.append("")
        lines.append(f"[{o['index'] + 1}] {Path(str(o['media'])).name}: {o['question']}")
        lines.append(f"    prompt: {json.dumps(o['prompt'], ensure_ascii=False)}")
        lines.append(f"    output: {json.dumps(o['text'], ensure_ascii=False)}")
        lines.append(
            f"    tokens: {o['prompt_tokens']} prompt, {o['output_tokens']} output; "
            f"finish: {o['finish_reason']}"
        )
    t = report["timings"]
    stages = ", ".join(f"{name} {t[key]:.2f} s" for key, name in STAGE_NAMES if key in t)
    if "import_s" in t:
        stages += f" (of the engine start, import vllm {t['import_s']:.2f} s)"
    tp = report["throughput"]
    lines.append("")
    lines.append(f"timings: {stages}; total {t['total_s']:.2f} s")
    if tp["output_tokens_per_s"] is not None:
        lines.append(
            f"throughput: {tp['output_tokens']} output tokens in {t['generate_s']:.2f} s = "
            f"{tp['output_tokens_per_s']:.1f} tokens/s; prompt + output "
            f"{tp['total_tokens_per_s']:.1f} tokens/s; {tp['requests_per_s']:.2f} requests/s"
        )
    for note in report["notes"]:
        lines.append(f"note: {note}")
    lines.append(f"record: {report['run_dir']}")
    return "\n".join(lines)
