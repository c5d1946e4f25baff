"""The real vLLM CPU server on the tiny Qwen2.5-VL answers health, models and image chat."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import httpx
import pytest

MAKE_JPEG = """
import io, sys
from PIL import Image
img = Image.new("RGB", (224, 224))
img.putdata([(x, y, (x * y) % 256) for y in range(224) for x in range(224)])
buf = io.BytesIO()
img.save(buf, format="JPEG", quality=90)
sys.stdout.buffer.write(buf.getvalue())
"""


@pytest.fixture(scope="module")
def jpeg_b64(vllm_python: Path) -> str:
    """A 224x224 JPEG made by Pillow in the vLLM venv (the test venv has no Pillow)."""
    out = subprocess.run([str(vllm_python), "-c", MAKE_JPEG], capture_output=True, check=True)
    assert out.stdout[:3] == b"\xff\xd8\xff", "not a JPEG"
    return base64.b64encode(out.stdout).decode()


def chat(server, content) -> dict:
    body = {
        "model": server.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
    }
    resp = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_health(vllm_server):
    assert httpx.get(f"{vllm_server.url}/health", timeout=10).status_code == 200


def test_models_lists_served_name(vllm_server):
    resp = httpx.get(f"{vllm_server.url}/v1/models", timeout=10)
    assert resp.status_code == 200
    models = {m["id"]: m for m in resp.json()["data"]}
    assert vllm_server.model in models
    assert models[vllm_server.model]["max_model_len"] == 2048


def test_image_tokens_are_counted(vllm_server, jpeg_b64):
    question = {"type": "text", "text": "Describe this image in one sentence."}
    image = {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg_b64}"}}
    text_only = chat(vllm_server, [question])
    with_image = chat(vllm_server, [image, question])
    assert with_image["choices"][0]["message"]["role"] == "assistant"
    extra = with_image["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"]
    # 224x224 resizes to at most 112x112 (max_pixels) = 16 merged patches, plus the
    # vision_start/vision_end markers; anything above 2 proves image tokens reached the prompt.
    assert extra > 2, (text_only["usage"], with_image["usage"])
