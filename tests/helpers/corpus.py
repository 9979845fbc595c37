"""A messy image folder built at test time: one file for each case the scanner must keep or skip.

build_corpus(root, classes) adds the cases to root/<class>/ (next to any good images already there)
and writes the targets of "outside" links under root.parent / (root.name + "-outside"). It returns
the paths (relative to root, as Scan reports them) that must be skipped and that must be kept; OS
debris (.DS_Store, Thumbs.db, ._*, desktop.ini, hidden and __MACOSX folders) is in neither: the scan
ignores it without a skipped.csv line. Nothing binary is committed: every file is made here.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from serving_fixture import animated_webp, encode, png_bytes


def ycck_jpeg(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    """A YCCK JPEG (Adobe transform 2) showing rgb: CMY as YCbCr plus K, as Photoshop writes CMYK.

    Pillow cannot write YCCK, so the YCbCr values of (255 - rgb) are stored through its CMYK encoder
    (which inverts, as Adobe CMYK is stored) and the Adobe segment's transform byte is set to 2.
    """
    r, g, b = (255 - v for v in rgb)
    ycc = [0.299 * r + 0.587 * g + 0.114 * b, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
           128 + 0.5 * r - 0.418688 * g - 0.081312 * b]
    stored = np.array([*ycc, 255]).round().clip(0, 255).astype(np.uint8)
    data = bytearray(encode(Image.fromarray(np.broadcast_to(255 - stored, (size, size, 4)).copy(), "CMYK"),
                            "JPEG", quality=100))
    at = data.find(b"Adobe")
    data[at - 2 + int.from_bytes(data[at - 2:at], "big") - 1] = 2  # the segment's last byte: transform
    return bytes(data)


def _exif_jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)


def _png16(rgb: tuple[int, int, int], side: int = 24) -> bytes:
    """A solid 16-bit RGB PNG (each 8-bit value v stored as v * 257)."""
    row = b"\0" + struct.pack(">3H", *(v * 257 for v in rgb)) * side
    return png_bytes(side, side, 16, 2, zlib.compress(row * side))


def _with_thumbnail(jpeg: bytes) -> bytes:
    """The JPEG with an APP1 Exif segment holding a thumbnail JPEG: an end marker before the image data."""
    thumbnail = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "JPEG")
    payload = b"Exif\0\0MM\0*\0\0\0\x08\0\0" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _huge_header_png() -> bytes:
    """A 20,000 x 20,000 PNG header over one tiny IDAT: tiny file, huge claim (refused from the header)."""
    return png_bytes(20_000, 20_000, 8, 2, zlib.compress(b"\0" * 64))


def _skipped_files(rgb: Image.Image) -> dict[str, bytes]:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    jpeg, png = encode(noise, "JPEG"), encode(noise, "PNG")  # a few KB: 100 bytes is a real truncation
    return {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[:100], "cut-in-half.jpg": jpeg[:len(jpeg) // 2], "no-end-marker.jpg": jpeg[:-2],
        "cut-after-thumbnail.jpg": _with_thumbnail(jpeg)[:-200],
        "truncated.png": png[:100], "cut-in-half.png": png[:len(png) // 2],
        "truncated.gif": encode(noise, "GIF")[:600], "cut-in-half.gif": encode(noise, "GIF")[:1000],
        "random-bytes.jpg": b"\x13\x37" + np.random.default_rng(1).bytes(3000),
        "text.png": b"this is a note, not an image\n" * 10,
        "document.jpg": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 200,
        "scan.tiff": encode(rgb, "TIFF"),
        "photo.heic": struct.pack(">I", 24) + b"ftypheic\0\0\0\0mif1heic" + b"\0" * 200,
        "photo.avif": encode(rgb, "AVIF"),
        "photo.jxl": b"\xff\x0a" + np.random.default_rng(2).bytes(300),
        "container.jxl": b"\0\0\0\x0cJXL \r\n\x87\n" + b"\0" * 300,
        "layers.psd": b"8BPS\0\1" + b"\0" * 200,
        "icon.ico": encode(rgb.resize((32, 32)), "ICO"),
        "moving.webp": animated_webp(seed=4, frames=3, side=32),
        "huge-header.png": _huge_header_png(),
        "palette.bmp": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "BMP"),
        "one-bit.bmp": encode(rgb.convert("1"), "BMP"),
    }


def _kept_files(rgb: Image.Image) -> dict[str, bytes]:
    ramp = np.asarray(rgb).copy()
    rgba = Image.fromarray(np.dstack([ramp, np.full(ramp.shape[:2], 200, np.uint8)]), "RGBA")
    frames = [rgb, Image.new("RGB", rgb.size, (0, 0, 0))]
    return {
        "webp-named.jpeg": encode(rgb, "WEBP"), "lossless.webp": encode(rgb, "WEBP", lossless=True),
        "rgba.png": encode(rgba, "PNG"), "la.png": encode(rgba.convert("LA"), "PNG"),
        "palette.png": encode(rgb.convert("P"), "PNG"), "sixteen-bit.png": _png16(rgb.getpixel((0, 0))),
        "gray.jpg": encode(rgb.convert("L"), "JPEG"), "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "ycck.jpg": ycck_jpeg(rgb.getpixel((0, 0))), "rotated-exif.jpg": _exif_jpeg(rgb, 6),
        "progressive.jpg": encode(rgb, "JPEG", progressive=True),
        "trailing-data.jpg": encode(rgb, "JPEG") + b"\0" * 100, "thumbnail.jpg": _with_thumbnail(encode(rgb, "JPEG")),
        "motion-photo.jpg": encode(rgb, "JPEG") + b"\0\0\0\x18ftypmp42" + np.random.default_rng(3).bytes(100_000),
        "animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "still.gif": encode(rgb, "GIF"), "gray.bmp": encode(rgb.convert("L"), "BMP"), "rgb.bmp": encode(rgb, "BMP"),
        "UPPER.JPG": encode(rgb, "JPEG"), "no-extension": encode(rgb, "PNG"), "with space.png": encode(rgb, "PNG"),
        "ünïcödé 写真.png": encode(rgb, "PNG"), "-leading-dash.png": encode(rgb, "PNG"),
        "quote'and\"comma,.png": encode(rgb, "PNG"),
    }


_DEBRIS = {".DS_Store": b"\0\0\0\1Bud1", "Thumbs.db": b"\xd0\xcf\x11\xe0" + b"\0" * 60,
           "desktop.ini": b"[.ShellClassInfo]\n",
           "._photo.jpg": b"\0\5\26\7\0\2\0\0Mac OS X", ".hidden.png": b"", ".git/HEAD": b"ref: refs/heads/main\n",
           "__MACOSX/._a.png": b"\0\5\26\7"}


def _write(folder: Path, name: str | bytes, data: bytes) -> None:
    path = os.path.join(os.fsencode(folder), os.fsencode(name))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def build_corpus(root: Path, classes: list[str], colours: dict[str, tuple[int, int, int]] | None = None) -> dict:
    """Add one file per case to root/<class>/ (cases dealt round the classes); returns
    {"expected_skipped": set of rel paths, "expected_kept": set of rel paths}.

    Kept images are solid `colours[class]` (default mid grey) so they help, not hurt, a colour classifier.
    Needs at least 2 classes; links need a file system with symlinks.
    """
    root, outside = Path(root), Path(root).parent / f"{Path(root).name}-outside"
    skipped, kept = set(), set()

    def image(label: str) -> Image.Image:
        return Image.new("RGB", (24, 24), (colours or {}).get(label, (128, 128, 128)))

    def place(i: int, name: str | bytes, data: bytes, into: set) -> None:
        label = classes[i % len(classes)]
        _write(root / label, name, data)
        into.add(f"{label}/{os.fsdecode(name)}")

    for i, (name, data) in enumerate(_skipped_files(image(classes[0])).items()):
        place(i, name, data, skipped)
    for i, label in enumerate(classes):
        for name, data in _kept_files(image(label)).items():
            place(i, name, data, kept)
        for name, data in _DEBRIS.items():
            _write(root / label, name, data)
    place(0, b"caf\xe9-latin1-name.png", encode(image(classes[0]), "PNG"), kept)  # not valid UTF-8
    _write(root, "README.txt", b"files directly under the images folder belong to no class\n")
    skipped.add("README.txt")
    _links(root, outside, classes, image, skipped, kept)
    return {"expected_skipped": skipped, "expected_kept": kept}


def _links(root: Path, outside: Path, classes: list[str], image, skipped: set, kept: set) -> None:
    """Symlinks: a folder outside, a loop, a self-loop, a broken link, one file in two classes, one twice in a class."""
    a, b = classes[0], classes[1]
    _write(outside / "extra", "one.png", encode(image(b), "PNG"))
    _write(outside / "extra", "two.jpg", encode(image(b), "JPEG"))
    os.symlink(outside / "extra", root / b / "linked-folder")
    kept |= {f"{b}/linked-folder/one.png", f"{b}/linked-folder/two.jpg"}
    os.symlink(root / a, root / a / "loop")
    os.symlink("self-link.jpg", root / a / "self-link.jpg")
    os.symlink(outside / "missing.jpg", root / a / "broken-link.jpg")
    skipped |= {f"{a}/loop", f"{a}/self-link.jpg", f"{a}/broken-link.jpg"}
    _write(outside, "shared.png", encode(image(a), "PNG"))
    os.symlink(outside / "shared.png", root / a / "shared.png")
    os.symlink(outside / "shared.png", root / b / "shared.png")
    skipped |= {f"{a}/shared.png", f"{b}/shared.png"}
    _write(root / a, "dup-a.png", encode(image(a), "PNG"))
    os.symlink("dup-a.png", root / a / "dup-b.png")  # same class twice: used once, under the first path
    kept.add(f"{a}/dup-a.png")
