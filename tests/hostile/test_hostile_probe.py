"""`mmops probe` against servers that misbehave and media that are no media.

Servers run in a thread of this test on 127.0.0.1: tests/probe_server.py's ProbeServer (vLLM's
shapes, with its error500 / malformed / truncate / slow / trickle behaviours), and RawServer
below for what no HTTP library will send (a reset, a body that is no JSON, a stream that never
ends, a reply that is no HTTP). A server failing a request is exit 3 with a verdict naming the
failure; bad flags are exit 2 before any request.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from probe_server import MODEL, ProbeServer

MEDIA = Path(__file__).resolve().parents[2] / "checks" / "media"
PNG = MEDIA / "red-circle.png"
QUICK = ["--no-metrics", "--timeout", "5"]  # every case ends well inside the helper's 20 s


# ------------------------------------------------------------------------- the stand-in servers


class RawServer:
    """A TCP server that answers /v1/models as vLLM does and the chat POST with ``mode``."""

    MODES = ("reset", "not-json", "never-ends", "not-http", "models-garbage", "close-at-once")

    def __init__(self, mode: str) -> None:
        assert mode in self.MODES
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(10)
                request = self._read_request(conn)
                if request is None:
                    return
                self._answer(conn, request)
        except OSError:
            pass  # the client gave up: that is its right

    @staticmethod
    def _read_request(conn: socket.socket) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head.split(b"\r\n", 1)[0].decode()

    def _answer(self, conn: socket.socket, request: str) -> None:
        def send(status: str, body: bytes, ctype: str = "application/json") -> None:
            conn.sendall(
                f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
                f"connection: close\r\n\r\n".encode()
                + body
            )

        if request.startswith("GET /v1/models"):
            if self.mode == "models-garbage":
                send("200 OK", b"<html>not the models list</html>", "text/html")
            else:
                send("200 OK", json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())
            return
        if not request.startswith("POST"):
            send("404 Not Found", b'{"detail": "Not Found"}')
            return
        if self.mode == "reset":  # RST instead of an answer
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif self.mode == "close-at-once":
            conn.shutdown(socket.SHUT_RDWR)
        elif self.mode == "not-json":
            send("200 OK", b'{"id": "chatcmpl-1", "choices": [{"message": ')
        elif self.mode == "not-http":
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\nthis is no HTTP\r\n")
        elif self.mode == "never-ends":  # a 200 stream that sends tokens and never finishes
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            for _ in range(400):
                if self.stop.is_set():
                    return
                event = b'data: {"choices": [{"index": 0, "delta": {"content": "la "}}]}\n\n'
                conn.sendall(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                time.sleep(0.05)


@pytest.fixture
def probe_server() -> Iterator[Callable[..., ProbeServer]]:
    started: list[ProbeServer] = []

    def start(**kw: object) -> ProbeServer:
        srv = ProbeServer(**kw).start()  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


# ------------------------------------------------------------------------ servers that fail


def test_connection_refused(hostile):
    url = f"http://127.0.0.1:{closed_port()}"
    hostile.run(
        ["probe", "--url", url, "--text", "hi", *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"cannot connect to {url}/v1/models"],
    )


def test_connection_refused_smoke_suite_with_metrics(hostile):
    url = f"http://127.0.0.1:{closed_port()}"
    hostile.run(
        ["probe", "--url", url, "--timeout", "5"],
        expect_rc=3,
        where="stdout",
        mention=["FAIL  text", "FAIL  image", "cannot connect", "/metrics: unavailable"],
    )


@pytest.mark.parametrize(
    "mode,says",
    [
        ("reset", ["FAIL", "Connection reset"]),
        ("close-at-once", ["FAIL", "disconnected"]),
        ("not-json", ["FAIL", "not a chat completion"]),
        ("not-http", ["FAIL", "Bad status line"]),
        ("models-garbage", ["FAIL", "/v1/models"]),
    ],
)
def test_raw_server_misbehaves(hostile, mode, says):
    with RawServer(mode) as srv:
        hostile.run(
            ["probe", "--url", srv.url, "--text", "hi", *QUICK],
            expect_rc=3,
            where="stdout",
            mention=says,
        )


def test_stream_that_never_ends_is_cut_at_the_timeout(hostile):
    with RawServer("never-ends") as srv:
        out = hostile.run(
            [
                "probe",
                "--url",
                srv.url,
                "--text",
                "hi",
                "--stream",
                "--no-metrics",
                "--timeout",
                "2",
            ],
            expect_rc=3,
            where="stdout",
            mention=["FAIL", "no complete answer within 2 s"],
        )
    assert out.wall_s < 10


@pytest.mark.parametrize(
    "behaviour,stream,says",
    [
        ("error500", False, ["FAIL", "500", "EngineCore encountered an issue"]),
        ("error500", True, ["FAIL", "500"]),
        ("malformed", True, ["FAIL", "not JSON"]),
        ("truncate", True, ["FAIL"]),
        ("stream_error", True, ["FAIL", "EngineCore"]),
        ("no_done", True, ["FAIL", "[DONE]"]),
    ],
    ids=["500", "500-stream", "malformed-sse", "cut-sse", "error-event", "no-done"],
)
def test_server_answers_badly(hostile, probe_server, behaviour, stream, says):
    srv = probe_server(default=behaviour)
    hostile.run(
        ["probe", "--url", srv.url, "--text", "hi", *QUICK, *(["--stream"] if stream else [])],
        expect_rc=3,
        where="stdout",
        mention=says,
    )


def test_slow_answer_times_out(hostile, probe_server):
    srv = probe_server(default="slow", slow_s=8)
    out = hostile.run(
        ["probe", "--url", srv.url, "--text", "hi", "--no-metrics", "--timeout", "1"],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", "no complete answer within 1 s"],
    )
    assert out.wall_s < 6


def test_trickle_of_keepalives_hits_the_deadline(hostile, probe_server):
    srv = probe_server(default="trickle")
    out = hostile.run(
        ["probe", "--url", srv.url, "--text", "hi", "--stream", "--no-metrics", "--timeout", "2"],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", "no complete answer within 2 s"],
    )
    assert out.wall_s < 10


# -------------------------------------------------------------------------- media that are not


def test_media_not_an_image(hostile, probe_server, tmp_path):
    srv = probe_server()
    fake = tmp_path / "photo.png"
    fake.write_text("I am text pretending to be a PNG\n")
    hostile.run(
        ["probe", "--url", srv.url, "--image", fake, *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"{fake}: expected an image file, found not an image"],
    )
    assert srv.requests == []  # refused before sending


def test_media_a_video_given_as_image(hostile, probe_server):
    srv = probe_server()
    video = MEDIA / "moving-dot.mp4"
    hostile.run(
        ["probe", "--url", srv.url, "--image", video, *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"{video}: expected an image file, found a video"],
    )


def test_media_empty(hostile, probe_server, tmp_path):
    srv = probe_server()
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    hostile.run(
        ["probe", "--url", srv.url, "--image", empty, *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"{empty}: expected an image file"],
    )


def test_media_enormous_sparse_file(hostile, probe_server, tmp_path):
    srv = probe_server()
    huge = tmp_path / "huge.png"
    with huge.open("wb") as fh:
        fh.write(PNG.read_bytes()[:64])
        fh.truncate(50 * 2**30)  # 50 GiB, sparse: no disk used
    hostile.run(
        ["probe", "--url", srv.url, "--image", huge, *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"{huge}: 5.12e+04 MB is over the 20 MB limit", "--max-media-mb"],
    )


def test_media_enormous_not_an_image_is_refused_unread(hostile, probe_server, tmp_path):
    srv = probe_server()
    junk = tmp_path / "junk.bin"
    with junk.open("wb") as fh:
        fh.truncate(900 * 2**20)  # within the largest limit, sparse zeros: never read whole
    out = hostile.run(
        ["probe", "--url", srv.url, "--image", junk, "--max-media-mb", "1024", *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"{junk}: expected an image file"],
    )
    assert out.wall_s < 10


def test_media_limit_beyond_memory_is_refused(hostile, tmp_path):
    hostile.run(
        ["probe", "--url", "http://127.0.0.1:9", "--image", PNG, "--max-media-mb", "1e12"],
        expect_rc=2,
        mention=["--max-media-mb 1000000000000.0", "<= 1024"],
    )


def test_media_truncated_png(hostile, probe_server, tmp_path):
    srv = probe_server()
    cut = tmp_path / "cut.png"
    cut.write_bytes(PNG.read_bytes()[:12])  # the signature, then nothing the server can decode
    hostile.run(
        ["probe", "--url", srv.url, "--image", cut, *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", "400", "Failed to load image"],
    )


def test_media_missing(hostile, probe_server, tmp_path):
    srv = probe_server()
    gone = tmp_path / "gone.jpg"
    hostile.run(
        ["probe", "--url", srv.url, "--image", gone, *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"{gone}: no such file"],
    )


def test_media_is_a_directory(hostile, probe_server, tmp_path):
    srv = probe_server()
    hostile.run(
        ["probe", "--url", srv.url, "--video", tmp_path, *QUICK],
        expect_rc=3,
        where="stdout",
        mention=["FAIL", f"{tmp_path}: is a directory"],
    )


def test_media_unicode_and_spaces_work(hostile, probe_server, tmp_path):
    srv = probe_server()
    odd = tmp_path / "图片 folder é" / "red circle ü.png"
    odd.parent.mkdir()
    odd.write_bytes(PNG.read_bytes())
    out = hostile.run(["probe", "--url", srv.url, "--image", odd, *QUICK], expect_rc=0, where=None)
    assert "1 passed, 0 failed" in out.stdout


# ------------------------------------------------------------------------------------ flags

BAD_FLAGS = [
    (["--url", "http://127.0.0.1:9", "--timeout", "inf"], ["--timeout inf", "finite"]),
    (["--url", "http://127.0.0.1:9", "--timeout", "0"], ["--timeout 0.0", "> 0"]),
    (["--url", "http://127.0.0.1:9", "--timeout", "-1"], ["--timeout -1.0", "> 0"]),
    (["--url", "http://127.0.0.1:9", "--timeout", "soon"], ["--timeout", "invalid float"]),
    (["--url", "ftp://127.0.0.1:9"], ["--url ftp://127.0.0.1:9", "http://"]),
    (["--url", "http://127.0.0.1:99999"], ["--url http://127.0.0.1:99999", "Port out of range"]),
    (["--url", "http://127.0.0.1:0"], ["--url http://127.0.0.1:0", "1 to 65535"]),
    (["--url", "http://[::1"], ["--url http://[::1", "Invalid IPv6 URL"]),
    (["--url", "http://"], ["--url http://", "needs a host"]),
    ([], ["no server given", "--url"]),
    (["--docker-ip", "10.0.0.1", "--served-port", "70000"], ["--served-port 70000", "1 to 65535"]),
    (["--docker-ip", "10.0.0.1"], ["--docker-ip needs --served-port"]),
    (["--url", "http://127.0.0.1:9", "--concurrency", "0"], ["--concurrency 0", ">= 1"]),
    (["--url", "http://127.0.0.1:9", "--requests", "-1"], ["--requests -1", ">= 1"]),
    (["--url", "http://127.0.0.1:9", "--max-tokens", "0"], ["--max-tokens 0", ">= 1"]),
    (["--url", "http://127.0.0.1:9", "--temperature", "inf"], ["--temperature inf", "finite"]),
    (["--url", "http://127.0.0.1:9", "--top-p", "1.5"], ["--top-p 1.5", "(0, 1]"]),
    (["--url", "http://127.0.0.1:9", "--stream", "maybe"], ["--stream", "1/0"]),
    (["--url", "http://127.0.0.1:9", "--max-media-mb", "nan"], ["--max-media-mb nan"]),
    (["--url", "http://127.0.0.1:9", "--suite", "nope"], ["--suite nope", "available:"]),
    (["--url", "http://127.0.0.1:9", "--suite", "smoke", "--text", "x"], ["cannot be combined"]),
    (["--url", "http://127.0.0.1:9", "--json", "--print-response", "--text", "x"],
     ["--print-response"]),
]  # fmt: skip


@pytest.mark.parametrize("args,mention", BAD_FLAGS, ids=[" ".join(a)[-40:] for a, _ in BAD_FLAGS])
def test_bad_flag(hostile, args, mention):
    hostile.run(["probe", *args], expect_rc=2, mention=mention)


def test_bad_suite_yaml(hostile, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ncases: [\n")
    hostile.run(
        ["probe", "--url", "http://127.0.0.1:9", "--suite", suite],
        expect_rc=2,
        mention=["suite.yaml", "YAML syntax error"],
    )


def test_model_path_missing(hostile, tmp_path):
    gone = tmp_path / "model"
    hostile.run(
        ["probe", "--url", "http://127.0.0.1:9", "--model-path", gone, "--text", "x"],
        expect_rc=2,
        mention=[f"--model-path {gone}", "no config.json"],
    )


def test_model_path_config_not_json(hostile, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    hostile.run(
        ["probe", "--url", "http://127.0.0.1:9", "--model-path", tmp_path, "--text", "x"],
        expect_rc=2,
        mention=[f"--model-path {tmp_path}", "config.json"],
    )
