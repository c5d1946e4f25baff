"""`ray status` parser, on outputs recorded from a real local cluster (tests/fixtures/ray/
recorded-*.txt, Ray 2.60.0, see record.py) and from public threads (public-*.txt)."""

from __future__ import annotations

import pytest
from helpers import FIXTURES

from mmops.cluster.status import StatusParseError, parse_status, parse_usage_line

RAY = FIXTURES / "ray"
GIB = 2**30


def status(name: str):
    return parse_status((RAY / name).read_text())


def test_every_recorded_status_parses_whole():
    files = sorted(RAY.glob("*.txt"))
    assert len(files) >= 7
    for path in files:
        st = parse_status(path.read_text())
        assert st.nodes_active >= 1, path.name
        assert "CPU" in st.usage, path.name
        assert st.unparsed == (), (path.name, st.unparsed)
        assert (RAY / f"{path.stem}.source.md").is_file(), f"{path.name} has no .source.md"


def test_healthy_two_nodes_with_custom_npu_resource():
    st = status("recorded-2node-npu4x2-healthy.txt")
    assert st.when and st.when.startswith("2026-")
    assert st.nodes_active == 2 and all(g.name.startswith("node_") for g in st.active)
    assert (st.used("NPU"), st.total("NPU")) == (0.0, 8.0)
    assert st.total("CPU") == 2.0
    assert st.usage["memory"].total == pytest.approx(28.11 * GIB, rel=1e-3)
    assert st.demands == () and st.pending == () and st.failures == ()
    assert st.per_node == {}


def test_verbose_gives_each_node_usage():
    st = status("recorded-2node-npu4x2-healthy-v.txt")
    assert len(st.per_node) == 2
    assert {u["NPU"].total for u in st.per_node.values()} == {4.0}
    assert st.total("NPU") == 8.0  # the cluster totals are still read


def test_placement_groups_reserved_and_pending():
    st = status("recorded-3node-pg-held-and-pending.txt")
    npu = st.usage["NPU"]
    assert (npu.used, npu.total, npu.reserved, npu.reserved_used) == (0.0, 10.0, 4.0, 0.0)
    assert st.pending_placement_groups == ("{'NPU': 1.0} * 16 (PACK): 1+ pending placement groups",)
    per_node = status("recorded-3node-pg-held-and-pending-v.txt").per_node
    reserved = [u["NPU"].reserved for u in per_node.values()]
    assert sorted(r or 0 for r in reserved) == [0, 0, 4.0]  # one node holds the group


def test_a_killed_node_stays_counted_until_the_gcs_notices():
    # Recorded 2 s after SIGKILL of the third node, then after the GCS marked it dead.
    assert status("recorded-3node-one-just-killed.txt").total("NPU") == 10.0
    after = status("recorded-2node-after-death.txt")
    assert after.nodes_active == 2 and after.total("NPU") == 8.0
    assert after.failures == ()  # Ray lists autoscaler launches there, not a dead `ray start`


def test_public_outputs_older_headings_and_all_gpus_held():
    held = status("public-007-2x8-2080ti-all-gpus-reserved-in-pg.txt")  # "Usage:" / "Demands:"
    gpu = held.usage["GPU"]
    assert (gpu.used, gpu.total, gpu.reserved, gpu.reserved_used) == (16.0, 16.0, 16.0, 16.0)
    assert held.demands == ()
    pending = status("public-003-h100-2node-pending-pg-node-hostname.txt")
    assert len(pending.pending_placement_groups) == 1
    assert pending.usage["memory"].total == pytest.approx(3.88 * 2**40, rel=1e-3)


def test_usage_lines():
    u = parse_usage_line("0B/46.22GiB memory")
    assert u is not None and u.used == 0 and u.total == pytest.approx(46.22 * GIB)
    u = parse_usage_line(" 2.0/8.0 accelerator_type:910B")
    assert u is not None and (u.name, u.used, u.free) == ("accelerator_type:910B", 2.0, 6.0)
    assert parse_usage_line("(no resource demands)") is None


def test_idle_section_and_unknown_lines_are_kept_not_fatal():
    text = (RAY / "recorded-2node-npu4x2-healthy.txt").read_text()
    text = text.replace("Pending:\n", "Idle:\n 1 node_abc\nPending:\n")
    text = text.replace(" 0.0/8.0 NPU\n", " 0.0/8.0 NPU\n something Ray may add one day\n")
    st = parse_status(text)
    assert st.nodes_active == 3 and st.idle[0].name == "node_abc"
    assert st.unparsed == ("something Ray may add one day",)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ConnectionError: Could not find any running Ray instance.",
        "Traceback (most recent call last):\n  File x\nRuntimeError: boom\n",
    ],
)
def test_not_ray_status_is_refused(text):
    with pytest.raises(StatusParseError):
        parse_status(text)
