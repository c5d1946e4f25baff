"""`mmops offline` as a real process: bad input, preflight, a missing vLLM, and stand-in children
(an executable put where --python points, inside a venv layout whose metadata says vLLM is
installed) that answer, fail or sleep, under the real reaper.

The real child program on the real vLLM CPU build is tests/real/test_offline_real.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import REPO, cli_env, wait_gone  # noqa: E402

pytestmark = pytest.mark.timeout(90)
LOGS = Path(__file__).parent / "fixtures" / "logs" / "real-cpu"
MARKER = "@@mmops-offline"


def mmops(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmops", "offline", *args],
        capture_output=True,
        text=True,
        env=cli_env(**env),
        cwd=REPO,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (no usage text, no traceback)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    return lines[0]


def standin(tmp_path: Path, body: str, vllm: bool = True) -> Path:
    """A venv layout whose bin/python is ``body`` run by this interpreter; with ``vllm``, its
    site-packages metadata says vLLM 0.32.0 is installed (as mmops reads it, without running
    anything). The stand-in gets the child's argv: -u CHILD_PATH JOB_PATH."""
    root = tmp_path / "venv"
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = root / "lib" / ver / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text(
        f"home = {Path(sysconfig.get_config_var('BINDIR'))}\nversion = {sys.version.split()[0]}\n"
    )
    if vllm:
        info = site / "vllm-0.32.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0\n")
    (root / "bin").mkdir()
    py = root / "bin" / "python"
    py.write_text(f"#!{sys.executable}\n{body}")
    py.chmod(0o755)
    return py


# A stand-in that answers as the child does: the marker lines, one output per request; the
# prompts come from the real child program's render_prompts (stdlib only, importable anywhere).
ANSWER = f"""
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("child", sys.argv[2])
child = importlib.util.module_from_spec(spec); spec.loader.exec_module(child)
job = json.load(open(sys.argv[3]))
print("{MARKER} stage preprocess", flush=True)
prompts = child.render_prompts(job["model_type"], job["questions"])
print("{MARKER} stage engine", flush=True)
print("INFO 12-04 09:00:00 [core.py:1] a vLLM log line", flush=True)
print("{MARKER} stage generate", flush=True)
outs = [dict(index=i, question=job["questions"][r["question"]], media=job["media"][r["media"]],
             prompt=prompts[r["question"]], prompt_tokens=88, output_tokens=4,
             text='out %d token: abcd"efgh' % i, finish_reason="length")
        for i, r in enumerate(job["requests"])]
result = dict(vllm_version="0.32.0", stop_token_ids=None, frames=[], outputs=outs, notes=[],
              timings=dict(preprocess_s=0.01, import_s=1.0, engine_start_s=2.0, generate_s=0.5))
print("{MARKER} result " + json.dumps(result), flush=True)
json.dump(dict(argv=sys.argv[1:], job=job), open(sys.argv[3] + ".seen", "w"))
"""


def test_unknown_model_type_lists_the_valid_ones(tmp_path):
    line = one_line_error(mmops("--model-type", "llava", "--model", str(tmp_path)))
    assert line == (
        "mmops offline: error: --model-type 'llava': unknown; valid: internvl_chat, qwen2_5_vl, "
        "qwen2_vl"
    )


def test_a_missing_image_file_is_named(tmp_path):
    line = one_line_error(
        mmops("--model-type", "qwen2_5_vl", "--model", str(tmp_path), "--image", "/no/such.jpg")
    )
    assert line == "mmops offline: error: --image /no/such.jpg: no such file"


def test_modality_video_with_an_image(tmp_path):
    image = REPO / "checks" / "media" / "red-circle.png"
    args = ("--model-type", "qwen2_5_vl", "--model", str(tmp_path), "--modality", "video")
    line = one_line_error(mmops(*args, "--image", str(image)))
    assert "--image" in line and "--modality video" in line and "--video PATH" in line
    # ... and an image file given as the video, whatever its name says.
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(image.read_bytes())
    line = one_line_error(mmops(*args, "--video", str(fake)))
    assert line == (
        f"mmops offline: error: --video {fake}: this is an image file; --video takes a video "
        "(MP4, WebM, AVI, ...)"
    )


def test_num_prompts_zero(tmp_path):
    line = one_line_error(
        mmops("--model-type", "qwen2_5_vl", "--model", str(tmp_path), "--num-prompts", "0")
    )
    assert line == "mmops offline: error: --num-prompts must be at least 1; got 0"


@pytest.mark.parametrize(
    "flag,value,valid",
    [("--top-p", "5", "must be in (0, 1]"), ("--max-tokens", "0", "must be an integer >= 1"),
     ("--temperature", "inf", "must be a finite number")],
)  # fmt: skip
def test_a_bad_sampling_value_is_refused_before_vllm_starts(tmp_path, flag, value, valid):
    # The same check as probe's (mmops/commands/sampling.py): not minutes later, inside vLLM.
    args = ("--model-type", "qwen2_5_vl", "--model", str(tmp_path), flag, value)
    line = one_line_error(mmops(*args))
    assert line.startswith(f"mmops offline: error: {flag} ") and line.endswith(valid)


