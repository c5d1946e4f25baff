"""`mmops bundle` on run folders written with the real writers (mmops/serve/runs.py): what the
archive holds, that no planted secret survives in any member, a bundle with no run at all, and
an unwritable -o. Every check opens the real .tar.gz."""

from __future__ import annotations

import json
import os
import platform
import sys
import tarfile
import time
from pathlib import Path

import pytest

from mmops.bundle import collect, write_archive
from mmops.bundle.collect import read_tail
from mmops.cli import main
from mmops.platform import ReplayRunner
from mmops.redact import MASK, Redactor, is_secret_env, secret_values
from mmops.serve.events import iso_time
from mmops.serve.runs import Run

FIXTURES = Path(__file__).parent / "fixtures"
LINES = Path(__file__).parent / "fakes" / "lines"

# One planted secret per source; each must be absent from every byte of the archive.
ENV_SECRETS = {
    "VLLM_API_KEY": "vllm-api-key-PLANTED-0001",
    "HF_TOKEN": "hf_PLANTEDenvTOKEN00000000000001",
    "MY_SECRET": "my-secret-PLANTED-0002",
    "DB_PASSWORD": "db-password-PLANTED-0003",
}
ARGV_KEY = "argv-api-key-PLANTED-0004"  # --api-key in argv
PROFILE_VALUE = "sk-proj-PLANTEDprofile00000005"  # a profile's env value (OPENAI_API_KEY)
BEARER = "bearerPLANTED0006xyz"
HF_LOG = "hf_PLANTEDlogTOKEN0000000000000007"
SK_LOG = "sk-PLANTEDlogKEY000000000008"
URL_USER, URL_PASS = "oncall-PLANTED-user", "url-pass-PLANTED-0009"
EVENT_TOKEN = "event-token-PLANTED-0010"
EVENT_AUTH = "event-auth-PLANTED-0011"
PLANTED = [
    *ENV_SECRETS.values(),
    ARGV_KEY,
    PROFILE_VALUE,
    BEARER,
    HF_LOG,
    SK_LOG,
    URL_USER,
    URL_PASS,
    EVENT_TOKEN,
    EVENT_AUTH,
]
RUN_MEMBERS = {
    "summary.md",
    "MANIFEST.txt",
    "doctor.json",
    "plan.json",
    "versions.txt",
    "versions.json",
    "devices.txt",
    "env.txt",
    "events.jsonl",
}


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every member of a bundle by its name inside the bundle's one top folder."""
    with tarfile.open(path, "r:gz") as tar:
        names = tar.getnames()
        top = {n.split("/", 1)[0] for n in names}
        assert len(top) == 1, names
        out = {}
        for m in tar.getmembers():
            if m.isfile():
                fh = tar.extractfile(m)
                assert fh is not None
                out[m.name.split("/", 1)[1]] = fh.read()
        return out


def planted_run(root: Path) -> Path:
    """A FAILED run as an older or foreign mmops might leave it: nothing masked on disk."""
    run = Run.create(root, "planted")
    py = sys.executable
    argv = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--api-key", ARGV_KEY]
    child_env = {
        "OPENAI_API_KEY": PROFILE_VALUE,
        "HF_TOKEN": ENV_SECRETS["HF_TOKEN"],
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True",
    }
    run.write_json(
        "plan.json",
        {
            "argv": argv,
            "env": child_env,
            "python": py,
            "url": "http://127.0.0.1:8000",
            "profile": {"name": "planted", "env": {"OPENAI_API_KEY": PROFILE_VALUE}},
            "notes": [f"mirror https://{URL_USER}:{URL_PASS}@pypi.internal/simple"],
        },
    )
    run.write_json("preflight.json", {"skipped": True})
    t = time.time()
    cause = {
        "id": "npu.virtual_memory",
        "title": "NPU virtual memory (expandable segments) failure",
        "meaning": "m",
        "fix": "Set PYTORCH_NPU_ALLOC_CONF=expandable_segments:False",
        "line": f"token: {EVENT_TOKEN}",
        "line_no": 16,
        "retryable": True,
    }
    run.append_event(
        {"seq": 1, "time": iso_time(t), "state": "STARTING", "attempt": 1, "reason": "starting",
         "pid": 4242, "argv": argv, "env": child_env, "max_attempts": 1, "client_auth": EVENT_AUTH}
    )  # fmt: skip
    run.append_event(
        {"seq": 2, "time": iso_time(t + 1), "state": "FAILED", "attempt": 1,
         "reason": f"gave up; last request had Authorization: Bearer {BEARER}", "cause": cause,
         "fix": cause["fix"]}
    )  # fmt: skip
    planted_lines = [
        f"INFO 05-07 17:14:39 [cli_args.py:309] non-default args: {{'api_key': '{ARGV_KEY}'}}",
        f"curl -H 'Authorization: Bearer {BEARER}' http://127.0.0.1:8000/v1/models",
        f"INFO downloading with {HF_LOG}",
        f"WARNING openai client key {SK_LOG} rejected",
        f"INFO pip index https://{URL_USER}:{URL_PASS}@pypi.internal/simple",
        f"INFO connected to the database with {ENV_SECRETS['DB_PASSWORD']}",
        f"INFO the value {ENV_SECRETS['MY_SECRET']} is known by value only",
        f"INFO profile said {PROFILE_VALUE}",
    ]
    with run.open_attempt_log(1) as fh:
        fh.write(("\n".join(planted_lines) + "\n").encode())
        fh.write((LINES / "npu_vm_vllm_ascend_116.log").read_bytes())
    return run.path


