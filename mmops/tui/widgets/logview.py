"""The log view: a window onto a LogStore, never a widget holding every line (toolong's way).

Only the rows on screen are read from the store, so a 1 GB attempt log opens and scrolls; new
lines arrive as one refresh per batch (the supervisor batches ~50 ms), whatever the flood.
Lines a known failure signature matches are marked in the gutter (``!`` for a root cause,
``~`` for a consequence) and their meaning is shown under the view for the cursor line; warnings
and errors are coloured, and also marked ``W`` / ``E`` so they read with NO_COLOR.
"""

from __future__ import annotations

import bisect
import re
import time
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mmops.diagnose.table import LineMatch, match_line
from mmops.serve.logstore import LogStore

# What "warnings and errors only" keeps: vLLM's level headers, uvicorn's, tracebacks.
# Every branch holds a literal of 3+ bytes, so the store pre-filters with bytes.find.
WARN_OR_ERROR = re.compile(
    rb"\b(?:WARNING|WARN|ERROR|CRITICAL|FATAL)\b|Traceback \(most recent|\w+(?:Error|Exception):"
    rb"|error code is \d+"
)
# CANN reports errors as EH/EE/EI/EZ/EL codes without a level header. No 3-byte literal, so a
# separate pattern: in the alternation above it would turn off the pre-filter (20x slower).
CANN_ERROR = re.compile(rb"E[EHILZ]\d{4}:")
FILTER_STEP_LINES = 5_000  # lines scanned between two breaths of the first filter pass
_ERROR = re.compile(
    r"\b(?:ERROR|CRITICAL|FATAL)\b|Traceback \(most recent|\w+(?:Error|Exception):"
    r"|\bE[EHILZ]\d{4}:|error code is \d+"
)
_WARN = re.compile(r"\bWARN(?:ING)?\b")

STYLE_ERROR = Style(color="red")
STYLE_WARN = Style(color="yellow")
STYLE_SIG = Style(bold=True, color="magenta")
STYLE_CURSOR = Style(reverse=True)
STYLE_GUTTER = Style(dim=True)


