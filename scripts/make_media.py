#!/usr/bin/env python3
"""Rebuild the sample media in checks/media/ byte for byte, with nothing but the standard library.

    python scripts/make_media.py [OUT_DIR]      (default: checks/media next to this script)

Why pure Python: the project venv has no Pillow, OpenCV or PyAV, and the check suites must be
rebuildable anywhere mmops runs. So this file carries three small encoders:

- PNG: RGB, filter 0, zlib (PNG spec, RFC 2083).
- JPEG: baseline sequential DCT, 4:4:4, the Annex K quantisation tables scaled to quality 90 and
  flat Huffman tables (every DC symbol 4 bits, every AC symbol 8 bits). Flat tables are valid
  JPEG (ITU-T T.81 B.2.4.2 lets an encoder define any table) and spare us the Annex K code lists;
  the images are flat colour, so the size cost is a few hundred bytes.
- MP4: H.264 Constrained Baseline where every frame is an IDR slice of I_PCM macroblocks (raw
  samples, ITU-T H.264 7.3.5), muxed into an ISO BMFF file (ftyp, mdat, moov with avcC). Any
  H.264 decoder (FFmpeg, so OpenCV and PyAV, which vLLM uses to read video) decodes it.

Every output is a pure function of the code: no timestamps, no randomness.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

RGB = tuple[int, int, int]
Image = list[list[RGB]]  # rows of (r, g, b)

WHITE: RGB = (255, 255, 255)
RED: RGB = (220, 30, 30)
BLUE: RGB = (30, 60, 220)
BLACK: RGB = (20, 20, 20)
GREY: RGB = (235, 235, 235)


# ----------------------------------------------------------------------------------------- scenes


def canvas(width: int, height: int, colour: RGB) -> Image:
    return [[colour] * width for _ in range(height)]


def fill_rect(img: Image, x0: int, y0: int, x1: int, y1: int, colour: RGB) -> None:
    for y in range(max(0, y0), min(len(img), y1)):
        row = img[y]
        for x in range(max(0, x0), min(len(row), x1)):
            row[x] = colour


def fill_circle(img: Image, cx: float, cy: float, r: float, colour: RGB) -> None:
    for y in range(len(img)):
        for x in range(len(img[0])):
            if (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r:
                img[y][x] = colour


# Seven-segment layout: segment -> rectangle in a 40x70 digit cell (x0, y0, x1, y1).
_SEGMENTS = {
    "a": (6, 0, 34, 8),
    "b": (32, 4, 40, 35),
    "c": (32, 35, 40, 66),
    "d": (6, 62, 34, 70),
    "e": (0, 35, 8, 66),
    "f": (0, 4, 8, 35),
    "g": (6, 31, 34, 39),
}
_DIGITS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abged",
    "3": "abgcd",
    "4": "fgbc",
    "5": "afgcd",
    "6": "afgedc",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
}


def draw_number(img: Image, text: str, x: int, y: int, scale: int, colour: RGB) -> None:
    for i, ch in enumerate(text):
        ox = x + i * 52 * scale
        for seg in _DIGITS[ch]:
            x0, y0, x1, y1 = _SEGMENTS[seg]
            fill_rect(img, ox + x0 * scale, y + y0 * scale, ox + x1 * scale, y + y1 * scale, colour)


def red_circle() -> Image:
    img = canvas(224, 224, WHITE)
    fill_circle(img, 112, 112, 72, RED)
    return img


def blue_square() -> Image:
    img = canvas(224, 224, GREY)
    fill_rect(img, 52, 52, 172, 172, BLUE)
    return img


def number_42() -> Image:
    img = canvas(224, 160, WHITE)
    draw_number(img, "42", 30, 10, 2, BLACK)  # two 80x140 digits
    return img


def moving_dot_frames(n: int = 8, size: int = 112) -> list[Image]:
    """A red dot crossing a white frame from left to right."""
    frames = []
    for i in range(n):
        img = canvas(size, size, WHITE)
        cx = 16 + (size - 32) * i / (n - 1)
        fill_circle(img, cx, size / 2, 12, RED)
        frames.append(img)
    return frames


# -------------------------------------------------------------------------------------------- PNG


def png_encode(img: Image) -> bytes:
    height, width = len(img), len(img[0])
    raw = bytearray()
    for row in img:
        raw.append(0)  # filter type 0 (None)
        for r, g, b in row:
            raw += bytes((r, g, b))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------------- JPEG

# ITU-T T.81 Annex K, tables K.1 and K.2 (natural order).
_Q_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
_Q_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32  # fmt: skip


def _zigzag() -> list[int]:
    """Natural-order index of each zig-zag position."""
    order = []
    for s in range(15):
        diag = [(y, s - y) for y in range(8) if 0 <= s - y < 8]
        if s % 2 == 0:
            diag.reverse()  # even diagonals run bottom-left to top-right
        order += [y * 8 + x for y, x in diag]
    return order


_ZIGZAG = _zigzag()
_COS = [[math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)] for u in range(8)]
_C = [1 / math.sqrt(2)] + [1.0] * 7


def _scaled_table(table: list[int], quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - quality * 2  # IJG convention
    return [min(255, max(1, (q * scale + 50) // 100)) for q in table]


def _fdct(block: list[float]) -> list[float]:
    """Separable 8x8 forward DCT-II with JPEG's normalisation."""
    tmp = [0.0] * 64
    for y in range(8):
        row = block[y * 8 : y * 8 + 8]
        for u in range(8):
            cu = _COS[u]
            tmp[y * 8 + u] = 0.5 * _C[u] * sum(row[x] * cu[x] for x in range(8))
    out = [0.0] * 64
    for u in range(8):
        col = [tmp[y * 8 + u] for y in range(8)]
        for v in range(8):
            cv = _COS[v]
            out[v * 8 + u] = 0.5 * _C[v] * sum(col[y] * cv[y] for y in range(8))
    return out


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self._flush_byte()

    def _flush_byte(self) -> None:
        byte = self.acc & 0xFF
        self.out.append(byte)
        if byte == 0xFF:
            self.out.append(0x00)  # byte stuffing (T.81 F.1.2.3)
        self.acc = 0
        self.n = 0

    def finish(self) -> bytes:
        while self.n:
            self.write(1, 1)  # pad with 1-bits
        return bytes(self.out)


