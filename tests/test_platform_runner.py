"""The command runner seam: the real subprocess runner and the replay runner."""

from __future__ import annotations

import sys
from pathlib import Path

from mmops.platform import CommandResult, Recording, ReplayRunner, system_runner

HEAVY = ("torch", "torch_npu", "vllm", "textual", "httpx", "yaml", "transformers")


def test_system_runner_real_processes():
    """The one test that starts processes: a real interpreter, a timeout, a missing binary.

    The child also proves that importing the platform layer and the version reader pulls in
    nothing heavy (they sit on the `mmops doctor` fast path).
    """
    code = (
        "import sys; import mmops.platform, mmops.platform.software; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); "
        "print('err', file=sys.stderr); sys.exit(3)"
    )
    result = system_runner([sys.executable, "-c", code], timeout=20)
    assert result.error is None, result
    assert (result.returncode, result.stdout, result.stderr) == (3, "[]\n", "err\n")
    assert not result.ok and result.output == "[]\n\nerr\n"

    slow = system_runner([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert (slow.returncode, slow.error) == (None, "timed out after 0.3s")

    missing = system_runner(["mmops-no-such-binary-x9"], timeout=1)
    assert missing == CommandResult(("mmops-no-such-binary-x9",), None, "", "", "not found")


def test_replay_prefix_matching(tmp_path):
    recorded = tmp_path / "out.txt"
    recorded.write_text("hello\n", encoding="utf-8")
    runner = ReplayRunner(
        {
            ("nvidia-smi",): Recording(stdout="generic", returncode=9),
            ("nvidia-smi", "--query-gpu"): recorded,
            ("npu-smi", "info"): "table",
        }
    )
    query = runner(["nvidia-smi", "--query-gpu=index,name", "--format=csv"], 3.0)
    assert (query.stdout, query.returncode, query.ok) == ("hello\n", 0, True)
    other = runner(["nvidia-smi", "-L"], 3.0)
    assert (other.stdout, other.returncode) == ("generic", 9)
    # "--query-gpu" must not match "--query-gpux": only an exact arg or "arg=...".
    assert runner(["nvidia-smi", "--query-gpux"], 3.0).stdout == "generic"
    assert runner(["npu-smi", "info", "-t", "board"], 3.0).stdout == "table"
    assert runner(["npu-smi"], 3.0).error == "not found"  # shorter than every key
    assert runner.calls[0] == ("nvidia-smi", "--query-gpu=index,name", "--format=csv")


def test_replay_unknown_command_is_not_found():
    result = ReplayRunner({})(["anything"], 1.0)
    assert result == CommandResult(("anything",), None, "", "", "not found")


def test_fixture_paths_exist():
    fixtures = Path(__file__).parent / "fixtures"
    for folder in ("npu-smi", "nvidia-smi", "cann"):
        data = [p for p in (fixtures / folder).iterdir() if not p.name.endswith(".source.md")]
        assert data, folder
        for path in data:
            # "910b3-x8-idle.txt" -> 910b3-x8-idle.source.md; "h100-load.query-gpu.csv" ->
            # h100-load.source.md (one note per capture).
            name, found = path.name, False
            while "." in name and not found:
                name = name.rsplit(".", 1)[0]
                found = (path.parent / f"{name}.source.md").is_file()
            assert found, f"{path} has no .source.md"
