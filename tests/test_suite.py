"""mmops.probe.suite: shipped suites load; a bad suite is one line naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.errors import SuiteError
from mmops.probe.request import Sampling
from mmops.probe.suite import (
    REPO_CHECKS,
    Expect,
    available_suites,
    load_suite,
    resolve_suite,
)

SHIPPED = ["smoke", "tiny-cpu", "qwen2.5-vl", "internvl2.5"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suites_load_and_their_media_exist(name):
    suite = load_suite(name)
    assert suite.name == name and suite.cases
    for case in suite.cases:
        for turn in case.turns:
            for ref in (*turn.images, *([turn.video] if turn.video else [])):
                assert Path(ref).is_file() and Path(ref).stat().st_size < 200_000


def test_tiny_cpu_covers_every_modality_and_streaming():
    suite = load_suite("tiny-cpu")
    assert {c.modality for c in suite.cases} == {
        "text",
        "image",
        "multi-image",
        "video",
        "multi-turn",
    }
    assert any(c.stream for c in suite.cases)
    # Random weights: nothing may look at the answer's words.
    assert all(not c.expect.contains and c.expect.regex is None for c in suite.cases)


def test_names_and_paths_resolve(tmp_path, monkeypatch):
    assert resolve_suite("smoke") == REPO_CHECKS / "smoke.yaml"
    assert resolve_suite(str(REPO_CHECKS / "smoke.yaml")) == REPO_CHECKS / "smoke.yaml"
    own = tmp_path / "smoke.yaml"
    own.write_text("cases:\n  - {name: t, modality: text, prompt: hi}\n")
    monkeypatch.setenv("MMOPS_CHECKS_DIR", str(tmp_path))
    assert resolve_suite("smoke") == own  # MMOPS_CHECKS_DIR comes first
    assert set(SHIPPED) <= set(available_suites())
    with pytest.raises(SuiteError, match=r"^--suite nope: no suite of that name \(available: "):
        load_suite("nope")
    with pytest.raises(SuiteError, match=r"^nope\.yaml: no such suite file$"):
        load_suite("nope.yaml")


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "media").mkdir(exist_ok=True)
    (tmp_path / "media" / "a.png").write_bytes(
        (REPO_CHECKS / "media" / "red-circle.png").read_bytes()
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


CASE = "cases:\n  - name: c1\n    modality: text\n    prompt: hi\n"


C1 = "cases:\n  - name: c1\n"
TURNS = C1 + "    modality: multi-turn\n    turns:\n"

# (file text, the line the error names, the rest of the message after "key '...'" or the line).
BAD = [
    ("[1, 2", 1, "YAML syntax error: expected ',' or ']', but got '<stream end>'"),
    ("- 1\n", 1, "expected a mapping, got a list"),
    ("cases: []\n", 1, "key 'cases' must be a non-empty list of cases"),
    ("name: x\n", 1, "needs a non-empty 'cases' list"),
    (CASE + "extra: 1\n", 5, "key 'extra' unknown key; valid keys: name, description, defaults, "),
    (
        CASE + "    colour: red\n",
        5,
        "key 'cases[0].colour' unknown key; valid keys: name, modality",
    ),
    (CASE + "    name: c2\n", 5, "key 'cases[0].name' is given twice (first at line 2)"),
    ("cases:\n  - modality: text\n    prompt: hi\n", 2, "key 'cases[0]' has no 'name'"),
    (
        C1 + "    modality: audio\n    prompt: hi\n",
        3,
        "key 'cases[0].modality' must be one of text, image, multi-image, video, multi-turn; "
        "got 'audio'",
    ),
    (
        C1 + "    modality: image\n    prompt: hi\n",
        3,
        "key 'cases[0].modality' says 'image' but the case's content makes it 'text'",
    ),
    (
        C1 + "    modality: image\n    images: [media/missing.png]\n",
        4,
        "key 'cases[0].images[0]' media/missing.png: no such file (paths are relative to the "
        "suite file)",
    ),
    (
        C1 + "    modality: image\n    images: [media/a.png]\n    video: media/a.png\n",
        3,
        "key 'cases[0].modality' says 'image' but the case's content makes it 'video'",
    ),
    (
        CASE + "    sampling: {max_tokens: many}\n",
        5,
        "key 'cases[0].sampling.max_tokens' must be an integer, got 'many'",
    ),
    (
        CASE + "    sampling: {top_p: 1.5}\n",
        5,
        "key 'cases[0].sampling.top_p' must be in (0, 1], got 1.5",
    ),
    (
        CASE + "    sampling: {top_k: 0}\n",
        5,
        "key 'cases[0].sampling.top_k' must be -1 (off) or an integer >= 1, got 0",
    ),
    (
        CASE + "    sampling: {stop_token_ids: [1, x]}\n",
        5,
        "key 'cases[0].sampling.stop_token_ids' must be a list of integers",
    ),
    (
        CASE + "    sampling: {seed: 1}\n",
        5,
        "key 'cases[0].sampling.seed' unknown key; valid keys: max_tokens, temperature",
    ),
    (
        "defaults:\n  sampling:\n    temperature: -1\n" + CASE,
        3,
        "key 'defaults.sampling.temperature' must be >= 0, got -1",
    ),
    (
        CASE + "    expect: {status: 9000}\n",
        5,
        "key 'cases[0].expect.status' must be an HTTP status code, got 9000",
    ),
    (
        CASE + "    expect: {regex: '(unclosed'}\n",
        5,
        "key 'cases[0].expect.regex' is not a valid regular expression",
    ),
    (
        CASE + "    expect: {min_prompt_tokens: -1}\n",
        5,
        "key 'cases[0].expect.min_prompt_tokens' must be an integer >= 0, got -1",
    ),
    (
        CASE + "    expect: {max_ttft_s: 1}\n",
        5,
        "key 'cases[0].expect.max_ttft_s' needs 'stream: true'",
    ),
    (
        "defaults:\n  expect:\n    max_ttft_s: 1\n" + CASE,
        3,
        "key 'defaults.expect.max_ttft_s' needs 'stream: true'",
    ),
    (
        CASE + "    expect:\n      prompt_tokens_over: {case: later}\n",
        6,
        "key 'cases[0].expect.prompt_tokens_over.case' 'later' is not an earlier case",
    ),
    (
        CASE + "  - name: c1\n    modality: text\n    prompt: again\n",
        5,
        "key 'cases[1].name' is used by an earlier case; names must be unique",
    ),
    (
        C1 + "    modality: multi-turn\n    prompt: hi\n    turns: [{text: a}]\n",
        4,
        "key 'cases[0].prompt' cannot be combined with 'turns'",
    ),
    (
        TURNS + "      - {text: a}\n      - {role: assistant, text: b}\n",
        6,
        "key 'cases[0].turns[1].role' the last turn must be the user's",
    ),
    (
        TURNS + "      - {role: robot, text: a}\n",
        5,
        "key 'cases[0].turns[0].role' must be one of user, assistant, system; got 'robot'",
    ),
    (C1 + "    modality: text\n", 2, "key 'cases[0]' the request is empty"),
    (
        "defaults: {stream: maybe}\n" + CASE,
        1,
        "key 'defaults.stream' expected true/false, got 'maybe'",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_bad_suites_name_file_line_and_key(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    got = str(err.value)
    assert "\n" not in got
    assert got.startswith(f"{path}:{line}: {message}"), got


def test_empty_sections_are_allowed(tmp_path):
    path = write(tmp_path, "defaults:\n" + CASE + "    sampling:\n    expect:\n")
    case = load_suite(path).case("c1")
    assert case.sampling == Sampling() and case.expect == Expect()


def test_defaults_merge_and_case_overrides(tmp_path):
    path = write(tmp_path, (
        "defaults:\n  sampling: {max_tokens: 4, ignore_eos: true}\n  stream: true\n"
        "  expect: {finish_reason: length}\n"
        "cases:\n  - name: a\n    modality: image\n    prompt: x\n    images: media/a.png\n"
        "    sampling: {max_tokens: 2}\n    stream: false\n    expect: {non_empty: true}\n"
    ))  # fmt: skip
    case = load_suite(path).case("a")
    assert case.sampling.max_tokens == 2 and case.sampling.ignore_eos is True
    assert case.stream is False
    assert case.expect.finish_reason == ("length",) and case.expect.non_empty is True
    assert case.turns[0].images == (str(tmp_path / "media" / "a.png"),)
