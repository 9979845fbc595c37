"""Odd but real image files, made by hand: header size claims, GIF frames beyond the screen, PNG chunks
with bad CRCs, BMPs with V4/V5 headers and bit fields. Nothing binary is committed."""
from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from serving_fixture import encode, png_bytes

RGBA = (200, 30, 60, 128)  # a colour with half alpha: composited on white it is (227.5, 142.5, 157.5) / 255


def composited(rgba: tuple[int, int, int, int] = RGBA) -> np.ndarray:
    """float [3] in [0, 1]: rgba composited on white, as preprocess does it."""
    colour, alpha = np.array(rgba[:3]) / 255, rgba[3] / 255
    return colour * alpha + (1 - alpha)


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    """A PNG chunk; crc defaults to the right one."""
    value = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", value)


def png_with_chunk(extra: bytes, after_idat: bool = False) -> bytes:
    """A 6 x 5 RGBA PNG of RGBA with one more chunk before (or after) its image data."""
    png = encode(Image.new("RGBA", (6, 5), RGBA), "PNG")
    at = png.find(b"IEND") - 4 if after_idat else 33  # 33: right after IHDR
    return png[:at] + extra + png[at:]


def png_bad_crc(kind: bytes) -> bytes:
    """A PNG whose first `kind` chunk (IHDR, IDAT, ...) has its CRC flipped."""
    data = bytearray(encode(Image.new("RGBA", (6, 5), RGBA), "PNG"))
    at = data.find(kind)
    length = int.from_bytes(data[at - 4:at], "big")
    data[at + 4 + length] ^= 0xFF
    return bytes(data)


def bmp(width: int, height: int, pixels: bytes, *, bits: int = 32, compression: int = 3, header: int = 124,
        masks: tuple[int, ...] = (0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)) -> bytes:
    """A BMP with a DIB header of `header` bytes (40, 108: V4, 124: V5); masks follow the first 40 bytes
    (inside a V4/V5 header, after a 40-byte one); pixels: the rows as stored (bottom-up, padded to 4 bytes)."""
    dib = struct.pack("<IiiHHIIiiII", header, width, height, 1, bits, compression, len(pixels), 2835, 2835, 0, 0)
    dib += b"".join(struct.pack("<I", m) for m in masks)
    dib = dib.ljust(header, b"\0") if header > 40 else dib
    offset = 14 + len(dib)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + dib + pixels


def bgra_bmp(rgba: tuple[int, int, int, int] = RGBA, side: int = 4, **options) -> bytes:
    """A solid 32-bit BMP of rgba stored as B, G, R, A bytes."""
    r, g, b, a = rgba
    return bmp(side, side, bytes((b, g, r, a)) * side * side, **options)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8 x 8 JPEG whose frame header (SOF) claims width x height."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (10, 20, 30)), "JPEG"))
    at = data.find(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int, screen: tuple[int, int] | None = None) -> bytes:
    """A real 4 x 4 GIF whose image descriptor claims width x height (the screen too, unless given)."""
    data = bytearray(encode(Image.new("P", (4, 4), 1), "GIF"))
    at = data.find(b"\x2c")
    data[at + 5:at + 9] = struct.pack("<HH", width, height)
    data[6:10] = struct.pack("<HH", *(screen or (width, height)))
    return bytes(data)


def gif_frame_beyond_screen(frame: tuple[int, int], frames: int = 1, screen: tuple[int, int] = (1, 1)) -> bytes:
    """A GIF whose logical screen is `screen` but whose frames are real, solid, `frame`-sized images."""
    images = [Image.new("L", frame, 255 * (i % 2)) for i in range(frames)]
    data = bytearray(encode(images[0], "GIF", save_all=frames > 1, append_images=images[1:]))
    data[6:10] = struct.pack("<HH", *screen)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    """An 8-bit gray PNG header claiming width x height over a tiny image data stream."""
    return png_bytes(width, height, 8, 0, zlib.compress(b"\0" * 64))


def bmp_claiming(width: int, height: int) -> bytes:
    """A 24-bit BMP header claiming width x height (its pixels absent: the size check refuses it first)."""
    return bmp(width, height, b"\0" * 64, bits=24, compression=0, header=40, masks=())
