"""The per-file verdict: formats named by content, kept files decode in TensorFlow, mutated bytes never crash.

The decoder fuzz runs in a subprocess (tests/helpers/fuzz_decode.py): if TensorFlow aborted on some input,
the test would fail naming the saved input instead of taking pytest down with it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

from corpus import build_corpus, ycck_jpeg
from fuzz_decode import mutants
from retrain.inputs import formats, scan
from serving_fixture import encode

HELPERS = Path(__file__).parents[1] / "helpers"


@pytest.mark.parametrize("head, kind, name", [
    (b"\xff\xd8\xff\xe0", "decoded", "JPEG"), (b"\x89PNG\r\n\x1a\n", "decoded", "PNG"),
    (b"GIF89a", "decoded", "GIF"), (b"BM", "decoded", "BMP"), (b"RIFF\0\0\0\0WEBPVP8 ", "decoded", "WEBP"),
    (b"RIFF\0\0\0\0WAVEfmt ", "not an image", "unknown bytes 52 49 46 46"),
    (b"II*\0\x08\0", "other image", "TIFF"), (b"MM\0*\0\0", "other image", "TIFF"),
    (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "other image", "HEIC/HEIF"),
    (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", "other image", "AVIF"),
    (b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif", "other image", "AVIF"),
    (b"\0\0\0\x18ftypisom\0\0\0\0isomiso2", "not an image", "ISO media (video?)"),
    (b"\xff\x0a\xfa", "other image", "JPEG XL"), (b"8BPS\0\1", "other image", "PSD"),
    (b"P6\n3 2\n255\n", "other image", "PPM/PGM/PBM"),
    (b"%PDF-1.7", "not an image", "a PDF document"), (b"  <svg xmlns=", "not an image", "SVG (vector)"),
    (b"hello, world\n", "not an image", "text"), (b"\0\1\2\3", "not an image", "unknown bytes 00 01 02 03"),
])
def test_formats_are_named_by_content(head, kind, name):
    assert formats.identify(head) == (kind, name)


def test_cmyk_and_ycck_jpegs_are_kept_and_decode_to_the_right_colour(tmp_path):
    import tensorflow as tf

    from retrain.images.preprocess import decode_resize

    rgb = (200, 30, 60)
    for name, blob in [("cmyk.jpg", encode(Image.new("RGB", (16, 16), rgb).convert("CMYK"), "JPEG", quality=100)),
                       ("ycck.jpg", ycck_jpeg(rgb))]:
        (tmp_path / name).write_bytes(blob)
        assert formats.check(tmp_path / name, 10**6) is None
        pixels = decode_resize(tf.constant(blob), 8, 10**6).numpy()
        np.testing.assert_allclose(pixels, np.broadcast_to(np.array(rgb) / 255, pixels.shape), atol=3 / 255)


def test_bmp_size_must_match_its_header_as_tensorflow_requires(tmp_path):
    blob = encode(Image.new("RGB", (10, 12), (1, 2, 3)), "BMP")
    for name, variant, reason in [("exact", blob, None), ("short", blob[:-1], "truncated: BMP is"),
                                  ("long", blob + b"\0\0", "unsupported format (BMP variant): 2 bytes after")]:
        (tmp_path / name).write_bytes(variant)
        verdict = formats.check(tmp_path / name, 10**6)
        assert verdict == reason if reason is None else verdict.startswith(reason)


def test_every_file_the_scan_keeps_decodes_in_tensorflow(tmp_path):
    import tensorflow as tf

    from retrain.images.preprocess import decode_resize

    root = tmp_path / "imgs"
    build_corpus(root, ["a", "b", "c"])
    decode = tf.function(lambda b: decode_resize(b, 16, 10**8), input_signature=[tf.TensorSpec([], tf.string)])
    for example in scan.scan(root, 10**8).examples:
        pixels = decode(tf.constant(example.path.read_bytes())).numpy()
        assert pixels.shape == (16, 16, 3) and 0.0 <= pixels.min() <= pixels.max() <= 1.0, example.rel


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=mutants())
def test_the_verdict_on_mutated_bytes_is_keep_or_one_line_reason(tmp_path, blob):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(blob)
    verdict = formats.check(path, 10**6)
    assert verdict is None or (verdict and "\n" not in verdict and ": " in verdict), verdict


@pytest.mark.slow
def test_decoder_on_mutated_bytes_decodes_or_refuses_and_agrees_with_the_scan(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS.parents[1]), str(HELPERS)])}
    result = subprocess.run([sys.executable, str(HELPERS / "fuzz_decode.py"), str(tmp_path), "300"], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, (f"decoder fuzz exited {result.returncode}; the input it was decoding is "
                                    f"{tmp_path / 'last.bin'}\n{result.stderr[-3000:]}")
    tally = json.loads((tmp_path / "result.json").read_text())
    assert tally["decoded"] > 20 and tally["refused"] > 20
    assert tally["scanner_kept_decoder_refused"] == []  # whatever the scan keeps, the served model decodes
