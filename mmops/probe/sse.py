"""Incremental parser for the Server-Sent Events stream vLLM sends for ``"stream": true``.

vLLM writes one ``data: {json}\\n\\n`` event per chunk and ends with ``data: [DONE]\\n\\n``.
Network reads split events anywhere, so bytes are buffered until a blank line closes an event
(WHATWG HTML, "event stream interpretation": lines end in LF, CR or CRLF; lines starting with
``:`` are comments; multi-line ``data:`` fields are joined with LF).

The parser works on bytes and costs next to nothing per event in the common case: a read
without CR is split on ``b"\\n\\n"`` and a one-line ``data: `` event is sliced, never decoded
(``json.loads`` takes the UTF-8 bytes as they are). CR and CRLF line ends are rewritten to LF
first, only once a CR has been seen. Splitting bytes is safe for UTF-8: no byte of a multi-byte
character is ``\\n`` or ``\\r``.
"""

from __future__ import annotations

DONE = "[DONE]"
DONE_BYTES = b"[DONE]"
_DATA = b"data: "


class SSEParser:
    """Feed raw bytes, get back the ``data`` payload of each complete event."""

    __slots__ = ("_buffer", "_cr_tail", "_seen_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._cr_tail = b""  # a CR that ended the last read: half of a CRLF, or a line end
        self._seen_cr = False

    def feed_bytes(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the data of the events they completed, as UTF-8 bytes."""
        if self._seen_cr or b"\r" in chunk:
            chunk = self._normalize(chunk)
        buf = self._buffer + chunk if self._buffer else chunk
        if b"\n\n" not in buf:
            self._buffer = buf
            return []
        *blocks, self._buffer = buf.split(b"\n\n")
        out: list[bytes] = []
        for block in blocks:
            if block.startswith(_DATA) and b"\n" not in block:
                out.append(block[6:])  # the one shape vLLM sends
            elif block:
                data = _event_data(block)
                if data is not None:
                    out.append(data)
        return out

    def feed(self, chunk: bytes) -> list[str]:
        """Like :meth:`feed_bytes`, with each payload decoded (invalid UTF-8 replaced)."""
        return [d.decode("utf-8", "replace") for d in self.feed_bytes(chunk)]

    def flush_bytes(self) -> list[bytes]:
        """At end of stream: the data of a last event that lacked its closing blank line.

        The spec discards such an event; like `vllm bench serve` we keep it, so a server that
        ends with ``data: [DONE]\\n`` is not reported as cut. The caller still checks the JSON.
        """
        block = (self._buffer + self._cr_tail.replace(b"\r", b"\n")).strip(b"\r\n")
        self._buffer = self._cr_tail = b""
        data = _event_data(block) if block else None
        return [data] if data is not None else []

    def flush(self) -> list[str]:
        """Like :meth:`flush_bytes`, decoded."""
        return [d.decode("utf-8", "replace") for d in self.flush_bytes()]

    def _normalize(self, chunk: bytes) -> bytes:
        """CRLF and CR line ends as LF; a CR at the very end waits for the next read."""
        self._seen_cr = True
        chunk = self._cr_tail + chunk
        if chunk.endswith(b"\r"):
            chunk, self._cr_tail = chunk[:-1], b"\r"
        else:
            self._cr_tail = b""
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _event_data(block: bytes) -> bytes | None:
    lines = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None
