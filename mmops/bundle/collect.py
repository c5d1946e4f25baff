"""Gathering a bundle: a run folder's records and the machine's facts, every byte redacted.

Secrets are masked once, here, on the way in: the values of secret-named variables and flags
found anywhere (this process's environment, plan.json, the events' argv and env) are handed to
one ``redact.Redactor``, which also masks secret shapes (bearer tokens, hf_/sk- keys, URL
credentials). JSON files go through ``redact.mask_json``, text through ``Redactor.chunk``;
nothing enters the bundle another way.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmops import redact
from mmops.bundle import summary, versions
from mmops.bundle.manifest import MANIFEST, Bundle, human_size, render_manifest
from mmops.launch.plan import default_python
from mmops.platform import ascend, software
from mmops.platform.runner import CommandResult, CommandRunner, system_runner
from mmops.serve import runs
from mmops.serve.replay import RunReplay

DEFAULT_LINES = 500
COMMAND_TIMEOUT_S = 10.0
# Environment variables that bear on a vLLM launch: the families vllm and vllm-ascend's
# collect_env report, and the runtimes' own (HCCL/NCCL, CUDA, Hugging Face).
ENV_PREFIXES = (
    "VLLM_",
    "ASCEND_",
    "PYTORCH_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "ATB_",
    "HCCL_",
    "LCCL_",
    "NCCL_",
    "CUDA_",
    "NVIDIA_",
    "HF_",
    "HUGGING_FACE_",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "OMP_",
    "MMOPS_",
)
ENV_NAMES = (
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "TASK_QUEUE_ENABLE",
    "CPU_AFFINITY_CONF",
    "XDG_STATE_HOME",
)
DEVICE_COMMANDS = (tuple(ascend.NPU_SMI_INFO), ("nvidia-smi",))
MAX_TAIL_BYTES = 32 * 1024 * 1024  # of one attempt log, whatever --lines says
_COUNT_LIMIT = 256 * 1024 * 1024  # left-out lines are counted up to this many bytes
_BLOCK = 1 << 16


class _Once:
    """A command runner that runs each command once: devices.txt, versions and the doctor all
    ask for ``npu-smi info``."""

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner
        self.results: dict[tuple[str, ...], CommandResult] = {}

    def __call__(self, argv: list[str], timeout: float) -> CommandResult:
        key = tuple(argv)
        if key not in self.results:
            self.results[key] = self.runner(list(argv), timeout)
        return self.results[key]


@dataclass
class _RunFiles:
    """What a run folder holds, read once, raw (masking comes after every secret is known)."""

    path: Path
    plan: Any = None
    preflight: Any = None
    events: list[str] | None = None  # lines of events.jsonl

    @classmethod
    def read(cls, path: Path, bundle: Bundle) -> _RunFiles:
        files = cls(path)
        files.plan = _read_json(path / "plan.json", bundle, "the run never planned a launch")
        files.preflight = _read_json(path / "preflight.json", bundle, "no preflight was recorded")
        try:
            text = (path / "events.jsonl").read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            bundle.leave_out("events.jsonl", _why(exc))
        else:
            files.events = text.splitlines()
        return files

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.events or []:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out


class _Put:
    """Adds members through the one redactor: no member skips it."""

    def __init__(self, bundle: Bundle, redactor: redact.Redactor) -> None:
        self.bundle = bundle
        self.redactor = redactor

    def text(self, name: str, text: str, note: str = "") -> None:
        self.raw(name, text.encode("utf-8", "surrogateescape"), note)

    def raw(self, name: str, data: bytes, note: str = "") -> None:
        self.bundle.add(name, self.redactor.chunk(data), note)

    def json(self, name: str, value: object, note: str = "") -> None:
        masked = redact.mask_json(value, self.redactor)
        self.bundle.add(name, (json.dumps(masked, indent=2, default=str) + "\n").encode(), note)


def collect(
    run: Path | None,
    *,
    lines: int = DEFAULT_LINES,
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
    runner: CommandRunner = system_runner,
    ascend_root: Path = software.DEFAULT_ASCEND_ROOT,
    now: float | None = None,
) -> Bundle:
    """Everything a bundle holds, redacted. ``run``: a run folder, or None for the machine's
    facts only (``root``: where runs were looked for, for the summary); ``lines``: how many
    of the last lines of each attempt log; ``env``, ``runner``, ``ascend_root``: this
    process's environment, the device tools and the Ascend install (tests pass their own)."""
    if lines < 1:
        raise ValueError("lines must be at least 1")
    env = dict(os.environ if env is None else env)
    created = time.time() if now is None else now
    bundle = Bundle(f"mmops-bundle-{run.name if run else runs.utc_stamp(created)}", created, run)
    files = _RunFiles.read(run, bundle) if run is not None else None
    put = _Put(bundle, redact.Redactor(_secret_values(env, files)))
    once = _Once(runner)

    results = _devices(put, once)
    python = _run_python(files)
    versions_line = _versions(put, once, results, env, python, ascend_root)
    doctor_line = _doctor(put, files, once, env, python)
    put.text("env.txt", _env_text(env), "this process's environment, filtered and redacted")

    replay = diagnosis = None
    if files is not None:
        _run_members(put, files, lines)
        replay = RunReplay(files.path)
        diagnosis = summary.diagnose_attempt(replay)
    else:
        bundle.leave_out("run", f"no `mmops serve` run folder{f' under {root}' if root else ''}")

    facts = summary.Facts(
        name=bundle.name,
        created=created,
        versions=versions_line,
        devices=_devices_line(results),
        doctor=doctor_line,
        files=len(bundle.members) + 2,  # and summary.md, MANIFEST.txt
        left_out=len(bundle.left_out),
        root=root,
    )
    put.text("summary.md", summary.render_summary(facts, replay, diagnosis), "start here")
    put.text(MANIFEST, render_manifest(bundle))
    return bundle


