"""The program `mmops offline` runs in vLLM's interpreter: ``python -u child.py JOB.json``.

It is a file of the mmops package but imports nothing from mmops, and only the standard library
at the top: mmops imports it (for MARKER and the pure functions below) without vLLM, PIL or
torch, and vLLM's interpreter runs it without mmops installed. PIL, OpenCV, numpy,
transformers and vLLM are imported inside the functions that use them.

The job (JSON, written by mmops.offline.runner) says what to run: the LLM() arguments, the
SamplingParams, the media, the questions, which request gets which, and the model type's prompt
format. The steps follow vision_language.py, and each is timed:

1. preprocess: load the media (images through PIL, converted to RGB; video frames picked
   evenly, as vLLM's VideoAsset picks them) and build the prompts (a format string, or the
   model's chat template) and stop token ids (the model's tokenizer). Done before the engine
   starts, so bad input costs seconds, not an engine start.
2. engine: ``import vllm``; ``LLM(**engine)``. A video goes in as (frames, metadata) where the
   installed vLLM takes that form (see ``_takes_video_metadata``), else as the frames alone.
3. generate: ``llm.generate(inputs, SamplingParams(...))``, every request in one call.

What mmops reads are the lines starting with MARKER among vLLM's log output on stdout/stderr:
``MARKER stage NAME`` as each step starts, ``MARKER result {json}`` once at the end, and
``MARKER error {json}`` before a failure (kind "input": exit 2; otherwise the exception goes on
to print its traceback for `mmops diagnose`, exit 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

MARKER = "@@mmops-offline"
EXIT_INPUT = 2


class InputError(Exception):
    """Media or a prompt that cannot be used: the user's to fix (exit 2, no traceback)."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


def emit(kind: str, payload: Any = None) -> None:
    """One marker line for mmops; JSON payloads stay on that one line."""
    tail = (
        ""
        if payload is None
        else " "
        + (payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False))
    )
    sys.stdout.write(f"{MARKER} {kind}{tail}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- pure parts


def sample_frame_indices(total: int, num: int) -> list[int]:
    """``num`` evenly spaced indices into ``total`` frames, first and last included.

    The same as vLLM's ``np.linspace(0, total - 1, num, dtype=int)`` (vllm/assets/video.py):
    i * step truncated toward zero, the last one exactly ``total - 1``.
    """
    if total < 1 or num < 1:
        raise ValueError(f"need at least one frame (total {total}, wanted {num})")
    if num == 1:
        return [0]
    step = (total - 1) / (num - 1)
    out = [int(i * step) for i in range(num)]
    out[-1] = total - 1
    return out


def render_prompts(spec: dict[str, Any], questions: list[str], tokenizer: Any = None) -> list[str]:
    """One prompt per question, in the model type's format.

    With a ``template``: the string, its {placeholder} and {question} filled in. Without: the
    user message (``content``, filled in the same way) through the tokenizer's chat template,
    ``tokenize=False, add_generation_prompt=True``, as vision_language.py does for InternVL.
    """
    placeholder = spec["placeholder"]
    if spec.get("template"):
        return [spec["template"].format(placeholder=placeholder, question=q) for q in questions]
    if tokenizer is None:
        raise ValueError(f"{spec['name']}: its prompts come from the model's chat template")
    prompts = []
    for q in questions:
        content = spec["content"].format(placeholder=placeholder, question=q)
        prompts.append(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        )
    return prompts


def stop_token_ids(tokenizer: Any, tokens: list[str]) -> list[int]:
    """``convert_tokens_to_ids`` of each stop token the tokenizer has, each id once.

    A fast tokenizer answers None for a token it lacks (dropped, as vLLM's example does since
    2025); a sentencepiece one answers its <unk> id, which is kept: that is how InternLM2-based
    InternVL gets the reference's [0, 92543, 92542].
    """
    ids: list[int] = []
    for token in tokens:
        found = tokenizer.convert_tokens_to_ids(token)
        if found is not None and int(found) not in ids:
            ids.append(int(found))
    return ids


# ------------------------------------------------------------------------------- media


def load_image(path: str) -> Any:
    """The image at ``path`` as an RGB PIL image (any format PIL reads)."""
    from PIL import Image, UnidentifiedImageError  # type: ignore[import-not-found,unused-ignore]

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"--image {path}", f"not an image PIL can read ({exc})") from None


def load_video(path: str, num_frames: int) -> tuple[Any, dict[str, Any]]:
    """``num_frames`` RGB frames picked evenly from the video (fewer if it has fewer), as one
    (frames, height, width, 3) uint8 array, and what was picked."""
    import cv2  # type: ignore[import-not-found,unused-ignore]
    import numpy as np  # type: ignore[import-not-found,unused-ignore]

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise InputError(f"--video {path}", "OpenCV cannot open it as a video")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if total < 1:
            raise InputError(f"--video {path}", "no frames in it")
        used = min(num_frames, total)
        wanted = sample_frame_indices(total, used)
        keep = set(wanted)
        frames = []
        for idx in range(total):
            if not cap.grab():
                break
            if idx in keep:
                ok, frame = cap.retrieve()
                if ok:
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise InputError(
            f"--video {path}", "not a video OpenCV can decode (no frame could be read)"
        )
    if len(frames) < used:
        raise InputError(
            f"--video {path}", f"only {len(frames)} of the {used} frames picked could be read"
        )
    info = {"total_frames": total, "frames": used, "indices": wanted, "fps": fps}
    return np.stack(frames), info


