"""`mmops probe` takes the reference online_serving.py's flags; progress only on a terminal."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmops.commands.probe import NO_SERVER, _Progress, server_url
from mmops.errors import UsageError
from tests.probe_server import ANSWER, ProbeServer

REPO = Path(__file__).resolve().parents[1]
IMAGE = str(REPO / "checks" / "media" / "red-circle.png")


def mmops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmops", "probe", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


def ns(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"url": None, "docker_ip": None, "served_port": None, **kw})


def test_docker_ip_and_served_port_build_the_url():
    assert server_url(ns(docker_ip="10.0.0.5", served_port="8000")) == "http://10.0.0.5:8000"
    assert server_url(ns(docker_ip="fe80::1", served_port="80")) == "http://[fe80::1]:80"
    assert server_url(ns(url="http://h:1")) == "http://h:1"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, NO_SERVER),
        ({"docker_ip": "10.0.0.5"}, "--docker-ip needs --served-port too (or pass --url instead)"),
        ({"served_port": "8000"}, "--served-port needs --docker-ip too (or pass --url instead)"),
        ({"docker_ip": "h", "served_port": "http"}, "--served-port http: must be a port number"),
        ({"docker_ip": "h", "served_port": "70000"}, "--served-port 70000: must be a port number"),
        (
            {"url": "http://h:1", "docker_ip": "h", "served_port": "1"},
            "--url and --docker-ip/--served-port both name the server: give one of them",
        ),
    ],
)
def test_server_flag_mistakes_are_one_line(kw, message):
    with pytest.raises(UsageError) as err:
        server_url(ns(**kw))
    assert str(err.value).startswith(message)


def test_no_server_flag_exits_2_naming_the_flags():
    out = mmops("--text", "hi")
    assert out.returncode == 2
    assert out.stderr == (
        "mmops probe: error: no server given: pass --url, or --docker-ip with --served-port\n"
    )
    assert out.stdout == ""


def test_the_reference_command_line_works_as_is(tmp_path):
    # online_serving.py --model-path M --image-path I --docker-ip H --served-port P --text T
    # plus every optional flag it has, spelled as it spells them.
    model = tmp_path / "Qwen2.5-VL"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["Qwen2_5_VLForConditionalGeneration"]}')
    with ProbeServer() as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        out = mmops(
            "--model-path", str(model), "--image-path", IMAGE, "--docker-ip", host,
            "--served-port", port, "--text", "图片内容是什么", "--stream", "1",
            "--max-tokens", "4", "--temperature", "0", "--top-k", "-1", "--top-p", "1",
            "--ignore-eos", "True", "--repetition-penalty", "1.05", "--stop-token-ids", "7", "8",
        )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    # The streamed text first, as it arrived, then the report.
    assert lines[0] == "A red circle on"
    assert lines[1].startswith(f"probe http://{host}:{port}  model tiny-qwen2.5-vl")
    body = srv.requests[0]
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "图片内容是什么"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["stream"] is True and body["ignore_eos"] is True
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["top_p"]) == (
        4, 0.0, -1, 1.0,
    )  # fmt: skip
    assert body["repetition_penalty"] == 1.05 and body["stop_token_ids"] == [7, 8]


def test_switch_values_and_print_response():
    with ProbeServer() as srv:
        out = mmops(
            "--url", srv.url, "--text", "hi", "--stream", "0", "--ignore-eos", "false",
            "--max-tokens", "3", "--print-response",
        )  # fmt: skip
        bad = mmops("--url", srv.url, "--stream", "maybe")
    assert out.returncode == 0, out.stdout + out.stderr
    body = srv.requests[0]
    assert body["stream"] is False and body["ignore_eos"] is False
    # --print-response: the server's JSON answer, as online_serving.py's print(response.json()).
    answer = json.loads(out.stdout.splitlines()[0])
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "A red circle"
    assert out.stdout.splitlines()[1].startswith("probe ")
    assert bad.returncode == 2 and "--stream: expected 1/0, true/false or yes/no" in bad.stderr


def test_json_output_stays_json_with_a_streamed_request():
    with ProbeServer() as srv:
        out = mmops("--url", srv.url, "--text", "hi", "--stream", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # no live text mixed in
    case = data["cases"][0]
    assert case["content"] == ANSWER
    assert case["ttfb_s"] is not None and case["ttft_s"] is not None


def test_load_progress_is_silent_when_stderr_is_not_a_terminal():
    with ProbeServer() as srv:
        out = mmops("--url", srv.url, "--suite", "smoke", "--concurrency", "2", "--requests", "4")
    assert out.returncode == 0, out.stdout
    assert out.stderr == ""


def test_load_progress_is_silent_with_json_even_on_a_terminal():
    import pty

    master, slave = pty.openpty()
    with ProbeServer() as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "mmops", "probe", "--url", srv.url, "--suite", "smoke",
             "--concurrency", "2", "--requests", "4", "--json"],
            stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
    os.close(slave)
    os.set_blocking(master, False)
    try:
        seen = os.read(master, 65536).decode()
    except OSError:  # nothing was written: EAGAIN, or EIO once every writer has closed
        seen = ""
    os.close(master)
    assert proc.returncode == 0
    assert seen == ""
    assert json.loads(proc.stdout)["load"]["requests"] == 4


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_line_is_throttled_shows_rate_and_is_erased():
    clock = Clock()
    out = io.StringIO()
    progress = _Progress(out, 10, clock=clock)
    progress.clear()
    assert out.getvalue() == ""  # nothing drawn, nothing to erase
    drawn = []
    for i in range(1, 11):  # a request done every 0.1 s
        clock.t += 0.1
        before = len(out.getvalue())
        progress(i, 10, 1 if i > 5 else 0)
        if len(out.getvalue()) > before:
            drawn.append(i)
    # At most one redraw per 0.25 s, and always the last one.
    assert drawn == [1, 4, 7, 10]
    last = out.getvalue().rsplit("\r", 1)[1]
    assert last == "  10/10 requests done, 1 failed  1.0 s  10.0 req/s\x1b[K"
    clock.t += 0.1
    progress.tick()  # too soon after the last draw
    assert out.getvalue().rsplit("\r", 1)[1] == last
    clock.t += 6.0
    progress.tick()  # between completions the clock still moves; the rate window empties
    assert (
        out.getvalue().rsplit("\r", 1)[1]
        == "  10/10 requests done, 1 failed  7.1 s  0.0 req/s\x1b[K"
    )
    progress.clear()
    assert out.getvalue().endswith("\r\x1b[K")
