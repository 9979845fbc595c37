"""Skips found after the scan (by the decoding graph) read like scan skips: same category, path relative to --images."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

import odd_images as odd
from retrain.inputs import formats, gather, scan, skipped
from serving_fixture import encode

_JPEG = encode(Image.new("RGB", (32, 32), (1, 2, 3)), "JPEG")
BAD = {
    "cut.jpg": _JPEG[:len(_JPEG) // 2], "cut.png": encode(Image.new("RGB", (9, 9)), "PNG")[:60],
    "text.png": b"hello, this is text" * 4, "huge.png": odd.png_claiming(5000, 5000),
    "bomb.gif": odd.gif_frame_beyond_screen((1200, 1000)),
    "rgba-masks.bmp": odd.bgra_bmp(masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
    "idat-crc.png": odd.png_bad_crc(b"IDAT"),
}


def _category(reason: str) -> str:
    return reason.split(":")[0]


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_decoder_skips_with_the_scans_category(tmp_path, name):
    from retrain.images.decoding import Decoder

    path = tmp_path / name
    path.write_bytes(BAD[name])
    found: list = []
    Decoder(16, 10**6)([path], found)
    assert len(found) == 1 and found[0][1].startswith(skipped.CATEGORIES), found
    assert _category(found[0][1]) == _category(formats.check(path, 10**6)), (found, formats.check(path, 10**6))


def test_stage_skips_are_logged_and_listed_relative_to_images(tmp_path, caplog):
    images = tmp_path / "images"
    examples = [scan.Example(tmp_path / "real" / "x.png", "a/x.png", 0)]
    with caplog.at_level(logging.WARNING):
        found = gather.relative(examples, [(examples[0].path, "Invalid PNG data, size 78")], images)
    assert found == [("a/x.png", "corrupt: Invalid PNG data, size 78")]
    assert [r.getMessage() for r in caplog.records] == [f"skipped {images / 'a/x.png'}: corrupt: Invalid PNG data, "
                                                        "size 78"]


@pytest.mark.parametrize("raw, category", [
    ("image_bytes: image of 25000000 pixels (width x height), expected at most 1000000", "too large"),
    ("image_bytes: file of 9 bytes, expected at most 8", "too large"),
    ("image_bytes: not a JPEG, PNG, GIF, BMP or WebP file, expected an encoded image", "not an image"),
    ("image_bytes: animated WebP, expected a still image", "unsupported format (animated WebP)"),
    ("Invalid PNG data, size 78", "corrupt"), ("jpeg: premature end of data segment", "truncated"),
    ("truncated: JPEG image data has no end marker", "truncated"), ("unreadable: Permission denied", "unreadable"),
])
def test_categorized_gives_every_reason_a_scan_category(raw, category):
    assert _category(skipped.categorized(raw)) == category
    assert Path(".")  # the reason keeps its detail after the category
    assert skipped.categorized(raw).endswith(raw.removeprefix("image_bytes: "))
