"""Each format's structure as TensorFlow's decoders read it, in bounded memory: width x height or a reason.

The size is the one the decoder allocates for, not always the one a header shows first: a GIF's
canvas in TensorFlow is the largest frame's width x height (giflib also holds every frame's raster
at once), whatever its logical screen says. Files are read through a Window of at most WINDOW bytes,
so the memory a file costs here does not grow with its size. No TensorFlow and no Pillow here; the
graph's own checks (retrain.images.headers) make the same decisions.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import BinaryIO

WINDOW = 1 << 20  # bytes read at once: bounds the memory one file costs the scan
JPEG_MAX_SIDE = 65_500  # libjpeg's JPEG_MAX_DIMENSION: TensorFlow refuses a larger side
PNG_MAX_SIDE = 1_000_000  # libpng's default user limit on width and height: TensorFlow refuses more
CONVERT = "the served model cannot decode it; convert to PNG or JPEG"
# The only 32-bit bit fields TensorFlow's BMP decoder reads right (it takes bytes as B, G, R, A): R, G, B, A masks.
BMP_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)


class Window:
    """Random access to an open file through one buffer of at most max(WINDOW, n) bytes."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle, self.size, self.start, self.data = handle, size, 0, b""

    def read(self, pos: int, n: int) -> bytes:
        """Bytes [pos, pos + n), shorter at the end of the file; n must be small (at most WINDOW)."""
        if pos < 0 or pos >= self.size:
            return b""
        if not self.start <= pos or pos + n > self.start + len(self.data):
            self.handle.seek(pos)
            self.data, self.start = self.handle.read(max(n, WINDOW)), pos
        return self.data[pos - self.start:pos - self.start + n]

    def byte(self, pos: int) -> int | None:
        got = self.read(pos, 1)
        return got[0] if got else None

    def find(self, needle: bytes, start: int) -> int:
        """Position of the first needle at or after start, or -1 (searched window by window, in C)."""
        pos = max(start, 0)
        while pos < self.size:
            chunk = self.read(pos, WINDOW)
            at = chunk.find(needle)
            if at >= 0:
                return pos + at
            if pos + len(chunk) >= self.size:
                return -1
            pos += len(chunk) - len(needle) + 1
        return -1

    def crc(self, pos: int, n: int) -> int:
        """zlib.crc32 of bytes [pos, pos + n), read window by window."""
        value, end = 0, pos + n
        while pos < end:
            chunk = self.read(pos, min(WINDOW, end - pos))
            if not chunk:
                break
            value, pos = zlib.crc32(chunk, value), pos + len(chunk)
        return value


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the decoder will allocate for: width x height of its output, and (GIF) all frames' pixels."""
    width: int
    height: int
    frames_pixels: int = 0  # GIF: sum of every frame's width x height (giflib keeps each frame's raster)
    bad_ancillary: tuple[tuple[int, int], ...] = ()  # PNG: (start, end) of ancillary chunks with a bad CRC


def _u(data: bytes, start: int, size: int, order: str = "little") -> int:
    return int.from_bytes(data[start:start + size], order)


def jpeg(w: Window) -> Shape | str:
    """A JPEG's frame size (its first SOF marker, as libjpeg reads it), or a reason.

    No end marker after the first scan (SOS) means the file was cut short: scan data cannot hold FF D9
    (FF is stuffed as FF 00), so this is exact; an EXIF thumbnail's end marker comes before the scan,
    and data appended after the image (phones' motion photos) is allowed.
    """
    pos, shape = 2, None
    while 0 <= pos < w.size - 3:
        marker = w.read(pos, 2)
        if marker[0] != 0xFF or marker[1] in (0x00, 0x01, 0xFF) or 0xD0 <= marker[1] <= 0xD7:
            pos = w.find(b"\xff", pos + 1)  # stray or fill bytes: find the next marker, as libjpeg does
        elif marker[1] == 0xDA:
            if w.find(b"\xff\xd9", pos) < 0:
                break
            if shape is None:
                return "corrupt: JPEG: no frame header (SOF marker) before the image data"
            return shape
        else:
            if shape is None and 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                sof = w.read(pos + 5, 4)
                height, width = _u(sof, 0, 2, "big"), _u(sof, 2, 2, "big")
                if not width or not height:
                    return f"corrupt: JPEG: frame header says {width} x {height} pixels"
                if max(width, height) > JPEG_MAX_SIDE:
                    return (f"unsupported format (JPEG): {width} x {height} pixels, expected sides up to "
                            f"{JPEG_MAX_SIDE} (the decoder's limit)")
                shape = Shape(width, height)
            pos += 2 + _u(w.read(pos + 2, 2), 0, 2, "big")
    return "truncated: JPEG image data has no end marker (file cut short?)"


