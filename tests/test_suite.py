"""mmops.probe.suite: shipped suites load; a bad suite is one line naming file, case and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.errors import SuiteError
from mmops.probe.suite import REPO_CHECKS, available_suites, load_suite, resolve_suite

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

BAD = [
    ("[1, 2", "not valid YAML: expected ',' or ']', but got '<stream end>' at line 1"),
    ("- 1\n", "must be a mapping with a 'cases' list"),
    ("cases: []\n", "key 'cases': must be a non-empty list of cases"),
    (CASE + "extra: 1\n", "key 'extra': unknown key (allowed: name, description, defaults, "),
    (CASE + "    colour: red\n", "case 'c1': key 'colour': unknown key (allowed: name, modality"),
    ("cases:\n  - modality: text\n    prompt: hi\n", "case '#1': key 'name': must be a word"),
    (
        C1 + "    modality: audio\n    prompt: hi\n",
        "case 'c1': key 'modality': must be one of text, image, multi-image, video, multi-turn, "
        "got 'audio'",
    ),
    (
        C1 + "    modality: image\n    prompt: hi\n",
        "case 'c1': key 'modality': says 'image' but the case's content makes it 'text'",
    ),
    (
        C1 + "    modality: image\n    images: [media/missing.png]\n",
        "case 'c1': key 'images[0]': media/missing.png: no such file (paths are relative to the "
        "suite file)",
    ),
    (
        C1 + "    modality: image\n    images: [media/a.png]\n    video: media/a.png\n",
        "case 'c1': key 'modality': says 'image' but the case's content makes it 'video'",
    ),
    (
        CASE + "    sampling: {max_tokens: many}\n",
        "case 'c1': key 'sampling.max_tokens': must be an integer, got 'many'",
    ),
    (CASE + "    sampling: {top_p: 1.5}\n", "key 'sampling.top_p': must be in (0, 1], got 1.5"),
    (
        CASE + "    sampling: {stop_token_ids: [1, x]}\n",
        "key 'sampling.stop_token_ids': must be a list of integers",
    ),
    (
        CASE + "    sampling: {seed: 1}\n",
        "key 'sampling.seed': unknown key (allowed: max_tokens, temperature",
    ),
    (
        CASE + "    expect: {status: 9000}\n",
        "case 'c1': key 'expect.status': must be an HTTP status code, got 9000",
    ),
    (
        CASE + "    expect: {regex: '(unclosed'}\n",
        "key 'expect.regex': is not a valid regular expression",
    ),
    (
        CASE + "    expect: {min_prompt_tokens: -1}\n",
        "key 'expect.min_prompt_tokens': must be an integer >= 0, got -1",
    ),
    (CASE + "    expect: {max_ttft_s: 1}\n", "key 'expect.max_ttft_s': needs 'stream: true'"),
    (
        CASE + "    expect: {prompt_tokens_over: {case: later}}\n",
        "case 'c1': key 'expect.prompt_tokens_over.case': 'later' is not an earlier case",
    ),
    (
        CASE + "  - name: c1\n    modality: text\n    prompt: again\n",
        "case 'c1': key 'name': is used by an earlier case; names must be unique",
    ),
    (
        C1 + "    modality: multi-turn\n    prompt: hi\n    turns: [{text: a}]\n",
        "case 'c1': key 'prompt': cannot be combined with 'turns'",
    ),
    (
        TURNS + "      - {text: a}\n      - {role: assistant, text: b}\n",
        "case 'c1': key 'turns[1].role': the last turn must be the user's",
    ),
    (
        TURNS + "      - {role: robot, text: a}\n",
        "case 'c1': key 'turns[0].role': must be one of user, assistant, system, got 'robot'",
    ),
    (C1 + "    modality: text\n", "case 'c1': key 'prompt': the request is empty"),
    (
        "defaults: {stream: maybe}\n" + CASE,
        "case 'c1': key 'stream': must be true or false, got 'maybe'",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_suites_name_file_case_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: ")
    assert message in line, line


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
