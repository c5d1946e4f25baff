"""Turn an image or video reference into the URL a chat request carries.

Local files become base64 ``data:`` URLs with the MIME type read from the file's own bytes
(the reference script always said ``image/jpeg``; vLLM decodes by content, but a wrong type
misleads anyone reading the request). Remote ``http(s)://`` and ready ``data:`` URLs pass
through untouched: the server fetches them (bounded by ``VLLM_IMAGE_FETCH_TIMEOUT``).

A file is read and base64-encoded once per distinct content: the :class:`Media` is cached under
the file's path, size, modification time and inode, so every request of a load, every case
naming the same image and every later run in the same process reuse one ``data:`` URL (a
changed file is read again). The cache holds at most :data:`CACHE_MAX_BYTES` of URLs, least
recently used first out.
"""

from __future__ import annotations

import base64
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["image", "video"]

#: Default ceiling for one local file. vLLM has no request-size limit of its own, but a
#: multi-megabyte base64 body is almost always a mistake (a raw camera photo, a full movie).
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: Most characters of data: URLs the per-file cache keeps (four default-size files' worth).
CACHE_MAX_BYTES = 128 * 1024 * 1024


class MediaError(Exception):
    """A media reference that cannot be sent: missing, unreadable, wrong kind, too large."""


@dataclass(frozen=True)
class Media:
    """One image or video ready to be placed in a chat message."""

    kind: Kind
    url: str  # data: URL for local files, the original URL otherwise
    source: str  # what the user named (path or URL), for reports
    mime: str | None = None  # None for remote URLs: the server decides
    size: int | None = None  # bytes of the local file


def sniff_mime(head: bytes) -> str | None:
    """MIME type from a file's first bytes, or None when it is no image or video we know."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:2] == b"BM":
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    return None


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://", "data:"))


def load_media(ref: str | Path, kind: Kind, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Media:
    """Resolve ``ref`` into a :class:`Media`; raise :class:`MediaError` with a one-line reason."""
    ref_s = str(ref)
    if is_remote(ref_s):
        if ref_s.startswith("data:") and not ref_s.startswith(f"data:{kind}/"):
            raise MediaError(f"{_short(ref_s)}: a data: URL for a {kind} must start data:{kind}/")
        return Media(kind=kind, url=ref_s, source=_short(ref_s))
    path = Path(ref_s).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{ref_s}: no such file") from None
    except OSError as exc:
        raise MediaError(f"{ref_s}: {exc.strerror or exc}") from None
    size = st.st_size
    if path.is_dir():
        raise MediaError(f"{ref_s}: is a directory, not a {kind} file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open forever, a device never end
        raise MediaError(
            f"{ref_s}: not a regular file; give {'an' if kind == 'image' else 'a'} {kind} file"
        )
    if size > max_bytes:
        raise MediaError(
            f"{ref_s}: {size / 2**20:.3g} MB is over the {max_bytes / 2**20:.3g} MB limit for one "
            f"{kind} (shrink it, or raise --max-media-mb)"
        )
    key = (str(path.resolve()), size, st.st_mtime_ns, st.st_ino)
    cached = _CACHE.get(key)
    if cached is None:
        try:
            with path.open("rb") as fh:
                head = fh.read(16)
                mime = sniff_mime(head)  # first: what is no image or video is refused unread
                data = head + fh.read() if mime else b""
        except OSError as exc:
            raise MediaError(f"{ref_s}: {exc.strerror or exc}") from None
        except MemoryError:  # a file within --max-media-mb, yet more than this machine holds
            raise MediaError(f"{ref_s}: {size / 2**20:.3g} MB does not fit in memory") from None
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}" if mime else None
        cached = (mime, url)
        _CACHE.put(key, cached)
    mime, url = cached
    if mime is None or url is None or not mime.startswith(kind + "/"):
        found = f"a {mime.split('/')[0]} ({mime})" if mime else "not an image or video we know"
        article = "an" if kind == "image" else "a"
        raise MediaError(f"{ref_s}: expected {article} {kind} file, found {found}")
    return Media(kind=kind, url=url, source=ref_s, mime=mime, size=size)


class _UrlCache:
    """(path, size, mtime, inode) -> (mime, data: URL), bounded by the URLs' total length."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._items: OrderedDict[tuple[str, int, int, int], tuple[str | None, str | None]] = (
            OrderedDict()
        )
        self._chars = 0
        self._lock = threading.Lock()  # load_media may run in worker threads

    def get(self, key: tuple[str, int, int, int]) -> tuple[str | None, str | None] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, int, int, int], item: tuple[str | None, str | None]) -> None:
        size = len(item[1] or "")
        if size > self.max_chars:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._chars -= len(old[1] or "") if old else 0
            self._items[key] = item
            self._chars += size
            while self._chars > self.max_chars:
                _, dropped = self._items.popitem(last=False)
                self._chars -= len(dropped[1] or "")

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._chars = 0

    def __len__(self) -> int:
        return len(self._items)


_CACHE = _UrlCache(CACHE_MAX_BYTES)


def clear_cache() -> None:
    """Forget every encoded file (tests; a long-lived process that wants the memory back)."""
    _CACHE.clear()


def _short(url: str, limit: int = 60) -> str:
    if url.startswith("data:"):
        head = url.split(",", 1)[0]
        return f"{head},...({len(url)} chars)"
    return url if len(url) <= limit else url[: limit - 3] + "..."
