"""mmops.diagnose.codes: Ascend error codes found in REAL log lines of tests/fixtures/logs/corpus/.

Every line here is read from a corpus file by a substring of it, never typed in, so the tests
follow the logs users actually send.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.diagnose.codes import (
    CodeTableError,
    explain,
    explain_with_line,
    find_codes,
    load_codes,
    load_table,
)

CORPUS = Path(__file__).parent / "fixtures" / "logs" / "corpus"
PACKAGED = Path(__file__).parent.parent / "mmops" / "diagnose" / "ascend_codes.yaml"


def _lines(name: str) -> list[str]:
    return (CORPUS / name).read_text(encoding="utf-8", errors="replace").splitlines()


def _line(name: str, needle: str) -> str:
    """The first line of corpus file ``name`` that contains ``needle``."""
    for line in _lines(name):
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not in {name}")


# (corpus file, a substring that picks the real line, family, code, exact)
REAL = [
    ("001-npu-507001-expandable-fixed.log", "synchronize stream failed, runtime result = 507001",
     "acl.rt.507xxx", "507001", True),
    ("004-npu-runtime-oom-207001-el0004.log", "alloc device memory failed, runtime result = 207001",
     "acl.rt.207xxx", "207001", True),
    ("014-npu-hccl-init-pp-310p.log", "HCCL function error: hcclCommInitRootInfoConfig",
     "hccl.result", "1", True),
    ("015-npu-hccl-300i-tp2-v0.log", "rtSetStreamFailureMode failed, runtime result = 207000",
     "acl.rt.207xxx", "207000", True),
    ("019-npu-graph-capture-207008-el0009.log", "AclmdlRICaptureBegin(capture_stream_, capture_mode)",
     "acl.rt.207xxx", "207008", True),
    ("019-npu-graph-capture-207008-el0009.log", "Insufficient_Stream_Resources(EL0009)",
     "cann.errmsg.EL", "EL0009", True),
    ("020-npu-graph-capture-207005-stream-wait.log", "stream wait event failed, runtime result",
     "acl.rt.207xxx", "207005", True),
    ("046-npu-507035-runtime-enginedead.log", "ACL stream synchronize failed, error code:",
     "acl.rt.507xxx", "507035", True),
    ("047-npu-507034-vector-core-timeout-500.log", "NPU warning, error code is 507034",
     "acl.rt.507xxx", "507034", True),
    ("052-npu-310p-507013-sdma-gpustack.log", "NPU warning, error code is 507013",
     "acl.rt.507xxx", "507013", True),
    # Internal E?9999 codes are not listed as exact codes: the family's meaning is the answer.
    ("021-npu-graph-capture-sqcq-looks-like-oom.log", "[SqCqManage]Alloc sq cq fail",
     "cann.errmsg.EE", "EE9999", False),
    ("001-npu-507001-expandable-fixed.log", "EI9999: [PID: 1162]", "cann.errmsg.EI", "EI9999", False),
    ("053-npu-310p-507013-qwen3-startup.log", "EH9999: Inner Error!", "cann.errmsg.EH", "EH9999", False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "needle", "family", "code", "exact"), REAL)
def test_real_line_first_hit(name: str, needle: str, family: str, code: str, exact: bool) -> None:
    hit = find_codes(_line(name, needle))[0]
    assert (hit.family, hit.code, hit.exact) == (family, code, exact)
    assert hit.meaning and hit.fix and hit.source and hit.component


def test_exact_code_comes_before_the_block_prefix_on_the_same_line() -> None:
    # corpus 015: "EH9999: [PID: ...] rtSetStreamFailureMode failed, runtime result = 207000."
    line = _line("015-npu-hccl-300i-tp2-v0.log", "runtime result = 207000")
    assert [(h.code, h.exact) for h in find_codes(line)] == [("207000", True), ("EH9999", False)]
    assert "not supported" in find_codes(line)[0].meaning


def test_unseen_code_of_known_family_gets_family_meaning() -> None:
    # Two REAL lines of the EE/EI families carry internal codes (EE9999, EI9999) that the table
    # does not list: they must still read as runtime / HCCL errors, not unknown.
    ee = find_codes(_line("021-npu-graph-capture-sqcq-looks-like-oom.log", "Alloc sq cq fail"))[0]
    assert not ee.exact and "runtime" in ee.component.lower()
    # A numeric code: the real corpus 046 line with its code changed ONLY to prove the fallback
    # (507099 is not in the table; 507xxx is the runtime's device-execution family).
    real = _line("046-npu-507035-runtime-enginedead.log", "error code:507035")
    hit = find_codes(real.replace("507035", "507099"))[0]
    assert (hit.family, hit.code, hit.exact) == ("acl.rt.507xxx", "507099", False)
    assert hit.meaning == load_codes().families[0].meaning


def test_bare_numbers_and_internal_hex_codes_are_not_codes() -> None:
    # "max seq len (100000)" is a length, not ACL_ERROR_INVALID_PARAM.
    assert find_codes(_line("007-gpu-v1-kv-too-small-wrapped.log", "(100000)")) == []
    # runtime-internal "error=117571619" has no public table.
    assert (
        find_codes(_line("020-npu-graph-capture-207005-stream-wait.log", "error=117571619")) == []
    )


@pytest.mark.parametrize(
    ("name", "code", "needle"),
    [
        ("001-npu-507001-expandable-fixed.log", "507001", "runtime result = 507001"),
        ("004-npu-runtime-oom-207001-el0004.log", "207001", "runtime result = 207001"),
        ("015-npu-hccl-300i-tp2-v0.log", "207000", "runtime result = 207000"),
        ("019-npu-graph-capture-207008-el0009.log", "207008", "error code is 207008"),
        ("021-npu-graph-capture-sqcq-looks-like-oom.log", "207005", "error code is 207005"),
        ("053-npu-310p-507013-qwen3-startup.log", "507013", "runtime result = 507013"),
    ],
)
def test_explain_whole_log(name: str, code: str, needle: str) -> None:
    evidence = explain_with_line(_lines(name))
    assert evidence is not None
    assert evidence.hit.code == code and evidence.hit.exact
    assert needle in evidence.line
    assert _lines(name)[evidence.index] == evidence.line
    assert explain(_lines(name)) == evidence.hit


def test_explain_prefers_exact_code_over_earlier_block_prefix() -> None:
    # corpus 001: EI9999 (family only) is printed before the exact 507001.
    lines = _lines("001-npu-507001-expandable-fixed.log")
    first_ei = next(i for i, line in enumerate(lines) if "EI9999" in line)
    evidence = explain_with_line(lines)
    assert evidence is not None and evidence.index > first_ei


@pytest.mark.parametrize(
    "name", ["005-consequence-only-enginedead-500s.log", "017-gpu-nccl-watchdog-ray.log"]
)
def test_no_code_in_logs_without_ascend_codes(name: str) -> None:
    assert explain(_lines(name)) is None


def test_packaged_table_is_sourced() -> None:
    table = load_codes()
    assert table is load_codes()  # parsed once
    ids = [f.id for f in table.families]
    assert len(ids) == len(set(ids))
    for fam in table.families:
        assert fam.source and fam.fix and fam.meaning
        assert all(e.source and e.fix and e.meaning for e in fam.codes.values())
    assert load_table(PACKAGED).families == table.families


# ----------------------------------------------------------------------------- broken tables


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """A copy of the packaged table with ``old`` replaced; returns it and the 1-based line."""
    text = PACKAGED.read_text(encoding="utf-8")
    assert text.count(old) >= 1
    at = text.index(old)
    path = tmp_path / "ascend_codes.yaml"
    path.write_text(text[:at] + new + text[at + len(old) :], encoding="utf-8")
    return path, text[:at].count("\n") + 1


def test_bad_regex_names_file_line_and_key(tmp_path: Path) -> None:
    path, line = _broken(tmp_path, "match: '507\\d{3}'", "match: '507(\\d{3}'")
    with pytest.raises(CodeTableError) as err:
        load_table(path)
    assert str(err.value).startswith(f"{path}:{line}: key 'families[0].match'")
    assert "bad match regex" in str(err.value)


def test_code_outside_its_family_is_an_error(tmp_path: Path) -> None:
    path, line = _broken(tmp_path, 'code: "507001"', 'code: "207001"')
    with pytest.raises(CodeTableError, match=rf"^{path}:{line}: .*not a code of this family"):
        load_table(path)


def test_unknown_key_and_unknown_context(tmp_path: Path) -> None:
    path, line = _broken(tmp_path, "    context: hccl\n", "    context: nccl\n")
    with pytest.raises(CodeTableError, match=rf"^{path}:{line}: key 'families\[\d+\]\.context'"):
        load_table(path)
    path, line = _broken(
        tmp_path, "    component: HCCL (collective", "    componnt: HCCL (collective"
    )
    with pytest.raises(CodeTableError, match=rf"^{path}:{line}: .*unknown key"):
        load_table(path)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path, line = _broken(tmp_path, "families:\n", "families:\n  - id: [unclosed\n")
    with pytest.raises(CodeTableError, match=rf"^{path}:\d+: YAML syntax error"):
        load_table(path)
