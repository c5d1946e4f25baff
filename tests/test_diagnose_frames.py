"""Traceback frames as evidence: a generic final exception still gets its real cause.

The frames and headers below are real lines (tests/fixtures/logs/dev2/005, dev2/014, sources in
DEV2.yaml); only the final exception line varies, because that is what the rule judges by.
"""

from __future__ import annotations

from pathlib import Path

from mmops.diagnose.scan import diagnose, diagnose_lines
from mmops.diagnose.table import frame_matches, load_signatures

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
P = "ERROR 05-16 03:38:10 [core.py:398] "
SHM_TRACEBACK = [
    P + "EngineCore encountered a fatal error.",
    P + "Traceback (most recent call last):",
    P + '  File "/usr/lib/python3.10/site-packages/vllm/v1/executor/multiproc_executor.py", '
    "line 181, in collective_rpc",
    P + "    status, result = w.worker_response_mq.dequeue(",
    P + '  File "/usr/lib/python3.10/site-packages/vllm/distributed/device_communicators/'
    'shm_broadcast.py", line 479, in dequeue',
    P + "    with self.acquire_read(timeout, cancel) as buf:",
]
M = "(APIServer pid=1) ERROR 11-05 03:37:40 [serving_chat.py:263] "
FETCH_TRACEBACK = [
    M + "Error in preprocessing prompt inputs",
    M + "Traceback (most recent call last):",
    M + '  File "/usr/local/lib/python3.12/dist-packages/vllm/multimodal/utils.py", line 266, '
    "in fetch_image_async",
    M + "    return await self.load_from_url_async(",
]


def _cause(lines: list[str]) -> tuple[str, str | None, str | None]:
    inc = diagnose_lines(lines)
    first = inc.findings[0] if inc.findings else None
    return inc.verdict, first.id if first else None, first.role if first else None


def test_a_worker_wait_that_timed_out_is_the_iteration_timeout():
    lines = [*SHM_TRACEBACK, P + "TimeoutError: RPC call to execute_model timed out."]
    assert _cause(lines) == ("crash", "runtime.engine_iteration_timeout", "cause")
    # The bare exception too: the frames say where it timed out.
    assert _cause([*SHM_TRACEBACK, P + "TimeoutError"])[1] == "runtime.engine_iteration_timeout"


def test_the_same_wait_cancelled_is_a_dead_worker_not_a_timeout():
    verdict, found, role = _cause([*SHM_TRACEBACK, P + "RuntimeError: cancelled"])
    assert verdict == "crash" and found != "runtime.engine_iteration_timeout"
    assert role == "consequence"  # no root cause in these lines: the engine died, say so


def test_a_traceback_cut_before_its_exception_still_counts():
    # dev2/005 as published: the log ends inside the traceback.
    inc = diagnose([str(next((LOGS / "dev2").glob("005-*.log")))])
    assert inc.verdict == "crash" and inc.findings[0].id == "runtime.engine_iteration_timeout"


def test_media_frames_pick_the_cause_by_the_exception():
    timed_out = [*FETCH_TRACEBACK, M + "TimeoutError"]
    assert _cause(timed_out)[:2] == ("running-errors", "runtime.image_fetch_timeout")
    bad_data = [*FETCH_TRACEBACK, M + "ValueError: Invalid base64-encoded string"]
    assert _cause(bad_data)[:2] == ("running-errors", "runtime.media_load_failed")
    # Cut inside the traceback: the cause that asks for no particular exception.
    assert _cause(FETCH_TRACEBACK)[1] == "runtime.media_load_failed"


def test_frames_of_another_process_are_not_judged_by_this_exception():
    other = "(APIServer pid=2) ERROR 11-05 03:37:40 [serving_chat.py:263] "
    lines = [*FETCH_TRACEBACK, other + "TimeoutError"]
    # The pid=1 traceback never ended: its frames count as cut, not as a timeout.
    assert _cause(lines)[1] == "runtime.media_load_failed"


def test_a_cause_named_by_a_message_wins_over_a_frame():
    # A frame line outside a failure is evidence only with its traceback; a message line of
    # another cause wins over it.
    lines = [
        *FETCH_TRACEBACK,
        M + "ValueError: Invalid base64-encoded string",
        "ERROR 11-05 03:37:41 [core.py:1] RuntimeError: Can not support soc_version: 104.",
    ]
    assert _cause(lines)[1] == "platform.soc_mismatch"


def test_frame_matches_lists_every_candidate_in_table_order():
    line = FETCH_TRACEBACK[2].split("] ", 1)[1].strip()
    ids = [m.signature.id for m in frame_matches(line)]
    assert ids == ["runtime.image_fetch_timeout", "runtime.media_load_failed"]
    order = [s.id for s in load_signatures()]
    assert order.index(ids[0]) < order.index(ids[1])
    assert all(m.tier == "frame" for m in frame_matches(line))
    assert frame_matches("INFO 11-05 nothing to see") == []


def test_a_variable_named_in_a_warning_is_no_evidence():
    # vLLM 0.32 warns about variables it no longer reads (seen here: mmops offline on the CPU
    # build); the name alone is neither an iteration timeout nor a fetch failure.
    lines = [
        "(APIServer pid=1) WARNING 12-04 09:20:01 [envs.py:1] Unknown vLLM environment variable "
        "detected: VLLM_ENGINE_ITERATION_TIMEOUT_S",
        "(APIServer pid=1) WARNING 12-04 09:20:01 [envs.py:1] Unknown vLLM environment variable "
        "detected: VLLM_IMAGE_FETCH_TIMEOUT",
        "(APIServer pid=1) INFO 12-04 09:20:09 [api_server.py:1] Starting vLLM API server 0 on "
        "http://127.0.0.1:8000",
    ]
    inc = diagnose_lines(lines)
    assert inc.verdict == "started" and inc.findings == []


def test_a_frame_pattern_never_classifies_a_line_on_its_own(tmp_path):
    # `logs --errors` and the TUI classify line by line: neither a frame nor a warning naming
    # the variable is an iteration timeout there; only the scanner's traceback judge counts it.
    from mmops.diagnose.scan import error_lines
    from mmops.diagnose.table import match_line

    warning = (
        "(APIServer pid=1) WARNING 12-04 09:20:01 [envs.py:1] Unknown vLLM environment variable "
        "detected: VLLM_ENGINE_ITERATION_TIMEOUT_S"
    )
    assert match_line(warning) is None and match_line(SHM_TRACEBACK[4]) is None
    log = tmp_path / "w.log"
    log.write_text("\n".join([warning, *SHM_TRACEBACK]) + "\n")
    assert all(m is None or m.signature.id != "runtime.engine_iteration_timeout"
               for _, _, m in error_lines(str(log)))  # fmt: skip