@pytest.fixture
def env_secrets(monkeypatch):
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_ENDPOINT", f"https://{URL_USER}:{URL_PASS}@mirror.internal")
    monkeypatch.setenv("VLLM_IMAGE_FETCH_TIMEOUT", "100")


def test_no_planted_secret_survives_in_any_member(tmp_path, env_secrets, capsys):
    state = tmp_path / "state"
    run = planted_run(state)
    out = tmp_path / "b.tar.gz"

    assert main(["bundle", "--state-dir", str(state), "-o", str(out)]) == 0
    members = read_bundle(out)
    assert RUN_MEMBERS | {"attempt-1.log"} <= set(members)
    for name, data in members.items():
        for secret in PLANTED:
            assert secret.encode() not in data, f"{secret} leaked into {name}"
    # Masked, not dropped: what was around the secrets is still there to read.
    env_txt = members["env.txt"].decode()
    assert f"VLLM_API_KEY={MASK}" in env_txt and f"HF_TOKEN={MASK}" in env_txt
    assert "VLLM_IMAGE_FETCH_TIMEOUT=100" in env_txt
    assert "MY_SECRET" not in env_txt and "DB_PASSWORD" not in env_txt  # not a relevant prefix
    assert f"HF_ENDPOINT=https://{MASK}@mirror.internal" in env_txt
    plan = json.loads(members["plan.json"])
    assert plan["argv"][-2:] == ["--api-key", MASK]
    assert plan["env"]["OPENAI_API_KEY"] == MASK
    assert plan["env"]["PYTORCH_NPU_ALLOC_CONF"] == "expandable_segments:True"
    log = members["attempt-1.log"].decode()
    assert f"Authorization: Bearer {MASK}'" in log
    assert f"pip index https://{MASK}@pypi.internal/simple" in log
    assert "is known by value only" in log
    events = [json.loads(line) for line in members["events.jsonl"].splitlines()]
    assert events[0]["env"]["HF_TOKEN"] == MASK and events[0]["client_auth"] == MASK
    assert events[1]["cause"]["id"] == "npu.virtual_memory"
    summary = members["summary.md"].decode()
    assert "**FAILED**" in summary and "npu.virtual_memory" in summary
    assert f"wrote {out}" in capsys.readouterr().out
    assert run.name in members["MANIFEST.txt"].decode()


def test_redaction_shapes_added_for_bundles():
    r = Redactor()
    assert r.line(f"key {SK_LOG} here") == f"key {MASK} here"
    assert r.line("task-0123456789abcdefghij and disk-0123456789abcdefghij") == (
        "task-0123456789abcdefghij and disk-0123456789abcdefghij"
    )
    assert r.line(f"https://{URL_USER}:{URL_PASS}@host/x") == f"https://{MASK}@host/x"
    assert r.line("https://ghp_0123456789abcdefghijklmn@github.com/o/r") == (
        f"https://{MASK}@github.com/o/r"
    )
    assert r.line("ssh://git@github.com and http://127.0.0.1:8000/v1") == (
        "ssh://git@github.com and http://127.0.0.1:8000/v1"
    )
    assert r.line("`--api-key abcdef`") == f"`--api-key {MASK}`"
    for name in ("DB_PASSWORD", "MY_SECRET", "SOME_AUTH", "AWS_SECRET_ACCESS_KEY", "GH_TOKEN"):
        assert is_secret_env(name), name
    for name in ("TOKENIZERS_PARALLELISM", "VLLM_MAX_TOKENS", "max_tokens", "kv_cache_tokens"):
        assert not is_secret_env(name), name
    # TOKENIZERS_PARALLELISM=false must not mask every "false" of a log.
    assert secret_values((), {"TOKENIZERS_PARALLELISM": "false"}) == []
    lines = [f"a {SK_LOG} b", f"u https://{URL_USER}:{URL_PASS}@h", "task-0123456789abcdefghij"]
    block = ("\n".join(lines * 20) + "\n").encode()
    assert r.chunk(block).decode() == "\n".join(r.line(x) for x in lines * 20) + "\n"