# ----------------------------------------------------------------------------- the run


def _run_members(put: _Put, files: _RunFiles, lines: int) -> None:
    bundle = put.bundle
    if files.plan is not None:
        put.json("plan.json", files.plan, "the launch: argv, env delta, allocator (run folder)")
    probe = _read_json(files.path / "probe.json", bundle, "")  # only a smoke run has one
    if probe is not None:
        put.json("probe.json", probe, "the sample-request suite's result (run folder)")
    if files.events is not None:
        put.text(
            "events.jsonl", _events_text(files.events, put.redactor), "the supervisor's record"
        )
    numbers = runs.attempts(files.path)
    if not numbers:
        bundle.leave_out("attempt logs", "none in the run folder (no attempt was started)")
    for n in numbers:
        _attempt_log(put, files.path / f"attempt-{n}.log", lines)
    bundled = {"plan.json", "preflight.json", "events.jsonl", "probe.json"}
    for p in sorted(files.path.iterdir()):
        attempt_log = p.name.startswith("attempt-") and p.name.endswith(".log")
        if p.name in bundled or attempt_log or p.name.startswith("."):
            continue
        why = "an earlier bundle" if p.name.endswith(".tar.gz") else "not part of a bundle"
        bundle.leave_out(p.name, why)


def _events_text(lines: list[str], redactor: redact.Redactor) -> str:
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            out.append(redactor.line(line))  # a torn last line, kept as it is (masked)
            continue
        masked = redact.mask_json(rec, redactor)
        out.append(json.dumps(masked, separators=(",", ":"), default=str))
    return "\n".join(out) + ("\n" if out else "")


def _attempt_log(put: _Put, path: Path, lines: int) -> None:
    try:
        tail = read_tail(path, lines)
    except OSError as exc:
        put.bundle.leave_out(path.name, _why(exc))
        return
    kept = tail.data.count(b"\n") + (0 if tail.data.endswith(b"\n") or not tail.data else 1)
    if tail.start == 0:
        put.raw(path.name, tail.data, f"whole log, {kept:,} lines")
        return
    cut_by = "its size" if tail.capped else f"--lines {lines}"
    earlier = (
        f"{tail.earlier_lines:,} earlier lines"
        if tail.earlier_lines is not None
        else ("the earlier lines")
    )
    put.raw(path.name, tail.data, f"last {kept:,} lines ({cut_by})")
    put.bundle.leave_out(
        path.name,
        f"cut to its last {kept:,} lines ({cut_by}): {earlier} ({human_size(tail.start)}) left "
        "out; the run folder has the whole log",
    )


