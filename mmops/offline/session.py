"""One offline run from flags to report: inputs checked, preflight, vLLM found, child run, result.

The steps `mmops offline` takes, in order, each stopping the run with one line on what to fix:
model type and inputs (mmops.offline.models / inputs), the doctor's preflight (the code path
`serve` uses), the vLLM of the launch's interpreter (read from its package metadata, nothing
imported), then the child program under the reaper (mmops.offline.runner).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mmops import redact
from mmops.errors import MmopsError, RecordError, UsageError
from mmops.launch import flags as vllm_flags
from mmops.launch.spec import LaunchSpec
from mmops.offline import inputs as offline_inputs
from mmops.offline import models, report
from mmops.offline.job import Job, offline_preflight, sampling_params, with_model_defaults
from mmops.offline.runner import Outcome, offline_root, run_child, write_job
from mmops.serve.runs import Run, record_error

EXIT_FAILED = 1
INSTALL_HINT = (
    "pip install vllm (on Ascend: pip install 'mmops[ascend]', i.e. vllm, vllm-ascend and "
    "torch-npu), or point --python / vllm_python: at the interpreter of the venv or image "
    "that has it"
)


class NoVllm(MmopsError):
    """The launch's interpreter has no vLLM."""


@dataclass(frozen=True)
class Options:
    """What the offline flags ask for, beyond the launch (model, profile, vLLM flags)."""

    model_type: str | None = None
    images: list[str] = field(default_factory=list)
    video: str | None = None
    questions: list[str] = field(default_factory=list)
    modality: str | None = None
    num_prompts: int = 4
    num_frames: int = 16
    different_prompts: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)  # given SamplingParams flags
    no_preflight: bool = False
    state_dir: str | None = None
    stop_timeout_s: float = 10.0


@dataclass
class Finished:
    """How the run ended: exit code, and the report (success) or the failure and its diagnosis."""

    exit_code: int
    report: dict[str, Any] | None = None
    failure: str | None = None
    diagnosis: Any = None  # mmops.diagnose.scan.Incident of the child's log
    run_dir: str | None = None
    log: str | None = None
    stopped_by: str | None = None  # the signal's name, when one stopped the run

    def to_json(self) -> dict[str, Any]:
        """A run that ended without a report, as `--json` prints it and result.json keeps it."""
        out: dict[str, Any] = {"ok": False, "error": self.failure, "exit_code": self.exit_code}
        if self.stopped_by:
            out["stopped_by"] = self.stopped_by
        out.update(run_dir=self.run_dir, log=self.log)
        if self.diagnosis is not None:
            out["diagnosis"] = self.diagnosis.to_json()
        return out


def prepare(spec: LaunchSpec, opts: Options) -> Job:
    """The job: model type (given or read from config.json), inputs, sampling; UsageError if
    anything given cannot be used."""
    mtype, notes = models.resolve(opts.model_type, spec.model)
    inputs = offline_inputs.gather(
        opts.modality,
        opts.images,
        opts.video,
        opts.questions,
        opts.num_prompts,
        opts.num_frames,
        opts.different_prompts,
        supported=mtype.modalities,
        model_type=mtype.name,
    )
    return Job(
        spec=with_model_defaults(spec, mtype),
        model_type=mtype,
        inputs=inputs,
        num_frames=opts.num_frames,
        sampling=sampling_params(opts.sampling),
        notes=notes,
    )


def run(
    job: Job,
    opts: Options,
    note: Callable[[str], None],
    on_line: Callable[[str], None] | None = None,
) -> Finished:
    """Preflight, find vLLM, run the child, and read how it went."""
    from mmops.launch.plan import default_python, installed_vllm

    spec, pre = offline_preflight(job.spec, opts.no_preflight)
    if pre.failed:
        note("preflight failed; not starting:")
        for line in pre.failures():
            note(line)
        note("run `mmops doctor` for every check, or pass --no-preflight to run anyway")
        return Finished(2, failure="preflight failed")
    job = replace(job, spec=spec)
    python = spec.vllm_python or default_python()
    found = installed_vllm(python)
    if found is None:
        raise NoVllm(f"vLLM is not installed for {python}: {INSTALL_HINT}")
    note(f"preflight: {pre.summary()}")
    note(f"vLLM {found.version} ({found.dist}) via {python}")

    run_dir = Run.create(offline_root(opts.state_dir), f"offline-{spec.name}")
    child_job = job.to_child()
    try:
        run_dir.write_json("preflight.json", pre.to_dict())
        job_path = write_job(run_dir, child_job)
    except RecordError:  # a full disk: no empty run folder left behind either
        run_dir.discard_if_empty()
        raise
    log = run_dir.attempt_log(1)
    note(f"run folder: {run_dir.path} (the child's log: {log.name})")
    env = spec.child_env(os.environ)
    # The launch's secret flags too (an hf-token in a profile): the child's log and the report
    # mask them as serve's records do.
    secrets = redact.secret_values(vllm_flags.to_argv(spec.args), env)
    stages = {
        "preprocess": "loading the media and building the prompts",
        "engine": "starting the engine (import vllm, load the weights)",
        "generate": f"generating {len(job.inputs.requests)} output(s)",
    }
    last = [time.monotonic()]

    def on_stage(name: str) -> None:
        now = time.monotonic()
        note(f"{stages.get(name, name)} (+{now - last[0]:.1f} s)")
        last[0] = now

    try:
        outcome = run_child(
            python,
            job_path,
            env,
            log,
            secrets,
            on_stage=on_stage,
            on_line=on_line,
            stop_s=opts.stop_timeout_s,
        )
    finally:
        job_path.unlink(missing_ok=True)
    return _finish(job, outcome, python, run_dir, child_job, pre.summary(), secrets)