def test_attempt_log_is_cut_to_lines_and_the_manifest_says_so(tmp_path):
    run = Run.create(tmp_path / "state", "long")
    run.append_event({"seq": 1, "time": iso_time(time.time()), "state": "STARTING",
                      "attempt": 1, "reason": "starting", "pid": 1})  # fmt: skip
    with run.open_attempt_log(1) as fh:
        fh.write(b"".join(b"INFO line %d\n" % i for i in range(1, 1001)))

    bundle = collect(run.path, lines=7, runner=ReplayRunner({}), env={})
    out = tmp_path / "b.tar.gz"
    write_archive(bundle, out)
    members = read_bundle(out)
    log = members["attempt-1.log"].decode().splitlines()
    assert log == [f"INFO line {i}" for i in range(994, 1001)]
    manifest = members["MANIFEST.txt"].decode()
    assert "attempt-1.log: cut to its last 7 lines (--lines 7): 993 earlier lines" in manifest
    assert "last 7 lines" in manifest
    assert "plan.json: not in the run folder" in manifest


@pytest.mark.parametrize(
    ("content", "n", "want", "start"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n", 2),
        (b"a\nb\nc", 2, b"b\nc", 2),  # a last line without its newline counts
        (b"a\nb\nc\n", 3, b"a\nb\nc\n", 0),
        (b"a\nb\n", 5, b"a\nb\n", 0),
        (b"", 3, b"", 0),
    ],
)
def test_read_tail(tmp_path, content, n, want, start):
    p = tmp_path / "log"
    p.write_bytes(content)
    tail = read_tail(p, n)
    assert (tail.data, tail.start) == (want, start)


def test_read_tail_is_capped_in_bytes_at_a_line_start(tmp_path):
    p = tmp_path / "log"
    p.write_bytes(b"".join(b"%07d\n" % i for i in range(100_000)))  # 800 kB
    tail = read_tail(p, 90_000, max_bytes=80_000)
    assert tail.capped and len(tail.data) == 80_000 and tail.data.startswith(b"0090000\n")
    assert tail.earlier_lines == 90_000


