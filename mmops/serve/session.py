"""One launch from preflight to its end: the object `mmops serve` and `mmops tui` both drive,
so the two can never behave differently.

``Session.prepare`` runs the preflight (the doctor, one code path), opens the run folder and
writes ``preflight.json``, reads the installed vLLM once, and builds the Supervisor. A failed
preflight blocks the start: ``start()`` then records FAILED (attempt 0) through the supervisor's
own event path instead of launching. ``recheck()`` re-runs the preflight on a changed launch
(the TUI's apply-a-fix key) and records what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmops.errors import RecordError
from mmops.launch.plan import Installed, Plan, build_plan, default_python, installed_vllm
from mmops.launch.preflight import Preflight, preflight
from mmops.launch.spec import LaunchSpec
from mmops.serve.events import StateChanged
from mmops.serve.runs import Run, state_root
from mmops.serve.states import State
from mmops.serve.supervisor import Options, Planner, Supervisor

if TYPE_CHECKING:
    from mmops.doctor.core import CheckResult
    from mmops.probe.load import Progress
    from mmops.probe.runner import SuiteResult


@dataclass(frozen=True)
class SmokeResult:
    reached: State  # READY, or the terminal state reached instead
    suite: SuiteResult | None  # None when the launch names no suite or READY was not reached

    @property
    def ok(self) -> bool:
        return self.reached == State.READY and (self.suite is None or bool(self.suite.ok))


class Session:
    """Preflight + run folder + supervisor for one launch."""

    def __init__(
        self,
        spec: LaunchSpec,
        pre: Preflight,
        run_dir: Run,
        supervisor: Supervisor,
        skip_preflight: bool = False,
        ray_timeout: float | None = None,
    ) -> None:
        self.spec = spec
        self.preflight = pre
        self.run_dir = run_dir
        self.supervisor = supervisor
        self.skip_preflight = skip_preflight
        self.ray_timeout = ray_timeout

    @classmethod
    def prepare(
        cls,
        spec: LaunchSpec,
        *,
        skip_preflight: bool = False,
        state_dir: str | None = None,
        options: Options | None = None,
        on_event: Callable[[StateChanged], None] | None = None,
        on_lines: Callable[[int, list[str]], None] | None = None,
        vllm: Installed | None | bool = True,
        planner: Planner | None = None,
        ray_timeout: float | None = None,
    ) -> Session:
        """Preflight, run folder, planner and supervisor. ``vllm=True`` reads the installed
        vLLM of the launch's interpreter once (not per attempt). ``ray_timeout``: how long a
        Ray launch's cluster probe may take (--ray-timeout)."""
        spec, pre = preflight(spec, skip_preflight, ray_timeout)
        run = Run.create(state_root(state_dir), spec.name)
        try:
            run.write_json("preflight.json", pre.to_dict())
        except RecordError:  # a full disk: no empty run folder left behind either
            run.discard_if_empty()
            raise
        if planner is None:
            version = installed_vllm(spec.vllm_python or default_python()) if vllm is True else vllm

            def planner(s: LaunchSpec) -> Plan:
                return build_plan(s, vllm_version=version)

        sup = Supervisor(
            spec, planner=planner, run_dir=run, options=options, on_event=on_event, on_lines=on_lines
        )
        return cls(spec, pre, run, sup, skip_preflight, ray_timeout)

    @property
    def blocked(self) -> bool:
        """The preflight failed: the server is not started."""
        return self.preflight.failed

    def plan(self) -> Plan:
        return self.supervisor.planner(self.supervisor.spec)

    async def start(self) -> None:
        """Start supervising, or, when the preflight failed, record FAILED and start nothing."""
        if self.blocked:
            self.run_dir.write_json(
                "plan.json", self.plan().to_dict(preflight=self.preflight.to_dict())
            )
            self.supervisor.refuse(
                "preflight failed; not starting",
                fix="; ".join(c.fix for c in self._failed_checks() if c.fix) or None,
                preflight=self.preflight.to_dict(),
            )
            return
        await self.supervisor.start()

    def _failed_checks(self) -> list[CheckResult]:
        report = self.preflight.report
        return [c for c in report.checks if c.status == "fail"] if report else []

    def recheck(self, spec: LaunchSpec | None = None, why: str | None = None) -> Preflight:
        """Re-run the preflight, on ``spec`` when the launch changed; the next attempt uses it.

        Writes preflight.json again and, for a change, an event that says what changed."""
        new_spec, pre = preflight(spec or self.spec, self.skip_preflight, self.ray_timeout)
        self.spec = new_spec
        self.preflight = pre
        self.supervisor.spec = new_spec
        self.run_dir.write_json("preflight.json", pre.to_dict())
        if why:
            self.supervisor.note(why, launch_change=why, preflight=pre.summary())
        return pre

    async def run_suite(
        self, suite_name: str | None = None, progress: Progress | None = None
    ) -> SuiteResult:
        """Run the launch's sample suite (or ``suite_name``, default smoke) against the server,
        and keep the result in the run folder."""
        from mmops.probe import run_suite_async
        from mmops.probe.suite import load_suite

        sup = self.supervisor
        plan = sup.plan or self.plan()
        result = await run_suite_async(
            plan.url,
            load_suite(suite_name or sup.spec.suite or "smoke"),
            model=plan.served_model,
            api_key=sup.spec.get("api-key"),
            model_path=sup.spec.model,
            progress=progress,
        )
        self.run_dir.write_json("probe.json", result.to_dict())
        return result

    async def smoke(self) -> SmokeResult:
        """Start, wait for READY (or the end), run the launch's suite when it names one, stop."""
        await self.start()
        sup = self.supervisor
        if self.blocked:
            return SmokeResult(sup.state, None)
        reached = await sup.wait_for(State.READY)
        suite = None
        if reached == State.READY and sup.spec.suite:
            suite = await self.run_suite()
        await sup.stop()
        return SmokeResult(reached, suite)