def video_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """What vLLM's own ``video_get_metadata`` (vllm/assets/video.py) says of frames it picked,
    for frames picked here; ``do_sample_frames`` False: they are not to be picked again."""
    fps = float(info.get("fps") or 0.0)
    return {
        "total_num_frames": info["frames"],
        "fps": fps,
        "duration": info["total_frames"] / fps if fps > 0 else 0,
        "video_backend": "opencv",
        "frames_indices": list(info["indices"]),
        "do_sample_frames": False,
    }


def _takes_video_metadata() -> bool:
    """Whether this vLLM takes a video as (frames, metadata). Releases that do ship
    ``video_get_metadata`` beside VideoAsset, which their vision_language.py uses to build it;
    and there Qwen2.5-VL requires it (0.32: "Video metadata is required but not found in mm
    input"). Older ones (0.7.x) take the frames array alone."""
    try:
        from vllm.assets import video as assets  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    return hasattr(assets, "video_get_metadata")


# ---------------------------------------------------------------------------------- run


def run(job: dict[str, Any]) -> int:
    """Run one job; print the marker lines; the exit status."""
    engine: dict[str, Any] = dict(job["engine"])
    spec: dict[str, Any] = job["model_type"]
    modality: str = job["modality"]
    timings: dict[str, float] = {}
    notes: list[str] = []

    emit("stage", "preprocess")
    t0 = time.perf_counter()
    try:
        media: list[Any] = []
        frames: list[dict[str, Any]] = []
        for path in job["media"]:
            if modality == "image":
                media.append(load_image(path))
            else:
                data, info = load_video(path, int(job["num_frames"]))
                media.append(data)
                frames.append({"path": path, **info})
                if info["frames"] < int(job["num_frames"]):
                    notes.append(
                        f"{path} has {info['total_frames']} frames: using all of them, "
                        f"not --num-frames {job['num_frames']}"
                    )
        tokenizer = None
        sampling: dict[str, Any] = dict(job["sampling"])
        wants_stop_ids = sampling.get("stop_token_ids") is None and spec["stop_tokens"]
        if not spec.get("template") or wants_stop_ids:
            from transformers import AutoTokenizer  # type: ignore[import-not-found,unused-ignore]

            tokenizer = AutoTokenizer.from_pretrained(
                engine.get("tokenizer") or engine["model"],
                trust_remote_code=bool(engine.get("trust_remote_code")),
            )
        prompts = render_prompts(spec, list(job["questions"]), tokenizer)
        if wants_stop_ids:
            sampling["stop_token_ids"] = (
                stop_token_ids(tokenizer, list(spec["stop_tokens"])) or None
            )
    except InputError as exc:
        emit("error", {"stage": "preprocess", "kind": "input", "message": str(exc)})
        return EXIT_INPUT
    except Exception as exc:
        emit("error", _error("preprocess", exc))
        raise
    timings["preprocess_s"] = time.perf_counter() - t0

    emit("stage", "engine")
    t0 = time.perf_counter()
    try:
        import vllm  # type: ignore[import-not-found,unused-ignore]
        from vllm import LLM, SamplingParams  # type: ignore[import-not-found,unused-ignore]

        timings["import_s"] = time.perf_counter() - t0
        if frames and _takes_video_metadata():
            media = [(data, video_metadata(frames[i])) for i, data in enumerate(media)]
        llm = LLM(**engine)
    except Exception as exc:
        emit("error", _error("engine", exc))
        raise
    timings["engine_start_s"] = time.perf_counter() - t0
    inputs = [
        {"prompt": prompts[r["question"]], "multi_modal_data": {modality: media[r["media"]]}}
        for r in job["requests"]
    ]

    emit("stage", "generate")
    t0 = time.perf_counter()
    try:
        params = SamplingParams(**sampling)
        outputs = llm.generate(inputs, params, use_tqdm=False)
    except Exception as exc:
        emit("error", _error("generate", exc))
        raise
    timings["generate_s"] = time.perf_counter() - t0

    results = []
    for i, req in enumerate(job["requests"]):
        out = outputs[i]
        first = out.outputs[0] if out.outputs else None
        results.append(
            {
                "index": i,
                "question": job["questions"][req["question"]],
                "media": job["media"][req["media"]],
                "prompt": out.prompt if out.prompt is not None else prompts[req["question"]],
                "prompt_tokens": len(out.prompt_token_ids or []),
                "output_tokens": len(first.token_ids) if first is not None else 0,
                "text": first.text if first is not None else "",
                "finish_reason": first.finish_reason if first is not None else None,
            }
        )
    emit(
        "result",
        {
            "vllm_version": getattr(vllm, "__version__", None),
            "stop_token_ids": sampling.get("stop_token_ids"),
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "frames": frames,
            "outputs": results,
            "notes": notes,
        },
    )
    return 0


def _error(stage: str, exc: BaseException) -> dict[str, Any]:
    return {"stage": stage, "kind": "exception", "type": type(exc).__name__, "message": str(exc)}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: child.py JOB.json\n")
        return EXIT_INPUT
    with open(argv[0], encoding="utf-8") as fh:
        job = json.load(fh)
    # It holds the real values (secrets included): gone as soon as it is read, so not even a
    # SIGKILL of mmops leaves it in the run folder.
    with contextlib.suppress(OSError):
        os.unlink(argv[0])
    return run(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
