"""mmops.yamlcheck: the one YAML validator; every error names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.errors import MmopsError, SuiteError
from mmops.yamlcheck import (
    choice,
    compose_file,
    compose_text,
    mapping,
    scalar,
    sequence_items,
    to_python,
)

SRC = Path("pkg/table.yaml")


def test_compose_text_names_the_source_in_syntax_errors():
    with pytest.raises(SuiteError, match=r"^pkg/table.yaml:2: YAML syntax error: "):
        compose_text("a: 1\nb: c: d\n", SRC, SuiteError)
    with pytest.raises(MmopsError, match=r"^pkg/table.yaml: empty file"):
        compose_text("", SRC)


def test_compose_file_read_errors(tmp_path):
    with pytest.raises(MmopsError, match="no such file"):
        compose_file(tmp_path / "nope.yaml")
    with pytest.raises(MmopsError, match="is a directory"):
        compose_file(tmp_path)


def test_paths_and_lines_of_nested_values():
    root = compose_text("top:\n  items:\n    - {id: a}\n    - {id: 7}\n", SRC)
    items = sequence_items(mapping(mapping(root)["top"])["items"])
    second = mapping(items[1])["id"]
    assert (second.path, second.line) == ("top.items[1].id", 4)
    with pytest.raises(MmopsError) as err:
        scalar(second, (str,))
    assert str(err.value) == "pkg/table.yaml:4: key 'top.items[1].id' expected a string, got 7"
    assert to_python(items[0]) == {"id": "a"}


def test_unknown_and_repeated_keys():
    root = compose_text("a: 1\nb: 2\na: 3\n", SRC)
    with pytest.raises(MmopsError, match=r":2: key 'b' unknown key; valid keys: a$"):
        mapping(root, allowed=("a",))
    with pytest.raises(MmopsError, match=r":3: key 'a' is given twice \(first at line 1\)"):
        mapping(root)


def test_empty_value_is_an_empty_mapping_and_bool_is_not_an_int():
    root = mapping(compose_text("a:\nb: true\nc: z\n", SRC))
    assert mapping(root["a"]) == {}
    with pytest.raises(MmopsError, match="expected an integer, got True"):
        scalar(root["b"], (int,))
    with pytest.raises(MmopsError, match=r":3: key 'c' must be one of x, y; got 'z'$"):
        choice(root["c"], ("x", "y"))
    with pytest.raises(MmopsError, match=r":1: key 'a' expected a list, got nothing$"):
        sequence_items(root["a"])