def _magnitude(v: int) -> tuple[int, int]:
    """JPEG's (size category, additional bits) of a coefficient."""
    size = abs(v).bit_length()
    bits = v if v >= 0 else v + (1 << size) - 1
    return size, bits


# Flat Huffman tables: all 12 DC categories get 4-bit codes, all 162 AC symbols 8-bit codes.
_DC_SYMBOLS = list(range(12))
_AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]


def _flat_code(symbols: list[int], length: int) -> dict[int, tuple[int, int]]:
    return {sym: (i, length) for i, sym in enumerate(symbols)}


_DC_CODE = _flat_code(_DC_SYMBOLS, 4)
_AC_CODE = _flat_code(_AC_SYMBOLS, 8)


def _dht(table_class: int, table_id: int, symbols: list[int], length: int) -> bytes:
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    body = bytes([(table_class << 4) | table_id]) + bytes(counts) + bytes(symbols)
    return b"\xff\xc4" + struct.pack(">H", len(body) + 2) + body


def jpeg_encode(img: Image, quality: int = 90) -> bytes:
    height, width = len(img), len(img[0])
    qtables = [_scaled_table(_Q_LUMA, quality), _scaled_table(_Q_CHROMA, quality)]

    def plane(fn: Callable[[int, int, int], float]) -> list[list[float]]:
        return [[fn(*img[min(y, height - 1)][min(x, width - 1)]) for x in range(-(-width // 8) * 8)]
                for y in range(-(-height // 8) * 8)]  # fmt: skip

    planes = [
        plane(lambda r, g, b: 0.299 * r + 0.587 * g + 0.114 * b),
        plane(lambda r, g, b: -0.168736 * r - 0.331264 * g + 0.5 * b + 128),
        plane(lambda r, g, b: 0.5 * r - 0.418688 * g - 0.081312 * b + 128),
    ]
    writer = _BitWriter()
    prev_dc = [0, 0, 0]
    for by in range(0, len(planes[0]), 8):
        for bx in range(0, len(planes[0][0]), 8):
            for c, pl in enumerate(planes):
                block = [pl[by + y][bx + x] - 128 for y in range(8) for x in range(8)]
                coef = _fdct(block)
                q = qtables[0 if c == 0 else 1]
                zz = [round(coef[_ZIGZAG[i]] / q[_ZIGZAG[i]]) for i in range(64)]
                diff = zz[0] - prev_dc[c]
                prev_dc[c] = zz[0]
                size, bits = _magnitude(diff)
                writer.write(*_DC_CODE[size])
                writer.write(bits, size)
                run = 0
                for v in zz[1:]:
                    if v == 0:
                        run += 1
                        continue
                    while run > 15:
                        writer.write(*_AC_CODE[0xF0])
                        run -= 16
                    size, bits = _magnitude(v)
                    writer.write(*_AC_CODE[(run << 4) | size])
                    writer.write(bits, size)
                    run = 0
                if run:
                    writer.write(*_AC_CODE[0x00])
    scan = writer.finish()

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    jfif = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = segment(
        0xDB,
        b"".join(
            bytes([i]) + bytes(t[_ZIGZAG[k]] for k in range(64)) for i, t in enumerate(qtables)
        ),
    )
    sof = segment(
        0xC0,
        struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]),
    )
    dht = (
        _dht(0, 0, _DC_SYMBOLS, 4)
        + _dht(1, 0, _AC_SYMBOLS, 8)
        + _dht(0, 1, _DC_SYMBOLS, 4)
        + _dht(1, 1, _AC_SYMBOLS, 8)
    )
    sos = segment(0xDA, bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]))
    return b"\xff\xd8" + jfif + dqt + sof + dht + sos + scan + b"\xff\xd9"


# ----------------------------------------------------------------------------------- H.264 / MP4


class _RbspWriter:
    """Bit writer for H.264 RBSP syntax: u(n), ue(v), se(v)."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, value: int, n: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(n - 1, -1, -1)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(0, code.bit_length() - 1)
        self.u(code, code.bit_length())

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self.bits) % 8:
            self.bits.append(0)

    def raw(self, data: bytes) -> None:
        assert len(self.bits) % 8 == 0
        for byte in data:
            self.u(byte, 8)

    def trailing(self) -> bytes:
        self.bits.append(1)  # rbsp_stop_one_bit
        self.align_zero()
        out = bytearray()
        for i in range(0, len(self.bits), 8):
            byte = 0
            for bit in self.bits[i : i + 8]:
                byte = (byte << 1) | bit
            out.append(byte)
        return bytes(out)


def _nal(nal_ref_idc: int, nal_type: int, rbsp: bytes) -> bytes:
    """NAL unit with emulation prevention (H.264 7.4.1: no 0x0000 followed by 0x00-0x03)."""
    out = bytearray([(nal_ref_idc << 5) | nal_type])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


_PROFILE, _COMPAT, _LEVEL = 66, 0xC0, 30  # Constrained Baseline, level 3.0


def _sps(width: int, height: int) -> bytes:
    w = _RbspWriter()
    w.u(_PROFILE, 8)
    w.u(_COMPAT, 8)
    w.u(_LEVEL, 8)
    w.ue(0)  # seq_parameter_set_id
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(0)  # pic_order_cnt_type
    w.ue(0)  # log2_max_pic_order_cnt_lsb_minus4
    w.ue(1)  # max_num_ref_frames
    w.u(0, 1)  # gaps_in_frame_num_value_allowed_flag
    w.ue(width // 16 - 1)
    w.ue(height // 16 - 1)
    w.u(1, 1)  # frame_mbs_only_flag
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(0, 1)  # frame_cropping_flag
    w.u(0, 1)  # vui_parameters_present_flag
    return _nal(3, 7, w.trailing())


def _pps() -> bytes:
    w = _RbspWriter()
    w.ue(0)  # pic_parameter_set_id
    w.ue(0)  # seq_parameter_set_id
    w.u(0, 1)  # entropy_coding_mode_flag: CAVLC
    w.u(0, 1)  # bottom_field_pic_order_in_frame_present_flag
    w.ue(0)  # num_slice_groups_minus1
    w.ue(0)  # num_ref_idx_l0_default_active_minus1
    w.ue(0)  # num_ref_idx_l1_default_active_minus1
    w.u(0, 1)  # weighted_pred_flag
    w.u(0, 2)  # weighted_bipred_idc
    w.se(0)  # pic_init_qp_minus26
    w.se(0)  # pic_init_qs_minus26
    w.se(0)  # chroma_qp_index_offset
    w.u(0, 1)  # deblocking_filter_control_present_flag (PCM at QP 0 is never filtered)
    w.u(0, 1)  # constrained_intra_pred_flag
    w.u(0, 1)  # redundant_pic_cnt_present_flag
    return _nal(3, 8, w.trailing())


def _yuv420(img: Image) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """BT.601 limited-range Y, Cb, Cr planes; chroma averaged over 2x2. Samples kept in 1..254."""

    def clip(v: float) -> int:
        return min(254, max(1, round(v)))

    h, w = len(img), len(img[0])
    y_plane = [[clip(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255) for r, g, b in row]
               for row in img]  # fmt: skip
    cb_plane, cr_plane = [], []
    for y in range(0, h, 2):
        cb_row, cr_row = [], []
        for x in range(0, w, 2):
            px = [img[y + dy][x + dx] for dy in (0, 1) for dx in (0, 1)]
            r = sum(p[0] for p in px) / 4
            g = sum(p[1] for p in px) / 4
            b = sum(p[2] for p in px) / 4
            cb_row.append(clip(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255))
            cr_row.append(clip(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255))
        cb_plane.append(cb_row)
        cr_plane.append(cr_row)
    return y_plane, cb_plane, cr_plane


def _idr_slice(img: Image, idr_pic_id: int) -> bytes:
    y_plane, cb_plane, cr_plane = _yuv420(img)
    w = _RbspWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(7)  # slice_type: I (all slices of the picture)
    w.ue(0)  # pic_parameter_set_id
    w.u(0, 4)  # frame_num (log2_max_frame_num = 4)
    w.ue(idr_pic_id)
    w.u(0, 4)  # pic_order_cnt_lsb
    w.u(0, 1)  # no_output_of_prior_pics_flag
    w.u(0, 1)  # long_term_reference_flag
    w.se(0)  # slice_qp_delta
    for mby in range(len(img) // 16):
        for mbx in range(len(img[0]) // 16):
            w.ue(25)  # mb_type I_PCM
            w.align_zero()  # pcm_alignment_zero_bit
            luma = bytes(v for row in y_plane[mby * 16 : mby * 16 + 16]
                         for v in row[mbx * 16 : mbx * 16 + 16])  # fmt: skip
            w.raw(luma)
            for chroma in (cb_plane, cr_plane):
                w.raw(bytes(v for row in chroma[mby * 8 : mby * 8 + 8]
                            for v in row[mbx * 8 : mbx * 8 + 8]))  # fmt: skip
    return _nal(3, 5, w.trailing())


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", len(body) + 8) + kind + body


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def mp4_encode(frames: list[Image], fps: int) -> bytes:
    height, width = len(frames[0]), len(frames[0][0])
    assert width % 16 == 0 and height % 16 == 0, "I_PCM frames must be whole macroblocks"
    sps, pps = _sps(width, height), _pps()
    samples = [_idr_slice(f, i % 2) for i, f in enumerate(frames)]
    samples = [struct.pack(">I", len(s)) + s for s in samples]  # AVCC: 4-byte NAL lengths

    timescale, delta = fps * 1000, 1000
    duration_ms = len(frames) * 1000 // fps
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")
    mdat = _box(b"mdat", *samples)
    first_sample_offset = len(ftyp) + 8

    avcc = _box(
        b"avcC",
        bytes([1, _PROFILE, _COMPAT, _LEVEL, 0xFF, 0xE1]),
        struct.pack(">H", len(sps)),
        sps,
        bytes([1]),
        struct.pack(">H", len(pps)),
        pps,
    )
    avc1 = _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x480000, 0x480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, len(samples), delta)),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(samples), 1)),
        _full_box(
            b"stsz",
            0,
            0,
            struct.pack(">II", 0, len(samples)),
            *(struct.pack(">I", len(s)) for s in samples),
        ),  # fmt: skip
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, first_sample_offset)),
    )
    minf = _box(
        b"minf",
        _full_box(b"vmhd", 0, 1, bytes(8)),
        _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))),
        stbl,
    )
    mdia = _box(
        b"mdia",
        _full_box(
            b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, len(samples) * delta, 0x55C4, 0)
        ),
        _full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00"),
        minf,
    )
    tkhd = _full_box(
        b"tkhd", 0, 3,
        struct.pack(">IIIII", 0, 0, 1, 0, duration_ms), bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip
    mvhd = _full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, duration_ms), struct.pack(">IH", 0x10000, 0x100),
        bytes(10), _MATRIX, bytes(24), struct.pack(">I", 2),
    )  # fmt: skip
    moov = _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))
    return ftyp + mdat + moov


# ------------------------------------------------------------------------------------------- main

#: file name -> builder. Test code imports this to check the shipped files are reproducible.
MEDIA: dict[str, Callable[[], bytes]] = {
    "red-circle.png": lambda: png_encode(red_circle()),
    "blue-square.jpg": lambda: jpeg_encode(blue_square()),
    "number-42.png": lambda: png_encode(number_42()),
    "moving-dot.mp4": lambda: mp4_encode(moving_dot_frames(), fps=4),
}


def build(out_dir: Path) -> list[Path]:
    """Write every sample file into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in MEDIA.items():
        path = out_dir / name
        path.write_bytes(make())
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "checks" / "media"
    for path in build(out):
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