def gif(w: Window) -> Shape | str:
    """A GIF's canvas as TensorFlow decodes it (the largest frame's width x height), or a reason.

    Every block is walked as giflib reads every frame: a bad record or a cut block is a reason.
    """
    def blocks(pos: int) -> int:  # skip data sub-blocks up to the zero-length terminator
        while (n := w.byte(pos)):
            pos += n + 1
        return pos + 1

    packed = w.byte(10) if w.size > 12 else 0
    pos, frames = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0), []
    while pos < w.size and (kind := w.byte(pos)) != 0x3B:
        if kind == 0x21:
            pos = blocks(pos + 2)
        elif kind == 0x2C:
            descriptor = w.read(pos, 10)
            local = descriptor[9] if len(descriptor) == 10 else 0
            frames.append((_u(descriptor, 5, 2), _u(descriptor, 7, 2)))
            pos = blocks(pos + 11 + (3 << ((local & 7) + 1) if local & 0x80 else 0))
        else:
            return f"corrupt: GIF: unexpected byte {kind:#04x} where a block should start"
        if pos > w.size:
            return "truncated: GIF ends inside a block (file cut short?)"
    if pos > w.size or (not frames and pos >= w.size):
        return "truncated: GIF ends before its first image (file cut short?)"
    if not frames:
        return "corrupt: GIF holds no image"
    return Shape(max(f[0] for f in frames), max(f[1] for f in frames), sum(f[0] * f[1] for f in frames))


_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _ihdr(data: bytes) -> Shape | str:
    width, height = _u(data, 0, 4, "big"), _u(data, 4, 4, "big")
    depth, colour, compression, filtering, interlace = data[8:13].ljust(5, b"\xff")
    if not 0 < width <= PNG_MAX_SIDE or not 0 < height <= PNG_MAX_SIDE:
        return (f"unsupported format (PNG): {width} x {height} pixels, expected sides from 1 to {PNG_MAX_SIDE} "
                "(the decoder's limit)")
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        return f"corrupt: PNG: header has bit depth {depth}, colour type {colour}, expected a valid combination"
    return Shape(width, height)


def png(w: Window) -> Shape | str:
    """A PNG's size from IHDR after walking every chunk as libpng does, or a reason.

    Critical chunks (IHDR, PLTE, IDAT, IEND: upper-case first letter) must have their CRC right;
    ancillary chunks with a bad CRC are dropped by libpng with a warning, so they are allowed (and
    listed, so that Pillow, which refuses them, can be shown the file without them).
    """
    pos, shape, images, bad = 8, None, 0, []
    while True:
        head = w.read(pos, 8)
        if len(head) < 8:
            return "truncated: PNG ends before its IEND chunk (file cut short?)"
        length, kind = _u(head, 0, 4, "big"), head[4:]
        if length >= 2**31 or not kind.isalpha() or not kind.isascii():
            return f"corrupt: PNG: bad chunk header at byte {pos}"
        if shape is None and kind != b"IHDR":
            return "corrupt: PNG: the first chunk is not IHDR"
        end = pos + 12 + length
        if end > w.size:
            return f"truncated: PNG chunk {kind.decode()} runs past the end of the file (file cut short?)"
        if w.crc(pos + 4, 4 + length) != _u(w.read(pos + 8 + length, 4), 0, 4, "big"):
            if kind[0] & 0x20 == 0:
                return f"corrupt: PNG: chunk {kind.decode()} has a bad CRC"
            bad.append((pos, end))
        if kind == b"IHDR" and shape is None:
            shape = _ihdr(w.read(pos + 8, min(length, 13)))
            if isinstance(shape, str):
                return shape
        images += kind == b"IDAT"
        if kind == b"IEND":
            return dataclasses.replace(shape, bad_ancillary=tuple(bad)) if images else "corrupt: PNG has no image data"
        pos = end


