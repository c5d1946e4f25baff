"""Mask secrets in argv, environment and log lines before mmops prints or records them.

Two mechanisms, both needed: names (``--api-key``, ``HF_TOKEN``, ``*_API_KEY``) say which argv
and env values are secret; and a Redactor that knows those values replaces them wherever
they reappear, e.g. in vLLM's own ``non-default args: {... 'api_key': ...}`` start-up line.
The child process always gets the real values; only what mmops shows or writes is masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mmops.launch.flags import SECRET_FLAGS, canonical

MASK = "***"
# Env names that carry credentials: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, OPENAI_API_KEY, DB_PASSWORD,
# ..._AUTH. Not TOKENIZERS_PARALLELISM or MAX_TOKENS: their values ("false", "512") would
# otherwise be masked wherever they appear in a log.
_SECRET_ENV = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|TOKEN(?!IZER|S(?:$|_))", re.I)
# Flags whose value is a secret even though mmops does not plan with them.
_EXTRA_SECRET_FLAGS = frozenset({"hf-token", "token"})
# Shapes of secrets in free text, for values mmops was never told about.
_TEXT_PATTERNS = (
    # api_key='x', "api_key": ["x"], api-key=x, token: x, password = x
    re.compile(
        r"(?P<key>(?:api[_-]?key|hf[_-]?token|access[_-]?token|token|password|secret)"
        r"['\"]?\s*[:=]\s*\[?\s*['\"]?)(?P<val>[^'\"\s,\]}]{4,})",
        re.I,
    ),
    # (the value stops at a quote or backtick that closes around the flag, not in the value)
    re.compile(r"(?P<key>--(?:api-key|api_key|hf-token|hf_token)[ =])(?P<val>[^\s'\"`]+)"),
    re.compile(r"(?P<key>Bearer\s+)(?P<val>[A-Za-z0-9._~+/=-]{4,})"),
    re.compile(r"(?P<key>)(?P<val>\bhf_[A-Za-z0-9]{20,})"),
    # OpenAI-style keys: sk-..., sk-proj-...
    re.compile(r"(?P<key>)(?P<val>(?<![A-Za-z0-9_-])sk-[A-Za-z0-9][A-Za-z0-9_-]{15,})"),
    # Credentials in a URL: scheme://user:password@host, or a long token as the user part.
    re.compile(
        r"(?P<key>\b[A-Za-z][A-Za-z0-9+.-]*://)"
        r"(?P<val>[^\s/?#@:'\"]+:[^\s/?#@'\"]+|[^\s/?#@:'\"]{16,})(?=@)"
    ),
)

# Where the patterns above could match: a key word (any case we have seen) followed by its
# value, or a token shape that is a secret by itself.
_KEY_HINTS = (b"key", b"KEY", b"Key", b"oken", b"OKEN", b"assword", b"ASSWORD", b"ecret", b"ECRET")
_VALUE_NEXT = re.compile(rb"['\"]?\s*[:=]")
_VALUE_HINTS = (b"Bearer", b"hf_", b"--api", b"--hf")
# Hints that need a look at what follows before the line is worth a full pass: "sk-" is in
# "task-" and "disk-", and "://" in every URL; only a key or a user part makes them secret.
_CHECKED_HINTS = (
    (b"sk-", re.compile(rb"sk-[A-Za-z0-9][A-Za-z0-9_-]{15,}")),
    (b"://", re.compile(rb"://[^\s/?#@]+@")),
)


def is_secret_env(name: str) -> bool:
    """Whether an environment variable's value must never be shown."""
    return bool(_SECRET_ENV.search(name))


def is_secret_flag(flag: str) -> bool:
    """Whether a vLLM flag (any spelling) takes a secret value."""
    name = canonical(flag.split("=", 1)[0])
    return name in SECRET_FLAGS or name in _EXTRA_SECRET_FLAGS


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of env with secret values masked."""
    return {k: (MASK if is_secret_env(k) and v else v) for k, v in env.items()}


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A copy of argv with the values of secret flags masked (``--api-key X``, ``--api-key=X``)."""
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if token.startswith("--") and is_secret_flag(token):
            if "=" in token:
                out.append(token.split("=", 1)[0] + "=" + MASK)
            else:
                out.append(token)
                hide_next = True
            continue
        out.append(token)
    return out


def secret_values(argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values present in argv and env, to hand to a Redactor."""
    found: list[str] = []
    for i, token in enumerate(argv):
        if token.startswith("--") and is_secret_flag(token):
            if "=" in token:
                found.append(token.split("=", 1)[1])
            elif i + 1 < len(argv):
                found.append(argv[i + 1])
    for k, v in (env or {}).items():
        if is_secret_env(k) and v:
            found.append(v)
    # Very short values ("1", "abc") would mask unrelated text; the patterns still catch them
    # in key=value form.
    return sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)


class Redactor:
    """Masks known secret values and secret-shaped text in lines and byte chunks."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]
        self._secrets_b = [s.encode() for s in self.secrets]

    def line(self, text: str) -> str:
        """One line (or any text) with secrets masked."""
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        for pat in _TEXT_PATTERNS:
            text = pat.sub(_mask_match, text)
        return text

    def chunk(self, data: bytes) -> bytes:
        """A block of complete lines as bytes; cheap when nothing secret-looking is present."""
        for s in self._secrets_b:
            if s in data:
                data = data.replace(s, MASK.encode())
        # "tokens/s" and "max_tokens=" carry a hint on every stats line: mask only the lines
        # where a key is really followed by its value (found with bytes.find, at C speed).
        spans: set[tuple[int, int]] = set()
        for hint in _KEY_HINTS:
            i = data.find(hint)
            while i >= 0:
                j = i + len(hint)
                if _VALUE_NEXT.match(data, j):
                    spans.add(_line_span(data, i))
                i = data.find(hint, j)
        for hint in _VALUE_HINTS:
            i = data.find(hint)
            while i >= 0:
                spans.add(_line_span(data, i))
                i = data.find(hint, i + len(hint))
        for hint, shape in _CHECKED_HINTS:
            i = data.find(hint)
            while i >= 0:
                if shape.match(data, i):
                    spans.add(_line_span(data, i))
                i = data.find(hint, i + len(hint))
        if not spans:
            return data
        out: list[bytes] = []
        pos = 0
        for start, end in sorted(spans):
            out.append(data[pos:start])
            line = data[start:end].decode("utf-8", "surrogateescape")
            out.append(self.line(line).encode("utf-8", "surrogateescape"))
            pos = end
        out.append(data[pos:])
        return b"".join(out)


def mask_json(value: Any, redactor: Redactor) -> Any:
    """A copy of a JSON value (plan, events, a doctor report) with secrets masked: the string
    under a secret name (``HF_TOKEN``, ``api_key``), secret flags in lists of strings (argv),
    and every string through ``redactor`` (known values, secret shapes)."""
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(v, str) and v and _secret_key(str(k)) else mask_json(v, redactor)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            return [redactor.line(v) for v in mask_argv(value)]
        return [mask_json(v, redactor) for v in value]
    if isinstance(value, str):
        return redactor.line(value)
    return value


def _secret_key(name: str) -> bool:
    return is_secret_env(name) or is_secret_flag("--" + name)


def _line_span(data: bytes, at: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    return start, len(data) if end < 0 else end


def _mask_match(m: re.Match[str]) -> str:
    if m.group("val") == MASK:
        return m.group(0)
    return m.group("key") + MASK
