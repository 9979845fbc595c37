"""One file -> None (the served model decodes it) or a one-line reason to skip it. No TensorFlow here.

The verdict mirrors what retrain.images.preprocess (the graph training and serving share) accepts: JPEG,
PNG, GIF, BMP and still WebP, recognised by content as TensorFlow recognises them, at most
max_pixels (width x height from the header, read before decoding). Other images are named so the
reason can say what to convert; TensorFlow refuses a file cut short by even two bytes, so each
format's end is checked too. Reasons read "<category>: <detail>"; the category is what summaries count.

Cost per file (bench/scan.py, at most a few ms): the header (JPEG and GIF: every byte, searched in
C), Pillow's open and verify() (PNG: every chunk's CRC) and, for small files only, a decode (JPEG at
1/8 scale, Pillow's draft mode).
"""
from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from pathlib import Path

from PIL import Image

# Files up to this size are also decoded (JPEG at 1/8 scale), a few ms each; decoding costs about 1 ms per
# 30-100 KB (bench/scan.py), so larger files get the structural checks only: header, end of file, PNG CRCs.
_FULL_CHECK_BYTES = 256 * 1024
_FULL_CHECK_PIXELS = 300_000  # WebP, PNG and GIF decode at full size: about 12 ms per megapixel for WebP
_CONVERT = "the served model cannot decode it; convert to PNG or JPEG"


def _iso_brand(head: bytes) -> str | None:
    """HEIC/HEIF/AVIF from an ISO media 'ftyp' box (major and compatible brands), else None."""
    if head[4:8] != b"ftyp":
        return None
    brands = {head[i:i + 4] for i in range(8, min(len(head), 8 + int.from_bytes(head[:4], "big")), 4)}
    if brands & {b"avif", b"avis"}:
        return "AVIF"
    if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}:
        return "HEIC/HEIF"
    return "ISO media (video?)"


# Formats TensorFlow decodes, by the magic bytes its DecodeImage tests (in that order).
_DECODED = ((b"RIFF", "WEBP"), (b"BM", "BMP"), (b"GIF8", "GIF"), (b"\x89PNG\r\n\x1a\n", "PNG"),
            (b"\xff\xd8\xff", "JPEG"))
# Images it does not decode, named so the reason can say so; TIFF also covers DNG and most camera raw files.
_OTHER = ((b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"\xff\x0a", "JPEG XL"), (b"\0\0\0\x0cJXL \r\n\x87\n", "JPEG XL"),
          (b"\0\0\0\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"), (b"8BPS", "PSD"),
          (b"\0\0\1\0", "ICO"), (b"\0\0\2\0", "CUR"), (b"qoif", "QOI"), (b"icns", "ICNS"), (b"DDS ", "DDS"),
          (b"v/1\x01", "OpenEXR"), (b"#?RADIANCE", "Radiance HDR"), (b"FUJIFILMCCD-RAW", "RAF raw"))
_NOT_IMAGES = ((b"%PDF", "a PDF document"), (b"PK\3\4", "a zip archive"), (b"<svg", "SVG (vector)"),
               (b"<?xml", "XML"), (b"\x1f\x8b", "gzip data"))


def identify(head: bytes) -> tuple[str, str | None]:
    """(kind, name) of a file's first 64 bytes; kind is 'decoded', 'other image' or 'not an image'."""
    tf_format = next((name for magic, name in _DECODED if head.startswith(magic)), None)
    if tf_format == "WEBP" and head[8:12] != b"WEBP":
        tf_format = None  # TensorFlow wants RIFF....WEBP; other RIFF files (WAV, AVI) are not images
    if tf_format:
        return "decoded", tf_format
    other = _iso_brand(head) or next((name for magic, name in _OTHER if head.startswith(magic)), None)
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        other = "PPM/PGM/PBM"
    if other and other != "ISO media (video?)":
        return "other image", other
    if other:
        return "not an image", other
    named = next((name for magic, name in _NOT_IMAGES if head.lstrip().startswith(magic)), None)
    if named is None:
        named = "text" if _is_text(head) else f"unknown bytes {head[:4].hex(' ')}"
    return "not an image", named


