"""Media is read and base64-encoded once per distinct file, and spliced into bodies as is."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from mmops.probe import media
from mmops.probe.media import load_media
from mmops.probe.request import ChatRequest, Sampling, Turn
from mmops.probe.runner import run_suite
from mmops.probe.suite import Case, Suite, TurnSpec
from tests.probe_server import ProbeServer

MEDIA = Path(__file__).resolve().parents[1] / "checks" / "media"


@pytest.fixture
def encodes(monkeypatch):
    """Counts base64 encodings done by mmops.probe.media, from an empty cache."""
    media.clear_cache()
    calls = []
    real = base64.b64encode

    def counting(data: bytes) -> bytes:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(media.base64, "b64encode", counting)
    yield calls
    media.clear_cache()


def test_one_encoding_per_file_until_it_changes(tmp_path, encodes):
    png = tmp_path / "a.png"
    shutil.copy(MEDIA / "red-circle.png", png)
    first = load_media(png, "image")
    again = load_media(str(png), "image")
    assert again.url is first.url and len(encodes) == 1
    # The same file by another name is the same file.
    assert load_media(tmp_path / "." / "a.png", "image").url is first.url
    assert len(encodes) == 1
    # A changed file is read and encoded anew.
    shutil.copy(MEDIA / "blue-square.jpg", png)
    os.utime(png, ns=(1, 1))
    changed = load_media(png, "image")
    assert len(encodes) == 2 and changed.mime == "image/jpeg"
    jpeg = (MEDIA / "blue-square.jpg").read_bytes()
    assert base64.b64decode(changed.url.split(",", 1)[1]) == jpeg
    # The checks still run on a cached file: a video is not an image.
    load_media(MEDIA / "moving-dot.mp4", "video")
    with pytest.raises(media.MediaError, match="expected an image file, found a video"):
        load_media(MEDIA / "moving-dot.mp4", "image")
    assert len(encodes) == 3


def test_a_load_and_a_second_run_encode_the_image_once(encodes):
    case = Case(
        name="image",
        modality="image",
        turns=(TurnSpec(text="What is it?", images=(str(MEDIA / "red-circle.png"),) * 2),),
        sampling=Sampling(max_tokens=2),
    )
    suite = Suite("one-image", (case,))
    with ProbeServer() as srv:
        first = run_suite(srv.url, suite, concurrency=4, requests=12, metrics=False)
        second = run_suite(srv.url, suite, metrics=False)
    assert first.ok and second.ok
    assert len(srv.requests) == 13
    assert len(encodes) == 1
    urls = {p["image_url"]["url"] for r in srv.requests for p in r["messages"][0]["content"][1:]}
    assert len(urls) == 1


def test_cache_is_bounded_least_recently_used_out():
    cache = media._UrlCache(max_chars=10)
    cache.put(("a", 1, 1, 1), ("image/png", "aaaa"))
    cache.put(("b", 1, 1, 1), ("image/png", "bbbb"))
    assert cache.get(("a", 1, 1, 1)) is not None  # a is now the most recently used
    cache.put(("c", 1, 1, 1), ("image/png", "cccc"))  # 12 chars > 10: b goes
    assert cache.get(("b", 1, 1, 1)) is None
    assert cache.get(("a", 1, 1, 1)) == ("image/png", "aaaa") and len(cache) == 2
    cache.put(("big", 1, 1, 1), ("image/png", "x" * 11))  # larger than the whole cache: not kept
    assert cache.get(("big", 1, 1, 1)) is None and len(cache) == 2


def test_encoded_body_is_byte_for_byte_json_dumps():
    png = load_media(MEDIA / "red-circle.png", "image")
    mp4 = load_media(MEDIA / "moving-dot.mp4", "video")
    remote = load_media("https://example.invalid/a.jpg", "image")
    requests = [
        ChatRequest((Turn(text='say "hi" \\ é', images=(png, png, remote)),), stream=True),
        ChatRequest((Turn(text="x", video=mp4), Turn(role="assistant", text="y"))),
        ChatRequest((Turn(text=f"mmops-media-{'0' * 16}-0"),)),
    ]
    for req in requests:
        assert req.encode("m") == json.dumps(req.body("m"), separators=(",", ":")).encode()
