"""Load YAML keeping line numbers, so a bad profile or suite names file, line and key.

PyYAML's composer gives nodes with marks; we validate the node tree against a small schema and
only then build plain Python values. Errors carry ``file:line`` and the dotted key path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import yaml

from mmops.errors import MmopsError

S = TypeVar("S", bound=str)  # a Literal of allowed words, so choice() returns the narrow type


@dataclass(frozen=True)
class Located:
    """A YAML node with where it came from, for error messages."""

    node: yaml.Node
    path: str  # dotted key path, e.g. "serve.max-model-len"
    file: Path
    key_node: yaml.Node | None = None  # the mapping key, whose line is where the user looks

    @property
    def line(self) -> int:
        return (self.key_node or self.node).start_mark.line + 1

    @property
    def where(self) -> str:
        """``file:line: key 'a.b'`` (``file:line`` at the top), the head of every message."""
        key = f" key '{self.path}'" if self.path else ""
        return f"{self.file}:{self.line}:{key}"

    def error(self, message: str, cls: type[MmopsError] = MmopsError) -> MmopsError:
        return cls(f"{self.where} {message}")


def compose_file(path: Path, cls: type[MmopsError] = MmopsError) -> Located:
    """Parse ``path`` into a node tree; any read or syntax error becomes a one-line ``cls``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise cls(f"{path}: no such file") from None
    except IsADirectoryError:
        raise cls(f"{path}: is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise cls(f"{path}: cannot read: {exc}") from None
    return compose_text(text, path, cls)


def compose_text(text: str, source: Path, cls: type[MmopsError] = MmopsError) -> Located:
    """Parse YAML already read (a packaged resource); ``source`` names it in errors."""
    import yaml
    try:
        try:
            # libyaml's parser when PyYAML has it: the same nodes and marks, 20x faster (the
            # signature table is read on every `mmops diagnose`) ...
            node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            # ... but the pure-Python parser words errors better: let it say what is wrong.
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise cls(f"{source}{line}: YAML syntax error: {problem}") from None
    if node is None:
        raise cls(f"{source}: empty file, expected a YAML mapping")
    return Located(node, "", source)


def to_python(loc: Located) -> Any:
    """Plain Python value of a validated node (SafeLoader semantics)."""
    import yaml
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(loc.node, deep=True)
    finally:
        loader.dispose()


def mapping_items(
    loc: Located, cls: type[MmopsError] = MmopsError, allowed: Sequence[str] | None = None
) -> list[tuple[str, Located]]:
    """The entries of a mapping, in file order. A key given twice is an error (YAML would keep
    the last silently), and so is a key not in ``allowed`` when that is given. A key left
    empty (``defaults:`` with nothing under it) is an empty mapping."""
    import yaml
    if is_null(loc):
        return []
    if not isinstance(loc.node, yaml.MappingNode):
        raise loc.error(f"expected a mapping, got {_kind(loc.node)}", cls)
    items: list[tuple[str, Located]] = []
    seen: dict[str, Located] = {}
    for knode, vnode in loc.node.value:
        key = str(knode.value)
        path = f"{loc.path}.{key}" if loc.path else key
        item = Located(vnode, path, loc.file, knode)
        if allowed is not None and key not in allowed:
            raise item.error(f"unknown key; valid keys: {', '.join(allowed)}", cls)
        if key in seen:
            raise item.error(f"is given twice (first at line {seen[key].line})", cls)
        seen[key] = item
        items.append((key, item))
    return items


def mapping(
    loc: Located, cls: type[MmopsError] = MmopsError, allowed: Sequence[str] | None = None
) -> dict[str, Located]:
    """``mapping_items`` as a dict, for looking keys up."""
    return dict(mapping_items(loc, cls, allowed))


def is_null(loc: Located) -> bool:
    """True for an empty value or ``null`` / ``~``."""
    import yaml
    return isinstance(loc.node, yaml.ScalarNode) and loc.node.tag == "tag:yaml.org,2002:null"


def sequence_items(loc: Located, cls: type[MmopsError] = MmopsError) -> list[Located]:
    import yaml
    if not isinstance(loc.node, yaml.SequenceNode):
        raise loc.error(f"expected a list, got {_kind(loc.node)}", cls)
    return [Located(n, f"{loc.path}[{i}]", loc.file) for i, n in enumerate(loc.node.value)]


def _kind(node: yaml.Node) -> str:
    import yaml
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return "nothing"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(node.value)


def scalar(loc: Located, types: tuple[type, ...], cls: type[MmopsError] = MmopsError) -> Any:
    """The node's value if it is a scalar of one of ``types`` (bool is never an int here)."""
    import yaml
    if not isinstance(loc.node, yaml.ScalarNode):
        raise loc.error(f"expected {_names(types)}, got {_kind(loc.node)}", cls)
    value = to_python(loc)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise loc.error(f"expected {_names(types)}, got {value!r}", cls)
    return value


def choice(loc: Located, choices: Sequence[S], cls: type[MmopsError] = MmopsError) -> S:
    """The node's string if it is one of ``choices``."""
    value = scalar(loc, (str,), cls)
    if value not in choices:
        raise loc.error(f"must be one of {', '.join(choices)}; got {value!r}", cls)
    return value


def _names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in types)