def test_no_run_still_bundles_the_machine(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "empty-state"
    state.mkdir()

    assert main(["bundle", "--state-dir", str(state), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    path = Path(printed["path"])
    assert path.parent == tmp_path and path.name.startswith("mmops-bundle-")
    assert path.name.endswith(".tar.gz") and printed["bytes"] == path.stat().st_size
    assert printed["manifest"]["run"] is None
    members = read_bundle(path)
    assert set(members) == {
        "summary.md", "MANIFEST.txt", "versions.txt", "versions.json", "devices.txt", "env.txt",
        "doctor.json",
    }  # fmt: skip
    assert {f["name"] for f in printed["manifest"]["files"]} == set(members)
    manifest = members["MANIFEST.txt"].decode()
    assert "run: none" in manifest and f"run: no `mmops serve` run folder under {state}" in manifest
    devices = members["devices.txt"].decode()
    assert "$ npu-smi info" in devices and "$ nvidia-smi" in devices
    versions = json.loads(members["versions.json"])
    assert versions["python"]["mmops_interpreter"] == sys.executable
    assert "Python version" in members["versions.txt"].decode()
    doctor = json.loads(members["doctor.json"])
    assert {c["id"].split(".")[0] for c in doctor["checks"]} <= {"device", "software", "env"}
    assert "No run" in members["summary.md"].decode()
    assert "PATH=" in members["env.txt"].decode()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_no_run_examines_the_interpreter_the_vllm_script_names(tmp_path, monkeypatch, capsys):
    # With no run, the packages that matter are those of the python `vllm` on PATH runs on.
    venv = tmp_path / "vllm-venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "vllm-0.32.0.dist-info").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("version_info = 3.11.7\n")
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to(sys.executable)
    script = venv / "bin" / "vllm"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "empty-state"
    state.mkdir()
    assert main(["bundle", "--state-dir", str(state), "--json"]) == 0
    members = read_bundle(Path(json.loads(capsys.readouterr().out)["path"]))
    versions = json.loads(members["versions.json"])
    assert versions["python"]["examined"] == str(venv / "bin" / "python")
    assert versions["packages"]["vllm"] == "0.32.0"


def test_recorded_npu_smi_and_ascend_files_feed_devices_and_versions(tmp_path):
    ascend = tmp_path / "Ascend"
    toolkit = ascend / "ascend-toolkit" / "latest" / f"{platform.machine()}-linux"
    toolkit.mkdir(parents=True)
    (toolkit / "ascend_toolkit_install.info").write_text(
        (FIXTURES / "cann" / "ascend_toolkit_install.8.5.0.info").read_text()
    )
    (ascend / "driver").mkdir()
    (ascend / "driver" / "version.info").write_text(
        (FIXTURES / "cann" / "driver-version.25.0.rc1.1.info").read_text()
    )
    (ascend / "firmware").mkdir()
    # Written for this test in the installer's key=value form (no recorded firmware file).
    (ascend / "firmware" / "version.info").write_text("Version=7.7.0.1.231\n")
    npu_smi = FIXTURES / "npu-smi" / "910b3-x8-idle.txt"
    runner = ReplayRunner({("npu-smi", "info"): npu_smi})

    bundle = collect(None, runner=runner, env={}, ascend_root=ascend)
    out = tmp_path / "b.tar.gz"
    write_archive(bundle, out)
    members = read_bundle(out)
    devices = members["devices.txt"].decode()
    assert npu_smi.read_text().strip() in devices and "$ nvidia-smi\nnot found" in devices
    versions = json.loads(members["versions.json"])
    assert versions["ascend"]["cann"] == "8.5.0"
    assert versions["ascend"]["driver"] == "25.0.rc1.1"
    assert versions["ascend"]["firmware"] == "7.7.0.1.231"
    assert versions["ascend"]["npu_smi"] == "25.2.0"
    text = members["versions.txt"].decode()
    assert "CANN                         : 8.5.0" in text and "innerversion=" in text
    assert runner.calls.count(("npu-smi", "info")) == 1  # devices, versions, doctor: one run
    doctor = json.loads(members["doctor.json"])
    visible = next(c for c in doctor["checks"] if c["id"] == "device.visible")
    assert "8 x 910B3" in visible["summary"]
    assert "npu-smi lists 8 chip(s) (910B3)" in members["summary.md"].decode()


@pytest.fixture
def readonly_dir(tmp_path):
    """A directory nobody may create files in (root ignores modes: /sys refuses it too)."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    try:
        (Path("/sys") / f".mmops-probe-{os.getpid()}").open("xb").close()
    except OSError:
        yield Path("/sys")
    else:
        pytest.skip("/sys is writable here: no read-only directory for root")


def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mmops bundle: error: -o ")
    return err


def test_unwritable_output_is_one_line_naming_o(tmp_path, readonly_dir, capsys):
    state = tmp_path / "state"
    state.mkdir()
    missing = tmp_path / "nowhere" / "b.tar.gz"
    err = _one_line_error(capsys, main(["bundle", "--state-dir", str(state), "-o", str(missing)]))
    assert "does not exist" in err and not (tmp_path / "nowhere").exists()

    target = readonly_dir / "b.tar.gz"
    err = _one_line_error(capsys, main(["bundle", "--state-dir", str(state), "-o", str(target)]))
    assert str(target) in err and "cannot write" in err
    assert not target.exists()
    if readonly_dir != Path("/sys"):
        assert list(readonly_dir.iterdir()) == []

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    err = _one_line_error(
        capsys, main(["bundle", "--state-dir", str(state), "-o", str(a_file / "b.tar.gz")])
    )
    assert "is not a directory" in err


def test_a_failed_write_leaves_no_temp_file(tmp_path):
    bundle = collect(None, runner=ReplayRunner({}), env={})
    target = tmp_path / "taken"
    (target / "x").mkdir(parents=True)  # a non-empty directory: the final rename fails
    with pytest.raises(OSError):
        write_archive(bundle, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_run_by_name_and_an_unknown_run(tmp_path, capsys):
    state = tmp_path / "state"
    run = planted_run(state)
    out = tmp_path / "b.tar.gz"
    assert main(["bundle", "--state-dir", str(state), "--run", "planted", "-o", str(out)]) == 0
    assert read_bundle(out)["summary.md"].decode().startswith(f"# mmops-bundle-{run.name}")
    capsys.readouterr()
    rc = main(["bundle", "--state-dir", str(state), "--run", "nope", "-o", str(out)])
    assert rc == 2 and "run 'nope': not found" in capsys.readouterr().err
