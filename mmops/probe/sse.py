"""Incremental parser for the Server-Sent Events stream vLLM sends for ``"stream": true``.

vLLM writes one ``data: {json}\\n\\n`` event per chunk and ends with ``data: [DONE]\\n\\n``.
Network reads split events anywhere, so bytes are buffered until a blank line closes an event
(WHATWG HTML, "event stream interpretation": lines end in LF, CR or CRLF; lines starting with
``:`` are comments; multi-line ``data:`` fields are joined with LF).
"""

from __future__ import annotations

import codecs
import re

DONE = "[DONE]"
_EVENT_END = re.compile(r"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(r"\r\n|\n|\r")


class SSEParser:
    """Feed raw bytes, get back the ``data`` payload of each complete event."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""

    def feed(self, chunk: bytes) -> list[str]:
        """Add bytes; return the data strings of the events they completed (comments dropped)."""
        self._buffer += self._decoder.decode(chunk)
        events: list[str] = []
        while True:
            match = _EVENT_END.search(self._buffer)
            if match is None:
                break
            block, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
            data = _event_data(block)
            if data is not None:
                events.append(data)
        return events

    def flush(self) -> list[str]:
        """At end of stream: the data of a last event that lacked its closing blank line.

        The spec discards such an event; like `vllm bench serve` we keep it, so a server that
        ends with ``data: [DONE]\\n`` is not reported as cut. The caller still checks the JSON.
        """
        self._buffer += self._decoder.decode(b"", final=True)
        block, self._buffer = self._buffer.strip("\r\n"), ""
        data = _event_data(block) if block else None
        return [data] if data is not None else []


def _event_data(block: str) -> str | None:
    lines = []
    for line in _LINE_END.split(block):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            lines.append(value[1:] if value.startswith(" ") else value)
    return "\n".join(lines) if lines else None
