"""Mutated image bytes for the scanner and the decoder, and the decoder fuzz run in its own process.

`mutants()` is a hypothesis strategy: a small real JPEG (with EXIF), PNG (8 and 16 bit, a bad ancillary
CRC), GIF (animated, frames beyond the screen), BMP (V5 bit fields), WebP (lossy, lossless, alpha,
animated) or random bytes, then a few byte flips,
truncations, insertions and deletions. Run as a script, this file feeds them to
preprocess.decode_resize in this process: decoding can abort a process (FACTS.md: animated WebP),
so test_formats runs it as a subprocess and reads the verdict. Before each decode the input is
saved to OUT/last.bin, so a crash leaves its culprit behind. Usage: python tests/helpers/fuzz_decode.py OUT N
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

S = 16


@functools.lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    from odd_images import bgra_bmp, chunk, gif_frame_beyond_screen, png_with_chunk
    from serving_fixture import animated_webp, encode, png16_gradient

    rng = np.random.default_rng(11)
    image = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    rgba = Image.fromarray(rng.integers(0, 256, (12, 10, 4), dtype=np.uint8), "RGBA")
    frames = [image, Image.new("RGB", image.size, (9, 9, 9))]
    return (encode(image, "JPEG", exif=exif), encode(image, "JPEG", progressive=True), encode(image, "PNG"),
            encode(rgba, "PNG"), png16_gradient(8, 6)[0], encode(image.convert("P"), "PNG"),
            encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), encode(image, "BMP"),
            encode(image, "WEBP"), encode(image, "WEBP", lossless=True), encode(rgba, "WEBP"),
            animated_webp(seed=1, frames=2, side=16), encode(image.convert("CMYK"), "JPEG"),
            bgra_bmp(), bgra_bmp(header=108, compression=6), gif_frame_beyond_screen((12, 10), frames=2, screen=(4, 4)),
            png_with_chunk(chunk(b"tEXt", b"k\0v", crc=0)))


@st.composite
def mutants(draw) -> bytes:
    """One seed file (or random bytes) after 0-4 random edits."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        edit = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if edit == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "cut":
            del data[at:]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


def main(out: Path, examples: int) -> None:
    """Decode every mutant; write the tally and any scanner/decoder disagreements to OUT/result.json."""
    import tensorflow as tf

    from retrain.images import preprocess
    from retrain.inputs import formats

    decode = tf.function(lambda b: preprocess.decode_resize(b, S, 10**6),
                         input_signature=[tf.TensorSpec([], tf.string)])
    tally = {"decoded": 0, "refused": 0, "scanner_kept_decoder_refused": [], "scanner_refused_decoder_decoded": []}

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutants())
    def run(data: bytes) -> None:
        (out / "last.bin").write_bytes(data)
        kept = formats.check(out / "last.bin", 10**6) is None
        try:
            pixels = decode(tf.constant(data)).numpy()
        except tf.errors.InvalidArgumentError:
            tally["refused"] += 1
            if kept:
                tally["scanner_kept_decoder_refused"].append(data.hex())
            return
        assert pixels.shape == (S, S, 3) and np.isfinite(pixels).all(), pixels.shape
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0
        tally["decoded"] += 1
        if not kept:
            reason = formats.check(out / "last.bin", 10**6)
            tally["scanner_refused_decoder_decoded"].append(reason)

    run()
    (out / "result.json").write_text(json.dumps(tally))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(Path(sys.argv[1]), int(sys.argv[2]))
