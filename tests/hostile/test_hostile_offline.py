"""`mmops offline` with bad flags and values, media that are no media, broken model dirs, an
interpreter that is no Python or has no vLLM, bad profiles: one line on stderr naming the flag
or file and what is valid, exit 2, before anything starts (no run folder, no process).

Media that only the child can judge (a file with an image's name that PIL cannot read, a
"video" OpenCV cannot decode) go through the real child program (mmops/offline/child.py) in the
real vLLM venv's interpreter, which fails them in its preprocessing stage, before vLLM is even
imported; those cases are skipped where that venv is absent. The stand-in interpreters are
those of tests/test_offline_cli.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_offline_cli import standin

REPO = Path(__file__).resolve().parents[2]
MEDIA = REPO / "checks" / "media"
NEVER = "raise SystemExit(99)\n"  # a stand-in that must never be started
STATE = ["state", "state/*", "state/*/*"]  # XDG_STATE_HOME: mmops/offline/<run>/


@pytest.fixture
def base(model: Path) -> list[str]:
    """A launch that would start at once: the model's type comes from its config.json."""
    return ["offline", "--model", str(model), "--no-preflight", "--device", "cpu"]


def nothing_started(state: Path) -> None:
    assert not state.exists(), "a run folder was made for input refused before any start"


# --------------------------------------------------------------------- flags and values


@pytest.mark.parametrize(
    "extra,mention",
    [
        (["--model-type", "llava"], ["--model-type 'llava': unknown", "valid: internvl_chat"]),
        (["--modality", "audio"], ["--modality 'audio': unknown", "valid: image, video"]),
        (["--num-prompts", "0"], ["--num-prompts must be at least 1; got 0"]),
        (["--num-prompts", "many"], ["--num-prompts", "invalid int value: 'many'"]),
        (["--modality", "video", "--num-frames", "0"], ["--num-frames must be at least 1"]),
        (["--question", " "], ["--question: empty", "give the question text"]),
        (["--top-p", "5"], ["--top-p 5", "must be in (0, 1]"]),
        (["--temperature", "nan"], ["--temperature nan", "must be a finite number"]),
        (["--stop-token-ids", "a,b"], ["--stop-token-ids", "invalid int value"]),
        (["--stop-timeout", "soon"], ["--stop-timeout", "invalid float value: 'soon'"]),
        (["--num-prompt", "2"], ["unknown flag --num-prompt; did you mean --num-prompts?"]),
        (["--profile", "nope"], ["--profile nope", "known:"]),
    ],
    ids=["model-type", "modality", "prompts-0", "prompts-text", "frames-0", "question-blank",
         "top-p-5", "temperature-nan", "stop-ids-text", "stop-timeout-text", "flag-typo",
         "profile-nope"],
)  # fmt: skip
def test_offline_bad_flag(hostile, base, extra, mention):
    hostile.run([*base, *extra], expect_rc=2, mention=mention)
    nothing_started(hostile.state)


# ------------------------------------------------------------------------------- media


def test_offline_image_missing(hostile, base, tmp_path):
    gone = tmp_path / "no-such.jpg"
    hostile.run([*base, "--image", gone], expect_rc=2, mention=[f"--image {gone}: no such file"])


def test_offline_image_is_a_directory(hostile, base, tmp_path):
    hostile.run(
        [*base, "--image", tmp_path],
        expect_rc=2,
        mention=[f"--image {tmp_path}: is a directory, not an image file"],
    )


