"""Turn an image or video reference into the URL a chat request carries.

Local files become base64 ``data:`` URLs with the MIME type read from the file's own bytes
(the reference script always said ``image/jpeg``; vLLM decodes by content, but a wrong type
misleads anyone reading the request). Remote ``http(s)://`` and ready ``data:`` URLs pass
through untouched: the server fetches them (bounded by ``VLLM_IMAGE_FETCH_TIMEOUT``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["image", "video"]

#: Default ceiling for one local file. vLLM has no request-size limit of its own, but a
#: multi-megabyte base64 body is almost always a mistake (a raw camera photo, a full movie).
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


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
        size = path.stat().st_size
    except FileNotFoundError:
        raise MediaError(f"{ref_s}: no such file") from None
    except OSError as exc:
        raise MediaError(f"{ref_s}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise MediaError(f"{ref_s}: is a directory, not a {kind} file")
    if size > max_bytes:
        raise MediaError(
            f"{ref_s}: {size / 2**20:.3g} MB is over the {max_bytes / 2**20:.3g} MB limit for one "
            f"{kind} (shrink it, or raise --max-media-mb)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{ref_s}: {exc.strerror or exc}") from None
    mime = sniff_mime(data[:16])
    if mime is None or not mime.startswith(kind + "/"):
        found = f"a {mime.split('/')[0]} ({mime})" if mime else "not an image or video we know"
        article = "an" if kind == "image" else "a"
        raise MediaError(f"{ref_s}: expected {article} {kind} file, found {found}")
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return Media(kind=kind, url=url, source=ref_s, mime=mime, size=size)


def _short(url: str, limit: int = 60) -> str:
    if url.startswith("data:"):
        head = url.split(",", 1)[0]
        return f"{head},...({len(url)} chars)"
    return url if len(url) <= limit else url[: limit - 3] + "..."