def test_a_misspelt_offline_flag_is_not_passed_to_vllm(tmp_path):
    line = one_line_error(mmops("--model", str(tmp_path), "--num-prompt", "2"))
    assert line == "mmops offline: error: unknown flag --num-prompt; did you mean --num-prompts?"


def test_without_vllm_it_says_how_to_install_it(tmp_path, model_dir):
    py = standin(tmp_path, "raise SystemExit(99)\n", vllm=False)
    line = one_line_error(
        mmops("--model", str(model_dir()), "--python", str(py), "--device", "cpu")
    )  # the preflight passes (the doctor only warns of the missing vLLM), then this one line
    assert line.startswith(
        f"mmops offline: error: vLLM is not installed for {py}: pip install vllm"
    )


def test_a_failed_preflight_stops_with_its_fix(tmp_path, model_dir):
    py = standin(tmp_path, "raise SystemExit(99)\n")
    proc = mmops(
        "--model", str(model_dir()), "--python", str(py), "--device", "cpu",
        "--max-model-len", "999999", "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "preflight failed; not starting" in proc.stderr
    assert "FAIL model.max_len" in proc.stderr and "fix:" in proc.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_a_stand_in_child_answers_and_the_report_has_every_output(tmp_path, model_dir):
    py = standin(tmp_path, ANSWER)
    state = tmp_path / "state"
    model = model_dir()
    proc = mmops(
        "--model", str(model), "--python", str(py), "--no-preflight", "--num-prompts", "3",
        "--question", "What colour?", "--question", "What shape?", "--max-tokens", "8",
        "--state-dir", str(state), "--json", "--served-model-name", "x", "--port", "9",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model_type"] == "qwen2_5_vl"  # from config.json
    assert [o["question"] for o in report["outputs"]] == [
        "What colour?",
        "What shape?",
        "What colour?",
    ]
    assert report["outputs"][1]["prompt"].endswith(
        "<|vision_start|><|image_pad|><|vision_end|>What shape?<|im_end|>\n<|im_start|>assistant\n"
    )
    # masked as the log is (a "token: value" shape), value by value: the JSON stays whole
    assert report["outputs"][0]["text"] == 'out 0 token: ***"efgh'
    assert report["throughput"] == {
        "requests": 3, "prompt_tokens": 264, "output_tokens": 12,
        "output_tokens_per_s": 24.0, "total_tokens_per_s": 552.0, "requests_per_s": 6.0,
    }  # fmt: skip
    assert set(report["timings"]) == {
        "preprocess_s", "import_s", "engine_start_s", "generate_s", "total_s"
    }  # fmt: skip
    assert report["sampling"]["max_tokens"] == 8 and report["sampling"]["top_k"] == -1
    assert report["engine_args"]["served_model_name"] == "x"
    assert "port" not in report["engine_args"]
    assert report["engine_args"]["limit_mm_per_prompt"] == {"image": 1, "video": 0}
    assert report["engine_args"]["mm_processor_kwargs"] == {
        "min_pixels": 784, "max_pixels": 1003520, "fps": 1
    }  # fmt: skip
    assert any("--port" in n for n in report["notes"])
    assert any("built-in sample red-circle.png" in n for n in report["notes"])
    run = Path(report["run_dir"])
    assert run.parent == state
    assert {p.name for p in run.iterdir() if not p.name.startswith(".")} == {
        "job.json", "preflight.json", "attempt-1.log", "result.json"
    }  # fmt: skip
    assert not (run / ".job-child.json").exists()  # the unmasked job file is gone
    seen = json.loads((run / ".job-child.json.seen").read_text())
    assert seen["argv"] == [
        "-u",
        str(REPO / "mmops" / "offline" / "child.py"),
        str(run / ".job-child.json"),
    ]
    assert seen["job"]["engine"]["model"] == str(model)
    assert seen["job"]["requests"] == [
        {"question": 0, "media": 0}, {"question": 1, "media": 0}, {"question": 0, "media": 0}
    ]  # fmt: skip
    log = (run / "attempt-1.log").read_text()
    assert "a vLLM log line" in log and f"{MARKER} result" in log
    assert json.loads((run / "result.json").read_text())["outputs"] == report["outputs"]


def test_the_text_report(tmp_path, model_dir):
    py = standin(tmp_path, ANSWER)
    proc = mmops(
        "--model", str(model_dir()), "--python", str(py), "--no-preflight",
        "--state-dir", str(tmp_path / "state"), "--verbose",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "a vLLM log line" in proc.stderr  # --verbose shows vLLM's output
    assert f"{MARKER}" not in proc.stderr  # but not the marker lines
    out = proc.stdout
    assert out.startswith("mmops offline: qwen2_5_vl on ")
    assert "(image, 4 prompts)" in out
    assert out.count("finish: length") == 4
    assert "[4] red-circle.png: What is the content of this image?" in out
    assert "timings: engine start 2.00 s, preprocessing 0.01 s, generation 0.50 s" in out
    assert "throughput: 16 output tokens in 0.50 s = 32.0 tokens/s" in out


def test_a_failing_child_shows_the_diagnosis_of_its_log(tmp_path, model_dir):
    log = LOGS / "max-model-len-rejected.log"
    body = (
        f"import sys\nprint('{MARKER} stage preprocess')\nprint('{MARKER} stage engine')\n"
        f"sys.stdout.write(open({str(log)!r}).read())\n"
        f'print(\'{MARKER} error \' + \'{{"stage": "engine", "kind": "exception", '
        f'"type": "ValidationError", "message": "max_model_len"}}\')\nraise SystemExit(1)\n'
    )
    py = standin(tmp_path, body)
    proc = mmops(
        "--model", str(model_dir()), "--python", str(py), "--no-preflight",
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "vLLM failed (exit code 1) during engine: ValidationError: max_model_len" in proc.stderr
    assert "(mmops diagnose " in proc.stderr and "attempt-1.log):" in proc.stderr
    assert "max_model_len" in proc.stdout.lower()  # the diagnose report names the cause
    assert "Traceback" not in proc.stderr


def test_an_input_error_in_the_child_is_one_line(tmp_path, model_dir):
    body = (
        f"print('{MARKER} stage preprocess')\n"
        f'print(\'{MARKER} error \' + \'{{"stage": "preprocess", "kind": "input", '
        f'"message": "--image /x.png: not an image PIL can read"}}\')\nraise SystemExit(2)\n'
    )
    py = standin(tmp_path, body)
    proc = mmops(
        "--model", str(model_dir()), "--python", str(py), "--no-preflight",
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "mmops offline: error: --image /x.png: not an image PIL can read"
    )


# A stand-in that sleeps like an engine loading weights, with a child of its own (EngineCore).
SLEEPER = f"""
import subprocess, sys, time
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(sys.argv[3] + ".pids", "w").write("%d %d" % (__import__("os").getpid(), engine.pid))
print("{MARKER} stage engine", flush=True)
time.sleep(300)
"""


def _start_sleeper(tmp_path: Path, model: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    py = standin(tmp_path, SLEEPER)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmops", "offline", "--model", str(model), "--python", str(py),
         "--no-preflight", "--state-dir", str(state), "--stop-timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    pids: list[int] = []
    while time.monotonic() < deadline and not pids:
        found = list(state.rglob("*.pids")) if state.exists() else []
        if found and found[0].read_text().strip():
            pids = [int(p) for p in found[0].read_text().split()]
        time.sleep(0.05)
    assert pids, "the stand-in never started"
    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert {p.pid for p in procs} >= set(pids)
    return proc, procs


def test_sigterm_to_mmops_leaves_no_process_behind(tmp_path, model_dir):
    proc, procs = _start_sleeper(tmp_path, model_dir())
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    assert wait_gone(procs) == []


def test_sigkill_to_mmops_leaves_no_process_behind(tmp_path, model_dir):
    proc, procs = _start_sleeper(tmp_path, model_dir())
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert wait_gone(procs, timeout=20) == []


HANG_AFTER_RESULT = f"""
import json, signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # only SIGTERM, the ladder's second step, stops it
print("{MARKER} result " + json.dumps({{"outputs": []}}), flush=True)
time.sleep(300)
"""


def test_a_child_that_hangs_after_its_result_is_stopped_and_the_result_kept(tmp_path, monkeypatch):
    from mmops.offline import runner

    monkeypatch.setattr(runner, "EXIT_GRACE_S", 0.5)
    py = standin(tmp_path, HANG_AFTER_RESULT)
    job = tmp_path / "job.json"
    job.write_text("{}")
    t0 = time.monotonic()
    out = runner.run_child(str(py), job, dict(os.environ), tmp_path / "child.log", [], stop_s=1.0)
    assert out.result == {"outputs": []}
    assert out.exit_code == 128 + signal.SIGTERM
    assert out.signal is None  # nobody asked mmops to stop
    assert time.monotonic() - t0 < 15


def test_a_failure_as_json(tmp_path, model_dir):
    body = f"print('{MARKER} stage engine')\nraise SystemExit(3)\n"
    py = standin(tmp_path, body)
    proc = mmops(
        "--model", str(model_dir()), "--python", str(py), "--no-preflight", "--json",
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["ok"] is False
    assert out["error"] == "vLLM failed (exit code 3) during engine"
    assert out["log"].endswith("attempt-1.log") and Path(out["log"]).is_file()