def _is_text(head: bytes) -> bool:
    try:
        return all(c.isprintable() or c.isspace() for c in head.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def _jpeg_cut(data: bytes) -> bool:
    """True if no end marker follows a JPEG's first scan (SOS): the file was cut short.

    Scan data cannot hold FF D9 (FF is stuffed as FF 00), so this is exact; an EXIF thumbnail's end
    marker comes before the scan and data appended after the image (phones' motion photos) is allowed.
    """
    pos = 2
    while 0 <= pos < len(data) - 3:
        marker = data[pos + 1]
        if data[pos] != 0xFF or marker in (0x00, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            pos = data.find(b"\xff", pos + 1)  # stray or fill bytes: find the next marker, as libjpeg does
        elif marker == 0xDA:
            return data.find(b"\xff\xd9", pos) < 0
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return True


def _structure(fmt: str, head: bytes, body: bytes, size: int) -> str | None:
    """The file's structure as TensorFlow needs it, or a reason; cheap (header; JPEG and GIF bytes)."""
    if fmt == "JPEG" and _jpeg_cut(body):
        return "truncated: JPEG image data has no end marker (file cut short?)"
    if fmt == "GIF" and (problem := _gif_records(body)):
        return problem
    if fmt == "WEBP" and size < int.from_bytes(head[4:8], "little") + 8:
        return "truncated: WebP is shorter than its RIFF header says"
    if fmt == "WEBP" and head[12:16] == b"VP8X" and head[20] & 2:
        return f"unsupported format (animated WebP): {_CONVERT}"
    if fmt == "BMP":
        bits, compression = int.from_bytes(head[28:30], "little"), int.from_bytes(head[30:34], "little")
        if bits not in (8, 24, 32) or compression != 0:
            return f"unsupported format (BMP variant): {bits}-bit, compression {compression}; {_CONVERT}"
        # TensorFlow wants the file to end exactly where the pixel rows do (rows padded to 4 bytes).
        width, height = (int.from_bytes(head[at:at + 4], "little", signed=True) for at in (18, 22))
        expected = int.from_bytes(head[10:14], "little") + (bits * abs(width) + 31) // 32 * 4 * abs(height)
        if size < expected:
            return f"truncated: BMP is {size} bytes, its header needs {expected}"
        if size > expected:
            return f"unsupported format (BMP variant): {size - expected} bytes after the pixels; {_CONVERT}"
    return None


def _gif_records(data: bytes) -> str | None:
    """Walk a GIF's blocks as TensorFlow's giflib reads every frame: a bad record or a cut block is a reason."""
    def blocks(pos: int) -> int:  # skip data sub-blocks up to the zero-length terminator
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        return pos + 1

    packed = data[10] if len(data) > 12 else 0
    pos, images = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0), 0
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:
            pos = blocks(pos + 2)
        elif data[pos] == 0x2C:
            local = data[pos + 9] if pos + 10 <= len(data) else 0
            pos, images = blocks(pos + 11 + (3 << ((local & 7) + 1) if local & 0x80 else 0)), images + 1
        else:
            return f"corrupt: GIF: unexpected byte {data[pos]:#04x} where a block should start"
        if pos > len(data):
            return "truncated: GIF ends inside a block (file cut short?)"
    if pos > len(data) or (not images and pos >= len(data)):
        return "truncated: GIF ends before its first image (file cut short?)"
    return None if images else "corrupt: GIF holds no image"


def _decoded(path: Path, fmt: str, max_pixels: int, size: int) -> str | None:
    """Pillow's view: format, header size, integrity; None when it matches what TensorFlow will decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on bomb-sized images and corrupt EXIF; the verdict says enough
        try:
            with Image.open(path, formats=[fmt]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return f"too large: {width} x {height} = {width * height} pixels, expected at most {max_pixels}"
                if fmt == "BMP" and image.mode in ("P", "1"):  # TensorFlow reads palette indices as gray levels
                    return f"unsupported format (BMP variant): colour palette, read by TensorFlow as gray; {_CONVERT}"
                image.verify()
            if size <= _FULL_CHECK_BYTES and (fmt == "JPEG" or width * height <= _FULL_CHECK_PIXELS):
                with Image.open(path, formats=[fmt]) as image:
                    if fmt == "JPEG":
                        image.draft(image.mode, (width // 8, height // 8))  # 1/8 scale: same bytes read, far less work
                    image.load()
        except Image.DecompressionBombError as error:  # Pillow's own limit, 2 x MAX_IMAGE_PIXELS (179 million)
            stated = re.search(r"\((\d+) pixels\)", str(error))
            return f"too large: {stated[1] if stated else 'over 179 million'} pixels, expected at most {max_pixels}"
        # What Pillow raises on bad bytes (hypothesis-fuzzed in tests/test_formats.py): a verdict on the file.
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error,
                zlib.error) as error:
            kind = "truncated" if "truncated" in str(error).lower() else "corrupt"
            return f"{kind}: {fmt}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    return None


def check(path: Path, max_pixels: int) -> str | None:
    """None if preprocess.decode_resize will decode the file; else a one-line reason (never raises for bad data)."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file: 0 bytes"
        with open(path, "rb") as f:
            head = f.read(64)
            # JPEG and GIF structure is checked through the whole file; the others need only their header.
            body = head + f.read() if head.startswith((b"\xff\xd8\xff", b"GIF8")) else b""
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    kind, name = identify(head)
    if kind == "other image":
        return f"unsupported format ({name}): {_CONVERT}"
    if kind == "not an image":
        return f"not an image: found {name}"
    return _structure(name, head.ljust(64, b"\0"), body, size) or _decoded(path, name, max_pixels, size)