def webp(head: bytes, size: int) -> Shape | str:
    """A still WebP's canvas from its first chunk (VP8X, VP8L or VP8), as the graph reads it, or a reason."""
    if size < _u(head, 4, 4) + 8:
        return "truncated: WebP is shorter than its RIFF header says"
    kind = head[12:16]
    if kind == b"VP8X":
        if head[20] & 2:
            return f"unsupported format (animated WebP): {CONVERT}"
        return Shape(_u(head, 24, 3) + 1, _u(head, 27, 3) + 1)
    if kind == b"VP8L":
        bits = _u(head, 21, 4)
        return Shape(bits % 16384 + 1, bits // 16384 % 16384 + 1)
    if kind == b"VP8 ":
        return Shape(_u(head, 26, 2) % 16384, _u(head, 28, 2) % 16384)
    return f"corrupt: WEBP: unknown first chunk {kind!r}"


def _coloured_palette(w: Window) -> bool:
    """True for an 8-bit BMP whose palette is not the identity gray ramp (entry i = B, G, R = i, i, i):
    TensorFlow outputs the palette indices as gray levels, right only for that ramp."""
    used = _u(w.read(46, 4), 0, 4)
    used = 256 if used == 0 or used > 256 else used
    entries = w.read(14 + _u(w.read(14, 4), 0, 4), 4 * used).ljust(4 * used, b"\0")
    return any(entries[4 * i:4 * i + 3] != bytes((i, i, i)) for i in range(used))


def bmp(head: bytes, size: int, w: Window) -> Shape | str:
    """A BMP TensorFlow decodes right (8-bit, 24-bit, 32-bit; uncompressed, or 32-bit B, G, R, A bit fields
    as editors write them with a V4/V5 header), with the file ending where its pixel rows do; or a reason.

    head: at least the first 70 bytes (file header, DIB header and the bit-field masks at 54).
    """
    bits, compression = _u(head, 28, 2), _u(head, 30, 4)
    if compression in (3, 6) and bits == 32:  # BI_BITFIELDS, BI_ALPHABITFIELDS
        masks = tuple(_u(head, at, 4) for at in (54, 58, 62, 66))
        alpha = _u(head, 14, 4) >= 56 or compression == 6  # the alpha mask is in the header from V3 on
        if masks != BMP_MASKS or not alpha:
            shown = ", ".join(f"{m:08x}" for m in masks[:4 if alpha else 3])
            return (f"unsupported format (BMP variant): 32-bit bit fields {shown}, read by TensorFlow as "
                    f"B, G, R, A bytes; {CONVERT}")
    elif bits not in (8, 24, 32) or compression != 0:
        return f"unsupported format (BMP variant): {bits}-bit, compression {compression}; {CONVERT}"
    elif bits == 8 and _coloured_palette(w):
        return f"unsupported format (BMP variant): colour palette, read by TensorFlow as gray; {CONVERT}"
    # TensorFlow wants the file to end exactly where the pixel rows do (rows padded to 4 bytes).
    width, height = (abs(int.from_bytes(head[at:at + 4], "little", signed=True)) for at in (18, 22))
    expected = _u(head, 10, 4) + (bits * width + 31) // 32 * 4 * height
    if size < expected:
        return f"truncated: BMP is {size} bytes, its header needs {expected}"
    if size > expected:
        return f"unsupported format (BMP variant): {size - expected} bytes after the pixels; {CONVERT}"
    return Shape(width, height)


def without(data: bytes, spans: tuple[tuple[int, int], ...]) -> bytes:
    """data without the byte ranges (start, end) in spans (sorted, not overlapping)."""
    kept, last = [], 0
    for start, end in spans:
        kept.append(data[last:start])
        last = end
    return b"".join(kept) + data[last:]
