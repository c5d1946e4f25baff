"""mmops.term: colour and escapes decided once (TTY, NO_COLOR, TERM=dumb)."""

from __future__ import annotations

import io

import pytest

from mmops import term


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


XTERM = {"TERM": "xterm-256color"}


def test_colour_on_an_ansi_terminal_only():
    assert term.use_color(Tty(), XTERM)
    assert not term.use_color(io.StringIO(), XTERM)  # a pipe or a file


@pytest.mark.parametrize("value", ["1", "0", "true", "anything"])
def test_no_color_set_turns_colour_off_whatever_its_value(value):
    assert not term.use_color(Tty(), {**XTERM, "NO_COLOR": value})


def test_empty_no_color_is_unset():
    # https://no-color.org: "when present and not an empty string".
    assert term.use_color(Tty(), {**XTERM, "NO_COLOR": ""})


def test_term_dumb_gets_neither_colour_nor_escapes():
    dumb = {"TERM": "dumb"}
    assert not term.use_color(Tty(), dumb)
    assert not term.supports_ansi(Tty(), dumb)
    assert term.supports_ansi(Tty(), {**XTERM, "NO_COLOR": "1"})  # NO_COLOR is about colour


def test_closed_or_bare_stream_is_not_a_terminal():
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError, as on a closed sys.stdout
    assert not term.is_terminal(closed)
    assert not term.use_color(closed, XTERM)
    assert not term.is_terminal(object())  # a stand-in without isatty


def test_use_color_reads_the_environment_by_default(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert term.use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not term.use_color(Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not term.use_color(Tty())


def test_paint():
    assert term.paint("ok", "32", True) == "\x1b[32mok\x1b[0m"
    assert term.paint("ok", "32", False) == "ok"


@pytest.mark.parametrize(
    ("env", "coloured"),
    [
        ({"TERM": "xterm"}, True),
        ({"TERM": "xterm", "NO_COLOR": "1"}, False),
        ({"TERM": "dumb"}, False),
    ],
)
def test_diagnose_renderer_follows_the_one_decision(tmp_path, monkeypatch, env, coloured):
    from mmops import cli

    log = tmp_path / "a.log"
    log.write_text("INFO:     Application startup complete.\n")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = Tty()
    monkeypatch.setattr("sys.stdout", out)
    cli.main(["diagnose", str(log)])
    assert ("\x1b[" in out.getvalue()) is coloured