def _finish(
    job: Job,
    outcome: Outcome,
    python: str,
    run_dir: Run,
    child_job: dict[str, Any],
    preflight_summary: str,
    secrets: list[str],
) -> Finished:
    log = run_dir.attempt_log(1)
    folder = str(run_dir.path)
    if outcome.log_error is not None and outcome.result is None:  # vLLM was stopped for it
        err = record_error(log, outcome.log_error)
        _record_end(
            run_dir, Finished(err.exit_code, failure=str(err), run_dir=folder, log=str(log))
        )
        raise err
    if outcome.spawn_error:
        _record_end(run_dir, Finished(2, failure=outcome.spawn_error, run_dir=folder))
        raise UsageError(outcome.spawn_error)
    if outcome.signal is not None and outcome.result is None:
        name = _signame(outcome.signal)
        stopped = Finished(
            128 + outcome.signal,
            failure=f"stopped by {name}",
            run_dir=folder,
            log=str(log),
            stopped_by=name,
        )
        _record_end(run_dir, stopped)
        return stopped
    error = outcome.error or {}
    if error.get("kind") == "input":
        message = str(error.get("message"))
        _record_end(run_dir, Finished(2, failure=message, run_dir=folder, log=str(log)))
        raise UsageError(message)
    if outcome.result is not None:
        _, dropped = job.engine_args()
        built = report.build(
            outcome.result,
            model=job.model,
            model_type=job.model_type.name,
            modality=job.inputs.modality,
            python=python,
            engine=redact.mask_json(child_job["engine"], redact.Redactor(secrets)),
            sampling=child_job["sampling"],
            run_dir=run_dir.path,
            log=log,
            preflight=preflight_summary,
            wall_s=outcome.wall_s,
            notes=[*job.notes, *dropped, *_sample_note(job)],
        )
        if outcome.exit_code not in (0, None):
            from mmops.serve.reaper import describe_exit

            built["notes"].append(
                f"vLLM ended with {describe_exit(outcome.exit_code)} after its result "
                "(stopped when it did not exit by itself)"
            )
        if outcome.log_error is not None:
            built["notes"].append(f"{log} is incomplete: {outcome.log_error.strerror}")
        run_dir.write_json("result.json", built)
        return Finished(0, report=built, run_dir=folder, log=str(log))
    failed = Finished(
        EXIT_FAILED,
        failure=_describe_failure(outcome),
        diagnosis=_diagnose(log),
        run_dir=folder,
        log=str(log),
    )
    _record_end(run_dir, failed)
    return failed


def _record_end(run_dir: Run, done: Finished) -> None:
    """result.json for a run that ended without a report: how it ended, for whoever reads the
    folder later. Best effort: a full disk must not hide the run's own failure."""
    with contextlib.suppress(RecordError):
        run_dir.write_json("result.json", done.to_json())


def _sample_note(job: Job) -> list[str]:
    if not job.inputs.sample:
        return []
    flag = "--image" if job.inputs.modality == "image" else "--video"
    return [f"no {flag} given: used the built-in sample {job.inputs.media[0].name}"]


def _describe_failure(outcome: Outcome) -> str:
    from mmops.serve.reaper import describe_exit

    error = outcome.error or {}
    stage = error.get("stage") or (list(outcome.stages)[-1] if outcome.stages else "start-up")
    text = f"vLLM failed ({describe_exit(outcome.exit_code)}) during {stage}"
    if error.get("type") or error.get("message"):
        text += f": {error.get('type') or 'error'}: {error.get('message')}"
    return text


def _diagnose(log: Any) -> Any:
    from mmops.diagnose.scan import diagnose

    try:
        return diagnose([str(log)])
    except MmopsError:  # an empty log: nothing to explain
        return None


def _signame(num: int) -> str:
    import signal

    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
