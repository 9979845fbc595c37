"""One exported model and the sample files every serving test uses (built once per session).

build_serving_export() trains nothing: it builds the documented model shape (frozen fake hub module
-> Dropout -> Dense softmax) with fixed head weights, exports it as version 1, and writes
samples/<name>.bin plus samples/expect.json, the answers serve_check.py must reproduce in a
process that imports only TensorFlow.
"""
from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 24
LABELS = ["blue", "café", "red"]  # the accent proves labels travel as UTF-8 JSON strings
MAX_PIXELS = 50_000_000
MIXED_BATCH = ["jpeg_large", "png_small", "gray_jpeg", "rgba_png", "gif_animated"]
SOLID_COLOURS = [(20, 40, 230), (30, 200, 40), (220, 30, 30), (255, 255, 255)]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG written by hand; idat is the zlib stream of the scanlines (a filter byte before each)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def huge_png(side: int = 20_000) -> bytes:
    """A valid 1-bit side x side PNG of about 50 KB: decoding it would take side**2 bytes or more."""
    row = b"\0" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return png_bytes(side, side, 1, 0, idat)


def png16_gradient(width: int = IMAGE_SIZE, height: int = IMAGE_SIZE) -> tuple[bytes, np.ndarray]:
    """16-bit RGB PNG whose values span 0..65535; returns (file, uint16 [H, W, 3] pixels)."""
    ramp = np.linspace(0, 65535, width * height * 3).round().astype(">u2").reshape(height, width, 3)
    rows = b"".join(b"\0" + ramp[y].tobytes() for y in range(height))
    return png_bytes(width, height, 16, 2, zlib.compress(rows, 9)), ramp.astype(np.uint16)


def animated_webp(seed: int, frames: int = 3, side: int = 48) -> bytes:
    """An animated WebP of random frames: the content that makes TF 2.21 abort when decoded."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(frames)]
    return encode(images[0], "WEBP", save_all=True, append_images=images[1:], duration=80, loop=0)


def sample_images() -> dict[str, bytes]:
    """Named encoded files: good ones of every format, and the ones the graph must refuse."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:900, 0:1200]
    large = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    small = Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8))
    rgba = np.dstack([np.asarray(small), np.linspace(0, 255, 320).reshape(16, 20).astype(np.uint8)])
    frames = [Image.new("RGB", (30, 30), colour) for colour in SOLID_COLOURS[:3]]
    samples = {
        "jpeg": encode(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)), "JPEG", quality=90),
        "jpeg_large": encode(Image.fromarray(large), "JPEG", quality=85),
        "png_small": encode(small, "PNG"),
        "gray_jpeg": encode(small.convert("L"), "JPEG"),
        "gray_png": encode(small.convert("L"), "PNG"),
        "rgba_png": encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "gif_animated": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "bmp": encode(small, "BMP"),
        "webp": encode(small, "WEBP"),
        "webp_lossless": encode(small, "WEBP", lossless=True),
        "webp_rgba": encode(Image.fromarray(rgba, "RGBA"), "WEBP"),
        "png16": png16_gradient()[0],
        "huge_png": huge_png(),
    }
    samples.update({f"animated_webp_{i}": animated_webp(seed=i) for i in range(3)})
    samples.update(bad_samples(samples["jpeg"]))
    return samples


def bad_samples(jpeg: bytes) -> dict[str, bytes]:
    """Bytes that are not decodable images, several wearing a real format's magic bytes."""
    noise = np.random.default_rng(11).integers(0, 256, 600, dtype=np.uint8).tobytes()
    return {
        "bad_text": b"this is not an image, it is a sentence",
        "bad_empty": b"",
        "bad_noise": noise,
        "bad_truncated_jpeg": jpeg[: len(jpeg) // 3],
        "bad_png_magic": b"\x89PNG\r\n\x1a\n" + noise,
        "bad_gif_magic": b"GIF89a" + noise,
        "bad_bmp_magic": b"BM" + noise,
        "bad_webp_magic": b"RIFF\x00\x01\x00\x00WEBPVP8 " + noise,
        "bad_jxl": b"\xff\x0a" + noise,  # JPEG XL: decodable by TF but refused (size not checked cheaply)
    }


@dataclasses.dataclass
class ServingExport:
    model: object
    version_dir: Path
    samples: dict[str, bytes]
    samples_dir: Path
    labels: list[str] = dataclasses.field(default_factory=lambda: list(LABELS))
    image_size: int = IMAGE_SIZE


def build_model(fake_module: Path):
    """hub.KerasLayer(trainable=False) -> Dropout -> Dense softmax with fixed, decisive weights."""
    import tensorflow_hub as hub
    import tf_keras

    model = tf_keras.Sequential([
        hub.KerasLayer(str(fake_module), trainable=False, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
        tf_keras.layers.Dropout(0.2),
        tf_keras.layers.Dense(len(LABELS), activation="softmax"),
    ])
    rng = np.random.default_rng(5)
    dense = model.layers[-1]
    dense.set_weights([rng.normal(size=dense.kernel.shape).astype("float32"), np.zeros(len(LABELS), "float32")])
    return model


def solid_images() -> np.ndarray:
    """float32 [4, S, S, 3] solid colours in [0, 1], the serving_images probe."""
    colours = np.array(SOLID_COLOURS, np.float32) / 255.0
    return np.broadcast_to(colours[:, None, None, :], (len(colours), IMAGE_SIZE, IMAGE_SIZE, 3)).copy()


def build_serving_export(fake_module: Path, root: Path) -> ServingExport:
    import tensorflow as tf

    from retrain.export.saved_model import export_saved_model
    from retrain.images.preprocess import decode_resize

    model = build_model(fake_module)
    samples = sample_images()
    version_dir = export_saved_model(
        model, labels=LABELS, image_size=IMAGE_SIZE, base_dir=root / "run" / "saved_model", version=1,
        info={"metrics": {"val_accuracy": np.float64(0.91)}, "run": 1}, max_pixels=MAX_PIXELS,
        warmup_images=[samples["jpeg"], samples["png_small"], samples["bad_text"]])
    samples_dir = root / "samples"
    samples_dir.mkdir()
    for name, data in samples.items():
        (samples_dir / f"{name}.bin").write_bytes(data)
    skew = model(decode_resize(tf.constant(samples["jpeg"]), IMAGE_SIZE, MAX_PIXELS)[None], training=False)
    expect = {"labels": LABELS, "image_size": IMAGE_SIZE, "max_pixels": MAX_PIXELS, "mixed_batch": MIXED_BATCH,
              "module_handle": str(fake_module), "warmup_records": 2, "metrics": {"val_accuracy": 0.91},
              "skew_jpeg_scores": skew.numpy()[0].tolist(), "solid_colours": SOLID_COLOURS,
              "solid_scores": model(solid_images(), training=False).numpy().tolist()}
    (samples_dir / "expect.json").write_text(json.dumps(expect, ensure_ascii=False), encoding="utf-8")
    return ServingExport(model=model, version_dir=version_dir, samples=samples, samples_dir=samples_dir)
