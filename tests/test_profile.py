from pathlib import Path

import pytest

from mmops.errors import ProfileError
from mmops.launch.profile import PROFILE_DIR, load_profile


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_shipped_profiles_load():
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
    assert {
        "qwen2.5-vl-7b",
        "qwen2.5-vl-72b",
        "internvl2.5-8b",
        "internvl2.5-78b",
        "tiny-cpu",
    } <= set(names)
    for n in names:
        prof = load_profile(n)
        assert prof.model and prof.serve
    assert load_profile("internvl2.5-78b").serve["tensor-parallel-size"] == 8
    assert load_profile("internvl2.5-8b").serve["trust-remote-code"] is True


def test_unknown_key_names_file_line_and_key(tmp_path):
    p = write(tmp_path, "name: x\nmodel: /m\nsevre:\n  port: 1\n")
    with pytest.raises(ProfileError) as e:
        load_profile(p)
    msg = str(e.value)
    assert f"{p}:3" in msg and "'sevre'" in msg and "valid keys" in msg
    assert "\n" not in msg


def test_wrong_type_names_key(tmp_path):
    p = write(tmp_path, "model: /m\nserve:\n  max-model-len: lots\n")
    with pytest.raises(
        ProfileError, match=r"p.yaml:3.*--max-model-len expects an integer, got 'lots'"
    ):
        load_profile(p)


def test_typo_in_vllm_flag_is_caught(tmp_path):
    p = write(tmp_path, "model: /m\nserve:\n  max-model-length: 4096\n")
    with pytest.raises(
        ProfileError, match=r"p.yaml:3: key 'serve.max-model-length'.*did you mean 'max-model-len'"
    ):
        load_profile(p)


def test_yaml_syntax_error_has_line(tmp_path):
    p = write(tmp_path, "model: /m\nserve: [1, 2\n")
    with pytest.raises(ProfileError, match=r"p.yaml:\d+: YAML syntax error"):
        load_profile(p)


def test_bad_device_kind_and_restart_values(tmp_path):
    p = write(tmp_path, "device: {kind: tpu}\n")
    with pytest.raises(ProfileError, match="must be one of auto, ascend, nvidia, cpu"):
        load_profile(p)
    p = write(tmp_path, "restart: {max_attempts: -1}\n")
    with pytest.raises(ProfileError, match="must not be negative"):
        load_profile(p)
    p = write(tmp_path, "restart: {max_attempts: 2.5}\n")
    with pytest.raises(ProfileError, match="expected an integer"):
        load_profile(p)


def test_missing_profile_lists_known_names():
    with pytest.raises(ProfileError, match="known: .*qwen2.5-vl-7b"):
        load_profile("no-such-profile")


def test_env_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("MMOPS_MODELS", "/data/m")
    p = write(tmp_path, "model: ${MMOPS_MODELS:-/models}/X\nenv: {A: 1, B: true}\n")
    prof = load_profile(p)
    assert prof.model == "/data/m/X"
    assert prof.env == {"A": "1", "B": "true"}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "model: /m\nserve:\n  max-model-len: lots\n",
            ":3: key 'serve.max-model-len': --max-model-len",
        ),
        ("model: /m\ndevice:\n  count: 1\n  kind: tpu\n", ":4: key 'device.kind' must be one of"),
        ("model: /m\ndevice: {colour: red}\n", ":2: key 'device.colour' unknown key; valid keys"),
        ("readiness:\n  interval_s: -1\n", ":2: key 'readiness.interval_s' must not be negative"),
        ("model: /m\nmodel: /n\n", ":2: key 'model' is given twice (first at line 1)"),
        ("env: [A, B]\n", ":1: key 'env' expected a mapping, got a list"),
        ("model: /m\nserve:\n", None),  # an empty section is an empty mapping
    ],
)
def test_errors_name_file_line_and_key(tmp_path, text, where):
    p = write(tmp_path, text)
    if where is None:
        assert load_profile(p).serve == {}
        return
    with pytest.raises(ProfileError) as e:
        load_profile(p)
    assert str(e.value).startswith(f"{p}{where}"), str(e.value)