@dataclass(frozen=True)
class Tail:
    """The end of a file: ``data`` starts at byte ``start`` on a line boundary."""

    data: bytes
    start: int
    size: int
    capped: bool  # cut by MAX_TAIL_BYTES before reaching the lines asked for
    earlier_lines: int | None  # lines before ``start`` (None: too many bytes to count)


def read_tail(path: Path, lines: int, max_bytes: int = MAX_TAIL_BYTES) -> Tail:
    """The last ``lines`` lines of a file (a last line without its newline counts), read
    backwards in blocks: a flood of gigabytes costs what its tail costs."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        need = lines
        if size:
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                need += 1  # a final newline ends the last line; it does not start another
        blocks: list[bytes] = []  # newest first
        pos, found = size, 0
        start: int | None = None
        capped = False
        while pos > 0 and start is None:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            blocks.append(block)
            i = len(block)
            while (i := block.rfind(b"\n", 0, i)) >= 0:
                found += 1
                if found == need:
                    start = pos + i + 1
                    break
            if start is None and size - pos >= max_bytes:
                # Too long before the lines asked for: keep max_bytes, from a line start.
                edge = size - max_bytes
                start = edge
                if edge > 0:
                    fh.seek(edge - 1)
                    cut = fh.read(_BLOCK).find(b"\n")  # the newline that ends the cut line
                    start = edge + cut if cut >= 0 else edge
                capped = True
        data = b"".join(reversed(blocks))[(start or 0) - pos :]
        start = start or 0
        earlier: int | None = None
        if start <= _COUNT_LIMIT:
            fh.seek(0)
            earlier, left = 0, start
            while left > 0:
                chunk = fh.read(min(1 << 20, left))
                if not chunk:
                    break
                earlier += chunk.count(b"\n")
                left -= len(chunk)
    return Tail(data, start, size, capped, earlier)


# ----------------------------------------------------------------------------- the machine


def _devices(put: _Put, once: _Once) -> list[CommandResult]:
    results = []
    parts = []
    for argv in DEVICE_COMMANDS:
        res = once(list(argv), COMMAND_TIMEOUT_S)
        results.append(res)
        command = " ".join(argv)
        parts.append(f"$ {command}")
        if res.error == "not found":
            parts.append("not found")
            put.bundle.leave_out(command, "command not found")
        else:
            parts.append(res.output.rstrip("\n") or "(no output)")
            status = res.error or f"exit {res.returncode}"
            parts.append(f"({status})")
            if not res.ok:
                put.bundle.leave_out(
                    f"{command} output", f"the command failed ({status}): shown as is"
                )
        parts.append("")
    put.text("devices.txt", "\n".join(parts), "raw output of the device tools")
    return results


def _devices_line(results: list[CommandResult]) -> str:
    npu, nvidia = results
    if npu.ok:
        info = ascend.parse_npu_smi_info(npu.stdout)
        names = ", ".join(sorted({c.name for c in info.chips})) or "no chip rows"
        return f"npu-smi lists {len(info.chips)} chip(s) ({names})"
    if nvidia.ok:
        gpus = [line for line in nvidia.stdout.splitlines() if "NVIDIA" in line and "|" in line]
        return f"nvidia-smi answers ({len(gpus)} GPU row(s))"
    return "neither npu-smi nor nvidia-smi answered"


def _versions(
    put: _Put,
    once: _Once,
    results: list[CommandResult],
    env: Mapping[str, str],
    python: str | None,
    ascend_root: Path,
) -> str:
    stack = software.software_stack(env=env, python=python, ascend_root=ascend_root)
    npu, nvidia = results
    query = once(list(versions.NVIDIA_VERSIONS), COMMAND_TIMEOUT_S) if nvidia.ok else None
    report = versions.versions_report(
        stack, ascend_root=ascend_root, npu_smi=npu, nvidia_smi=nvidia, nvidia_versions=query
    )
    where = f" of {python}" if python else ""
    put.json("versions.json", report, f"package, CANN, driver, firmware versions{where}")
    put.text("versions.txt", versions.render_versions(report), "the same, as collect-env prints it")
    return versions.one_line(report)


def _doctor(
    put: _Put, files: _RunFiles | None, once: _Once, env: Mapping[str, str], python: str | None
) -> str:
    pre = files.preflight if files is not None else None
    if isinstance(pre, dict) and not pre.get("skipped") and isinstance(pre.get("checks"), list):
        put.json("doctor.json", pre, "the run's preflight.json: the doctor on its launch")
        return _doctor_line(pre, "the run's preflight")
    if files is None:
        why = "no run"
    elif isinstance(pre, dict) and pre.get("skipped"):
        why = "the run skipped its preflight (--no-preflight)"
    else:
        why = "the run has no usable preflight.json"
    from mmops.doctor import run_checks
    from mmops.launch.spec import LaunchSpec

    try:
        report = run_checks(
            LaunchSpec(model=None, vllm_python=python),
            only=["device", "software", "env"],
            runner=once,
            env=env,
        ).to_dict()
    except Exception as exc:  # a bundle is written even when a check crashes
        put.bundle.leave_out("doctor.json", f"the doctor's model-free checks failed: {exc!r}")
        return f"could not run ({exc})"
    report["summary"]["source"] = f"mmops bundle, checks that need no model ({why})"
    put.json("doctor.json", report, f"the doctor's checks that need no model ({why})")
    return _doctor_line(report, f"checks that need no model; {why}")


def _doctor_line(report: dict[str, Any], source: str) -> str:
    counts = report.get("summary") or {}
    parts = [f"{counts[k]} {k}" for k in ("fail", "warn", "pass", "skip") if counts.get(k)]
    failed = [
        f"{c.get('id')}: {c.get('summary')}"
        for c in report.get("checks", [])
        if isinstance(c, dict) and c.get("status") == "fail"
    ]
    line = f"{', '.join(parts) or 'no checks'} ({source})"
    return line + (f"; failed: {'; '.join(failed)}" if failed else "")


def _env_text(env: Mapping[str, str]) -> str:
    names = sorted(k for k in env if k.startswith(ENV_PREFIXES) or k in ENV_NAMES)
    masked = redact.mask_env({k: env[k] for k in names})
    head = [
        f"# environment of mmops (pid {os.getpid()}) when it wrote this bundle: names starting "
        f"{', '.join(ENV_PREFIXES)} and {', '.join(ENV_NAMES)}",
        f"# {len(env) - len(names)} other variables left out; secret-named values are "
        f"{redact.MASK}; the server's own additions are in plan.json",
    ]
    return "\n".join([*head, *(f"{k}={masked[k]}" for k in names)]) + "\n"


# ----------------------------------------------------------------------------- helpers


def _secret_values(env: Mapping[str, str], files: _RunFiles | None) -> list[str]:
    """Every secret value mmops can know of: this environment's, the plan's, the events'."""
    found = set(redact.secret_values((), env))
    sources: list[Any] = []
    if files is not None:
        sources = [files.plan, *files.records()]
    for rec in sources:
        if not isinstance(rec, dict):
            continue
        argv = rec.get("argv")
        child_env = rec.get("env")
        found.update(
            redact.secret_values(
                [str(a) for a in argv] if isinstance(argv, list) else (),
                {str(k): str(v) for k, v in child_env.items()}
                if isinstance(child_env, dict)
                else {},
            )
        )
    return sorted(found, key=len, reverse=True)


def _run_python(files: _RunFiles | None) -> str | None:
    """The interpreter the run's server ran on (plan.json), whose packages are the ones that
    matter; with no run, the one a launch would use (the `vllm` script's); None: this one."""
    plan = files.plan if files is not None else None
    python = plan.get("python") if isinstance(plan, dict) else None
    if isinstance(python, str) and python:
        return python
    fallback = default_python()
    return None if fallback == sys.executable else fallback


def _read_json(path: Path, bundle: Bundle, absent: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if absent:
            bundle.leave_out(path.name, f"not in the run folder ({absent})")
        return None
    except OSError as exc:
        bundle.leave_out(path.name, _why(exc))
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        bundle.leave_out(path.name, f"not valid JSON ({exc})")
        return None


def _why(exc: OSError) -> str:
    return f"could not be read ({exc.strerror or exc})"
