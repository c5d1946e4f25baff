"""`mmops offline` on the real vLLM CPU build and the tiny generated Qwen2.5-VL.

Fixtures (tests/real/conftest.py): ``vllm_python`` (the venv of scripts/vllm_venv.sh) and
``tiny_model`` (random weights: the text is garbage, the counts and timings are real). The
doctor runs first, as without --no-preflight; the profile is tiny-cpu, as `mmops serve` uses it.
Each run starts vLLM once (about 80-110 s on 2 loaded cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "offline"
# As tests/real/conftest.py: no hub, no telemetry, a 1 GiB CPU KV cache.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}
RUN_S = 600  # one vLLM start and a few requests on a loaded, shared 2-core machine, with margin


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update(OFFLINE_ENV)
    out["PYTHONPATH"] = str(REPO)
    return out


def offline(python: Path, model: Path, state: Path, *extra: str) -> dict:
    """Run `mmops offline --json` to its end; the report, after checking nothing is left."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "mmops", "offline", "--profile", "tiny-cpu",
            "--model", str(model), "--python", str(python), "--state-dir", str(state),
            "--num-prompts", "4", "--json", "--enforce-eager", *extra,
        ],
        capture_output=True, text=True, env=env(), cwd=REPO, timeout=RUN_S,
    )  # fmt: skip
    assert proc.returncode == 0, f"stderr:\n{proc.stderr[-4000:]}\nstdout:\n{proc.stdout[-2000:]}"
    assert "preflight: " in proc.stderr and "preflight: skipped" not in proc.stderr
    left = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any("mmops/offline/child.py" in part for part in (p.info["cmdline"] or []))
    ]
    assert not left, f"child processes outlived mmops offline: {left}"
    return json.loads(proc.stdout)


def check_report(report: dict, modality: str, placeholder: str, media_tokens: int) -> None:
    assert report["ok"] is True and report["modality"] == modality
    assert report["model_type"] == "qwen2_5_vl"  # read from config.json
    assert report["vllm_version"].startswith("0.")
    outs = report["outputs"]
    assert [o["index"] for o in outs] == [0, 1, 2, 3]
    for o in outs:
        assert f"<|vision_start|>{placeholder}<|vision_end|>" in o["prompt"]
        assert o["prompt_tokens"] > media_tokens  # the media's tokens reached the model
        assert 1 <= o["output_tokens"] <= 16  # the reference's max_tokens
        assert o["finish_reason"] in ("length", "stop")
    t = report["timings"]
    for key in ("preprocess_s", "import_s", "engine_start_s", "generate_s", "total_s"):
        assert t[key] > 0, key
    assert t["total_s"] > t["engine_start_s"] > t["import_s"]
    tp = report["throughput"]
    assert tp["requests"] == 4
    assert tp["output_tokens"] == sum(o["output_tokens"] for o in outs)
    assert tp["output_tokens_per_s"] > 0 and tp["total_tokens_per_s"] > tp["output_tokens_per_s"]
    run = Path(report["run_dir"])
    assert (run / "attempt-1.log").stat().st_size > 0 and (run / "result.json").is_file()


def test_image_four_prompts(vllm_python, tiny_model, tmp_path):
    report = offline(vllm_python, tiny_model, tmp_path / "state")
    # 224x224 pixels at 28x28 per token (max_pixels 1280*28*28 does not shrink it): 64 tokens
    check_report(report, "image", "<|image_pad|>", 64)
    assert {Path(o["media"]).name for o in report["outputs"]} == {"red-circle.png"}
    assert report["engine_args"]["limit_mm_per_prompt"] == {"image": 1, "video": 0}


def test_video_four_prompts(vllm_python, tiny_model, tmp_path):
    report = offline(
        vllm_python, tiny_model, tmp_path / "state", "--modality", "video", "--num-frames", "4"
    )
    # 4 frames of 112x112, two frames per temporal patch: 2 x 16 = 32 tokens
    check_report(report, "video", "<|video_pad|>", 32)
    (frames,) = report["frames"]
    # checks/media/moving-dot.mp4 has 8 frames; 4 picked as np.linspace(0, 7, 4) picks them.
    assert frames["total_frames"] == 8 and frames["indices"] == [0, 2, 4, 7]


def test_internvl_prompt_and_stop_ids_with_a_real_tokenizer(vllm_python, tiny_model, tmp_path):
    """The child's InternVL path with transformers' own tokenizer: the tiny model's Qwen2
    tokenizer (as InternVL2.5-1B/4B/38B/78B have) with the chat template recorded from
    InternVL2_5-1B. No engine is started."""
    model = tmp_path / "internvl-tokenizer"
    model.mkdir()
    shutil.copy(tiny_model / "tokenizer.json", model)
    config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    recorded = json.loads((FIX / "InternVL2_5-1B.tokenizer_config.partial.json").read_text())
    config["chat_template"] = recorded["chat_template"]
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    script = f"""
import importlib.util, json
from transformers import AutoTokenizer
spec = importlib.util.spec_from_file_location("child", {str(REPO / "mmops/offline/child.py")!r})
child = importlib.util.module_from_spec(spec); spec.loader.exec_module(child)
tok = AutoTokenizer.from_pretrained({str(model)!r})
mtype = {{"name": "internvl_chat", "placeholder": "<image>", "template": None,
          "content": "{{placeholder}}\\n{{question}}"}}
stops = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end|>"]
print(json.dumps({{
    "prompts": child.render_prompts(mtype, ["What is in it?"], tok),
    "ids": child.stop_token_ids(tok, stops),
    "each": [tok.convert_tokens_to_ids(t) for t in stops],
}}))
"""
    proc = subprocess.run(
        [str(vllm_python), "-c", script], capture_output=True, text=True, env=env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["prompts"] == [
        "<|im_start|>user\n<image>\nWhat is in it?<|im_end|>\n<|im_start|>assistant\n"
    ]
    assert got["each"][3] is None  # <|end|>: not in a Qwen2 vocabulary
    assert got["ids"] == got["each"][:3] and None not in got["ids"]