class LogView(ScrollView, can_focus=True):
    """Rows of one attempt log; follow, search, filter, cursor."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "to_start", "top", show=False),
        Binding("end", "to_end", "end", show=False),
    ]

    follow: reactive[bool] = reactive(True)
    errors_only: reactive[bool] = reactive(False)

    class CursorMoved(Message):
        """The cursor is on another line: the panel under the view explains it."""

        def __init__(self, line_no: int | None, text: str, match: LineMatch | None) -> None:
            super().__init__()
            self.line_no = line_no
            self.text = text
            self.match = match

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.store: LogStore | None = None
        self.path: Path | None = None
        self.cursor = 0  # row in the (possibly filtered) view
        self._filtered: list[int] = []
        self._filter_ready = False
        self._matches: dict[int, LineMatch | None] = {}
        self.search_text: str = ""

    # ----------------------------------------------------------------- data

    def open(self, path: Path | None) -> None:
        """Show another log file (another attempt); follow from its end."""
        self.path = path
        self.store = LogStore(path) if path is not None else None
        self._matches.clear()
        self._filtered = []
        self._filter_ready = False
        self.cursor = 0
        self.follow = True
        self.refresh_store()
        if self.errors_only and self.store is not None:
            self.run_worker(
                lambda: self._filter_in_thread(0), thread=True, exclusive=True, group="filter"
            )

    def refresh_store(self) -> int:
        """Index what was appended; returns new lines. Cheap: one call per batch of lines."""
        store = self.store
        if store is None:
            self._resize()
            self.refresh()
            return 0
        generation = store.generation
        new = store.refresh()
        if store.generation != generation:  # truncated or rotated: start afresh
            self._matches.clear()
            self.cursor = 0
        if self._filter_on:
            self._filtered = self._filter()  # incremental: only what was appended is scanned
        self._resize()
        if self.follow:
            self.cursor = max(0, self.row_count - 1)
            self.scroll_end(animate=False, immediate=True)
        self.refresh()
        return new

    @property
    def row_count(self) -> int:
        if self.store is None:
            return 0
        return len(self._filtered) if self._filter_on else self.store.line_count

    def line_no(self, row: int) -> int:
        """Line number (0-based) in the file of a row of the view."""
        return self._filtered[row] if self._filter_on else row

    @property
    def _filter_on(self) -> bool:
        """The view shows the filtered rows (asked for, and the first pass is done)."""
        return self.errors_only and self._filter_ready

    def _match(self, line_no: int, text: str) -> LineMatch | None:
        if line_no not in self._matches:
            if len(self._matches) > 4096:
                self._matches.clear()
            m = match_line(text)
            self._matches[line_no] = m if m is not None and m.signature.role != "context" else None
        return self._matches[line_no]

    # ----------------------------------------------------------------- rendering

    def render_line(self, y: int) -> Strip:
        _, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.size.width
        if self.store is None or row >= self.row_count:
            return Strip.blank(width)
        n = self.line_no(row)
        # A progress bar rewrites its line with "\r": show what a terminal would.
        text = self.store.line(n).rsplit("\r", 1)[-1].expandtabs(4)
        m = self._match(n, text)
        if m is not None:
            mark, style = ("!" if m.signature.role == "cause" else "~"), STYLE_SIG
        elif _ERROR.search(text):
            mark, style = "E", STYLE_ERROR
        elif _WARN.search(text):
            mark, style = "W", STYLE_WARN
        else:
            mark, style = " ", Style()
        if row == self.cursor and self.has_focus:
            style = style + STYLE_CURSOR
        gutter = f"{n + 1:>7}{mark} "
        segments = [
            Segment(gutter, STYLE_GUTTER),
            Segment(text[: max(0, width - len(gutter))], style),
        ]
        return Strip(segments).adjust_cell_length(width)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.row_count)

    def watch_errors_only(self, old: bool, value: bool) -> None:
        if self.store is None or old == value:
            return
        if value:
            # The first pass reads the whole file (seconds on a 1 GB log): off the UI thread.
            self._filter_ready = False
            keep = self.cursor
            self.run_worker(
                lambda: self._filter_in_thread(keep), thread=True, exclusive=True, group="filter"
            )
            return
        # The cursor is a row of the filtered view: back to a line number of the file.
        rows = self._filtered if self._filter_ready else []
        if self._filter_ready:
            self.cursor = rows[self.cursor] if self.cursor < len(rows) else self.store.line_count
        self._filter_ready = False
        self._resize()
        self._show_cursor()

    def _filter_in_thread(self, keep: int) -> None:
        store = self.store
        if store is not None:
            # In steps, sleeping between them: `re` holds the GIL, and one pass over a big log
            # in one go would stall the screen for as long.
            for upto in range(FILTER_STEP_LINES, store.line_count, FILTER_STEP_LINES):
                store.filter_lines(WARN_OR_ERROR, upto)
                store.filter_lines(CANN_ERROR, upto)
                time.sleep(0.01)
        rows = self._filter()
        self.app.call_from_thread(self._filter_done, rows, keep)

    def _filter_done(self, rows: list[int], keep: int) -> None:
        if not self.errors_only:
            return  # turned off again meanwhile
        self._filtered = rows
        self._filter_ready = True
        # Stay near where we were: the first kept line at or after the old one.
        self.cursor = bisect.bisect_left(rows, keep)
        self._resize()
        self._show_cursor()

    def _filter(self) -> list[int]:
        """Lines to keep with "warnings and errors only" (two patterns: see WARN_OR_ERROR)."""
        assert self.store is not None
        a = self.store.filter_lines(WARN_OR_ERROR)
        b = self.store.filter_lines(CANN_ERROR)
        return sorted(set(a).union(b)) if b else a

    def _resize(self) -> None:
        """Tell the scroll bars the new line count without a layout of the whole screen
        (``virtual_size`` is a layout reactive: one per batch of a flood is a full re-layout)."""
        size = Size(self.size.width, self.row_count)
        if size != self.virtual_size:
            self.set_reactive(LogView.virtual_size, size)
            self._scroll_update(size)

    # ----------------------------------------------------------------- actions

    def _show_cursor(self) -> None:
        self.cursor = max(0, min(self.cursor, self.row_count - 1))
        _, top = self.scroll_offset
        height = max(1, self.size.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)
        self.refresh()
        self._tell()

    def _tell(self) -> None:
        if self.store is None or not self.row_count:
            self.post_message(self.CursorMoved(None, "", None))
            return
        n = self.line_no(self.cursor)
        text = self.store.line(n)
        self.post_message(self.CursorMoved(n + 1, text, self._match(n, text)))

    def action_cursor(self, delta: int) -> None:
        self.follow = False
        self.cursor += delta
        self._show_cursor()

    def action_page(self, direction: int) -> None:
        self.follow = False
        self.cursor += direction * max(1, self.size.height - 1)
        self._show_cursor()

    def action_to_start(self) -> None:
        self.follow = False
        self.cursor = 0
        self._show_cursor()

    def action_to_end(self) -> None:
        self.follow = True
        self.cursor = max(0, self.row_count - 1)
        self.scroll_end(animate=False, immediate=True)
        self._show_cursor()

    def search(self, text: str, backward: bool = False) -> bool:
        """Move the cursor to the next (previous) line containing ``text``; False if none."""
        if self.store is None or not text:
            return False
        self.search_text = text
        start = self.line_no(self.cursor) if self.row_count else 0
        found = self.store.search(text, start, backward=backward)
        if found is None:
            return False
        if self._filter_on:
            i = bisect.bisect_left(self._filtered, found)
            if i < len(self._filtered) and self._filtered[i] == found:
                self.cursor = i
            else:
                self.errors_only = False  # the match is not a warning: show everything
        if not self._filter_on:
            self.cursor = found
        self.follow = False
        self._show_cursor()
        return True

    def on_focus(self) -> None:
        self.refresh()
        self._tell()

    def on_blur(self) -> None:
        self.refresh()
