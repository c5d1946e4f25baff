"""What `mmops offline` feeds the model: media files, questions, and which goes with which.

Checked here, before vLLM starts, so bad input costs a second, not an engine start: files exist
and are of the kind the flag takes (sniffed from their first bytes, whatever their name).
Decoding happens in the child program (PIL for images, OpenCV for video frames).

Pairing follows vision_language.py: with ``--num-prompts N`` each of the N requests gets the
same media, and prompt ``i % len(prompts)``, where the prompts are the first question alone
unless ``--use-different-prompt-per-request``. Several ``--image`` files are cycled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmops.errors import UsageError

MODALITIES = ("image", "video")
# The example's questions (vision_language.py, get_multi_modal_input; the same in v0.7.2's first
# one and in main's list).
IMAGE_QUESTIONS = (
    "What is the content of this image?",
    "Describe the content of this image in detail.",
    "What's in the image?",
    "Where is this image taken?",
)
VIDEO_QUESTIONS = ("Why is this video funny?",)
# Built-in media when none is given: the check suites' samples (checks/media/).
SAMPLE_MEDIA = {"image": "red-circle.png", "video": "moving-dot.mp4"}

# First bytes of common formats: enough to tell an image from a video, not to decode either.
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"\x00\x00\x01\x00",  # ICO
)
_VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3",)  # Matroska / WebM


def sniff(path: Path) -> str | None:
    """'image' or 'video' from a file's first bytes; None when the format is not one we know."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    if head.startswith(_VIDEO_MAGIC):
        return "video"
    if head[4:8] == b"ftyp":  # MP4 / MOV / 3GP; HEIF images too, told apart by their brand
        return "image" if head[8:12] in (b"heic", b"heix", b"avif", b"mif1") else "video"
    if head[:4] == b"RIFF":
        return {b"WEBP": "image", b"AVI ": "video"}.get(head[8:12])
    return None


def check_media(flag: str, value: str, kind: str) -> Path:
    """The resolved path of a media file given to ``flag``; a one-line UsageError if unusable."""
    path = Path(value).expanduser()
    if not path.exists():
        raise UsageError(f"{flag} {value}: no such file")
    if path.is_dir():
        raise UsageError(f"{flag} {value}: is a directory, not {article(kind)} file")
    if not path.is_file():  # a FIFO would block the open below for ever; a device never ends
        raise UsageError(f"{flag} {value}: not a regular file; give {article(kind)} file")
    try:
        with path.open("rb") as fh:
            empty = not fh.read(1)
    except OSError as exc:
        raise UsageError(f"{flag} {value}: cannot read it ({exc.strerror})") from None
    if empty:
        raise UsageError(f"{flag} {value}: the file is empty; give {article(kind)} file")
    found = sniff(path)
    if found is not None and found != kind:
        takes = "an image (JPEG, PNG, ...)" if kind == "image" else "a video (MP4, WebM, AVI, ...)"
        raise UsageError(f"{flag} {value}: this is {article(found)} file; {flag} takes {takes}")
    return path.resolve()


def article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def sample_media(modality: str) -> Path:
    """The built-in sample for ``modality`` (checks/media/, or $MMOPS_CHECKS_DIR/media/)."""
    from mmops.probe.suite import suite_dirs  # the check suites' search path; their media

    name = SAMPLE_MEDIA[modality]
    for d in suite_dirs():
        path = d / "media" / name
        if path.is_file():
            return path.resolve()
    flag = "--image" if modality == "image" else "--video"
    raise UsageError(f"no sample {modality} found (checks/media/{name}); pass {flag} PATH")


@dataclass(frozen=True)
class Request:
    """One of the N prompts: which question and which media file it gets (indices)."""

    question: int
    media: int


@dataclass(frozen=True)
class Inputs:
    """The media files, questions and requests of one offline run."""

    modality: str
    media: tuple[Path, ...]
    questions: tuple[str, ...]
    requests: tuple[Request, ...]
    sample: bool = False  # the media are the built-in sample


def plan_requests(num_prompts: int, questions: int, media: int, different: bool) -> list[Request]:
    """Request i gets question ``i % Q`` (Q = 1 unless ``different``) and media ``i % M``."""
    if num_prompts < 1:
        raise UsageError(f"--num-prompts must be at least 1; got {num_prompts}")
    q = questions if different else 1
    return [Request(question=i % q, media=i % media) for i in range(num_prompts)]


def gather(
    modality: str | None,
    images: list[str],
    video: str | None,
    questions: list[str],
    num_prompts: int,
    num_frames: int,
    different: bool,
    supported: tuple[str, ...] = MODALITIES,
    model_type: str = "",
) -> Inputs:
    """Check the media and question flags and pair them into requests (UsageError if unusable)."""
    if modality is None:
        modality = "video" if video and not images else "image"
    if modality not in MODALITIES:
        raise UsageError(f"--modality {modality!r}: unknown; valid: {', '.join(MODALITIES)}")
    if modality not in supported:
        raise UsageError(
            f"--modality {modality}: --model-type {model_type} takes {', '.join(supported)}"
        )
    if modality == "video" and images:
        raise UsageError(
            f"--image {images[0]} with --modality video: pass the video with --video PATH"
        )
    if modality == "image" and video:
        raise UsageError(f"--video {video} with --modality image: pass --modality video")
    if num_frames < 1:
        raise UsageError(f"--num-frames must be at least 1; got {num_frames}")
    if any(not q.strip() for q in questions):
        raise UsageError("--question: empty; give the question text")
    if modality == "image":
        paths = [check_media("--image", p, "image") for p in images]
    else:
        paths = [check_media("--video", video, "video")] if video else []
    sample = not paths
    if sample:
        paths = [sample_media(modality)]
    asked = tuple(questions) or (IMAGE_QUESTIONS if modality == "image" else VIDEO_QUESTIONS)
    # Given questions are all used, in turn; the example's list only with the example's flag.
    requests = plan_requests(num_prompts, len(asked), len(paths), different or bool(questions))
    return Inputs(modality, tuple(paths), asked, tuple(requests), sample)