def test_offline_image_is_empty(hostile, base, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    hostile.run(
        [*base, "--image", empty],
        expect_rc=2,
        mention=[f"--image {empty}: the file is empty; give an image file"],
    )


def test_offline_image_is_a_fifo(hostile, base, tmp_path):
    """Opening a FIFO blocks until someone writes: it must be refused unopened, not hang."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    hostile.run(
        [*base, "--image", fifo],
        expect_rc=2,
        mention=[f"--image {fifo}: not a regular file; give an image file"],
        timeout=10,
    )


def test_offline_video_is_a_device(hostile, base):
    hostile.run(
        [*base, "--video", "/dev/zero"],
        expect_rc=2,
        mention=["--video /dev/zero: not a regular file; give a video file"],
        timeout=10,
    )


def test_offline_image_is_a_video(hostile, base, tmp_path):
    clip = tmp_path / "photo.jpg"  # the name says image; the bytes say MP4
    shutil.copy(MEDIA / "moving-dot.mp4", clip)
    hostile.run(
        [*base, "--image", clip],
        expect_rc=2,
        mention=[f"--image {clip}: this is a video file", "--image takes an image"],
    )


def test_offline_video_with_modality_image(hostile, base):
    clip = MEDIA / "moving-dot.mp4"
    hostile.run(
        [*base, "--modality", "image", "--video", clip],
        expect_rc=2,
        mention=[f"--video {clip} with --modality image", "pass --modality video"],
    )


# ---------------------------------------------------------------------------- model dirs


def test_offline_model_dir_missing(hostile, tmp_path):
    gone = tmp_path / "no-such-model"
    hostile.run(
        ["offline", "--model", gone, "--device", "cpu"],
        expect_rc=2,
        mention=[f"--model {gone}: does not exist", "give the model's directory"],
    )


def test_offline_model_dir_is_a_file(hostile, model):
    cfg = model / "config.json"
    hostile.run(
        ["offline", "--model", cfg, "--device", "cpu"],
        expect_rc=2,
        mention=[f"--model {cfg}: is a file", "give the model's directory"],
    )


@pytest.mark.parametrize("config", [None, b"\xff\xfe\x00 not json", b'{"architectures": 7}'])
def test_offline_model_dir_without_a_usable_config(hostile, tmp_path, config):
    bad = tmp_path / "broken-model"
    bad.mkdir()
    if config is not None:
        (bad / "config.json").write_bytes(config)
    hostile.run(
        ["offline", "--model", bad, "--device", "cpu"],
        expect_rc=2,
        mention=[f"no readable config.json in {bad}", "pass one of: internvl_chat, qwen2_5_vl"],
    )


def test_offline_failed_preflight_starts_nothing(hostile, model, tmp_path):
    py = standin(tmp_path, NEVER)
    hostile.run(
        ["offline", "--model", model, "--python", py, "--device", "cpu",
         "--max-model-len", "999999"],
        expect_rc=2,
        max_lines=6,  # the refusal, the failed check and its fix, the way out
        mention=["preflight failed; not starting", "FAIL model.max_len", "fix:"],
    )  # fmt: skip
    nothing_started(hostile.state)


# ---------------------------------------------------------------------------- --python


@pytest.mark.parametrize(
    "python,why",
    [("missing", "no such file"), ("dir", "is a directory"), ("true", "not a Python interpreter")],
)
def test_offline_python_unusable(hostile, base, tmp_path, python, why):
    path = {"missing": tmp_path / "venv" / "bin" / "python", "dir": tmp_path, "true": "/bin/true"}
    hostile.run([*base, "--python", path[python]], expect_rc=2, mention=[f"--python {path[python]}", why])  # fmt: skip
    nothing_started(hostile.state)


def test_offline_python_without_vllm(hostile, base, tmp_path):
    py = standin(tmp_path, NEVER, vllm=False)
    hostile.run(
        [*base, "--python", py],
        expect_rc=2,
        max_lines=2,  # "preflight: skipped", then the one error
        mention=[f"vLLM is not installed for {py}", "pip install vllm", "--python"],
    )
    nothing_started(hostile.state)


# ----------------------------------------------------- media only the child can judge


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    """The real vLLM venv's interpreter (PIL and OpenCV are there, not in mmops' venv)."""
    env = os.environ.get("MMOPS_VLLM_PYTHON")
    if env:
        return Path(env)
    found = subprocess.run(
        ["bash", str(REPO / "scripts" / "vllm_venv.sh"), "--cached"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if found.returncode != 0:
        pytest.skip("no vLLM CPU venv (scripts/vllm_venv.sh): the child cannot judge media")
    return Path(found.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "flag,name,data,why",
    [("--image", "bad.jpg", b"just some text, named like a JPEG\n", "not an image PIL can read"),
     ("--image", "cut.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not an image PIL can read"),
     ("--video", "bad.webm", b"\x1a\x45\xdf\xa3" + b"\x00" * 64,
      "OpenCV cannot open it as a video"),
     # OpenCV opens a .jpg as a one-frame image sequence, then reads no frame of text
     ("--video", "notes.jpg", b"just some text\n", "not a video OpenCV can decode")],
    ids=["text-as-jpeg", "truncated-png", "empty-webm", "text-as-frames"],
)  # fmt: skip
def test_offline_media_the_child_cannot_decode(
    hostile, base, tmp_path, vllm_python, flag, name, data, why
):
    path = tmp_path / name
    path.write_bytes(data)
    out = hostile.run(
        [*base, "--python", vllm_python, flag, path],
        expect_rc=2,
        max_lines=6,  # preflight skipped, vLLM found, run folder, the stage, then the error
        mention=[f"mmops offline: error: {flag} {path}: {why}"],
        allow_new=STATE,
        timeout=60,
    )
    assert out.stderr.strip().splitlines()[-1].startswith("mmops offline: error: ")
    (run,) = list((hostile.state / "mmops" / "offline").iterdir())
    result = json.loads((run / "result.json").read_text())  # the folder says how it ended
    assert result["ok"] is False and why in result["error"] and result["exit_code"] == 2
    assert not (run / ".job-child.json").exists()
