"""mmops.probe.sse: SSE events cut anywhere by the network still come out whole."""

from __future__ import annotations

from mmops.probe.sse import SSEParser

STREAM = (
    b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    b": ping\n\n"
    b'data: {"choices":[{"delta":{"content":"h\xc3\xa9"}}]}\n\n'
    b"data: [DONE]\n\n"
)
EVENTS = [
    '{"choices":[{"delta":{"role":"assistant","content":""}}]}',
    '{"choices":[{"delta":{"content":"hé"}}]}',
    "[DONE]",
]


def test_whole_stream_in_one_read():
    assert SSEParser().feed(STREAM) == EVENTS


def test_every_split_point_gives_the_same_events():
    # Includes splits inside the two-byte UTF-8 'é' and inside the blank-line separator.
    for cut in range(1, len(STREAM)):
        p = SSEParser()
        assert p.feed(STREAM[:cut]) + p.feed(STREAM[cut:]) == EVENTS, cut


def test_byte_by_byte():
    p = SSEParser()
    out = []
    for i in range(len(STREAM)):
        out += p.feed(STREAM[i : i + 1])
    assert out == EVENTS


def test_crlf_and_multiline_data_and_no_space():
    p = SSEParser()
    assert p.feed(b"data:a\r\ndata: b\r\n\r\nevent: x\r\ndata: c\r\n\r\n") == ["a\nb", "c"]


def test_flush_keeps_a_last_event_without_blank_line():
    p = SSEParser()
    assert p.feed(b'data: {"x":1}\n\ndata: [DONE]\n') == ['{"x":1}']
    assert p.flush() == ["[DONE]"]
    assert p.flush() == []


def test_flush_of_a_cut_event_returns_its_partial_data():
    p = SSEParser()
    p.feed(b'data: {"id": "cu')
    assert p.flush() == ['{"id": "cu']  # the caller's json.loads then reports it malformed


def test_feed_bytes_gives_undecoded_payloads():
    p = SSEParser()
    assert p.feed_bytes(STREAM) == [e.encode() for e in EVENTS]


def test_crlf_and_cr_split_at_every_point():
    # A CR at the end of one read may be half of a CRLF: the parser waits for the next byte.
    for sep in (b"\r\n", b"\r"):
        stream = STREAM.replace(b"\n", sep)
        for cut in range(1, len(stream)):
            p = SSEParser()
            assert p.feed(stream[:cut]) + p.feed(stream[cut:]) + p.flush() == EVENTS, (sep, cut)


def test_flush_after_a_trailing_cr():
    p = SSEParser()
    assert p.feed(b"data: a\r\n\r\ndata: [DONE]\r") == ["a"]
    assert p.flush() == ["[DONE]"]
