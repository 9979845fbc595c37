"""One file -> None (the served model decodes it) or a one-line reason to skip it. No TensorFlow here.

The verdict mirrors what retrain.images.preprocess (the graph training and serving share) accepts: JPEG,
PNG, GIF, BMP and still WebP, recognised by content as TensorFlow recognises them, at most
max_pixels (width x height from the header, read before decoding). Other images are named so the
reason can say what to convert; TensorFlow refuses a file cut short by even two bytes, so each
format's end is checked too. Reasons read "<category>: <detail>"; the category is what summaries count.

Memory does not grow with file size: a file over max_bytes(max_pixels) is skipped before it is read,
and the others are read in windows of _WINDOW bytes (retrain.inputs.reader). Cost per file
(bench/scan.py, at most a few ms): the header (JPEG and GIF: every byte, searched in C; PNG: every
critical chunk's CRC), Pillow's open and, for small files only, a decode (JPEG at 1/8 scale, Pillow's
draft mode).
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image

from retrain.inputs import structure

# Files up to this size are also decoded (JPEG at 1/8 scale), a few ms each; decoding costs about 1 ms per
# 30-100 KB (bench/scan.py), so larger files get the structural checks only: header, end of file, PNG CRCs.
_FULL_CHECK_BYTES = 256 * 1024
_FULL_CHECK_PIXELS = 300_000  # WebP, PNG and GIF decode at full size: about 12 ms per megapixel for WebP
_CONVERT = structure.CONVERT
_HEAD_BYTES = 128  # the format, and each header's size fields (a BMP's bit-field masks end at byte 70)
BYTES_PER_PIXEL = 8  # of --max-pixels: the most any image needs (16-bit RGBA PNG, uncompressed)
SLACK_BYTES = 16 * 2**20  # on top: metadata, and data phones append after a photo (motion photos)
GIF_FRAMES = 8  # a GIF's frames together may hold this many times --max-pixels (giflib keeps them all)


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


def max_bytes(max_pixels: int) -> int:
    """Largest file accepted, in bytes: BYTES_PER_PIXEL per allowed pixel plus SLACK_BYTES.

    No image of max_pixels pixels needs more (16-bit RGBA PNG stored uncompressed: 8 bytes a pixel);
    the slack is for metadata and data appended after the image. Larger files are skipped, and
    refused by the served model, before a byte of them is read: training reads each file whole.
    """
    return BYTES_PER_PIXEL * max_pixels + SLACK_BYTES


def _shape(fmt: str, head: bytes, window: structure.Window, size: int) -> structure.Shape | str:
    if fmt == "JPEG":
        return structure.jpeg(window)
    if fmt == "GIF":
        return structure.gif(window)
    if fmt == "PNG":
        return structure.png(window)
    if fmt == "WEBP":
        return structure.webp(head, size)
    return structure.bmp(head, size, window)


def _too_large(shape: structure.Shape, max_pixels: int) -> str | None:
    pixels = shape.width * shape.height
    if pixels > max_pixels:
        return f"too large: {shape.width} x {shape.height} = {pixels} pixels, expected at most {max_pixels}"
    if shape.frames_pixels > GIF_FRAMES * max_pixels:
        return (f"too large: GIF frames of {shape.frames_pixels} pixels together, expected at most "
                f"{GIF_FRAMES} x {max_pixels} (the decoder holds every frame)")
    return None


def _decoded(data: bytes, fmt: str, shape: structure.Shape) -> str | None:
    """Pillow's decode of a small file (bytes in memory): None when it agrees that the file decodes.

    JPEGs decode at 1/8 scale (Pillow's draft mode: the same bytes read, far less work).
    """
    if fmt == "PNG":
        data = structure.without(data, shape.bad_ancillary)  # libpng drops them; Pillow would refuse the file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF and the like; the verdict says enough
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                if fmt == "JPEG":
                    image.draft(image.mode, (max(1, shape.width // 8), max(1, shape.height // 8)))
                if fmt == "JPEG" or shape.width * shape.height <= _FULL_CHECK_PIXELS:
                    image.load()
        # Whatever Pillow raises on bad bytes (hypothesis-fuzzed in tests/test_formats.py) is a verdict on the
        # file, never a crash of the scan: the decoder is third-party code reading untrusted bytes.
        except Exception as error:  # noqa: BLE001
            kind = "truncated" if "truncated" in str(error).lower() else "corrupt"
            return f"{kind}: {fmt}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    return None


def check(path: Path, max_pixels: int) -> str | None:
    """None if preprocess.decode_resize will decode the file; else a one-line reason (never raises for bad data).

    Reads the first 64 bytes, then the format's structure through a bounded window, then (files up to
    _FULL_CHECK_BYTES) the whole file for a decode: memory does not grow with the file's size.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file: 0 bytes"
        if size > max_bytes(max_pixels):
            return (f"too large: {size} bytes, expected at most {max_bytes(max_pixels)} "
                    f"({BYTES_PER_PIXEL} per --max-pixels pixel plus {SLACK_BYTES // 2**20} MiB)")
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
            kind, name = identify(head)
            if kind == "other image":
                return f"unsupported format ({name}): {_CONVERT}"
            if kind == "not an image":
                return f"not an image: found {name}"
            shape = _shape(name, head.ljust(_HEAD_BYTES, b"\0"), structure.Window(handle, size), size)
            if isinstance(shape, str):
                return shape
            if problem := _too_large(shape, max_pixels):
                return problem
            if size > _FULL_CHECK_BYTES or name == "BMP":  # a BMP's structure is all TensorFlow reads
                return None
            handle.seek(0)
            data = handle.read()
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    return _decoded(data, name, shape)
