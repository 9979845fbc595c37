"""Names, handles and folders -> a loadable image feature-vector module and its contract.

``--module`` takes a name from ``retrain modules`` (the bundled ``efficientnet_lite0`` works offline),
a TF-Hub or Kaggle handle (retrain.backbone.hub_cache downloads it once into the TF-Hub cache), or a local SavedModel
folder. TensorFlow is imported only once a handle has been validated, so a mistyped name gets its
one-line error at once.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from retrain import fs
from retrain.backbone import hub_cache
from retrain.backbone.catalog import BUNDLED, KNOWN
from retrain.config import module_home
from retrain.errors import RetrainError, reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModuleInfo:
    """A resolved module. ``image_size`` is the fixed input side in pixels (None: any size is taken);
    ``feature_dim`` the length of the output vector (None: not declared); ``fingerprint`` a hex id of
    the graph and the weights, so a changed module never reuses features computed by another."""
    handle: str
    path: str
    image_size: int | None
    feature_dim: int | None
    fingerprint: str


def _local(path: Path) -> str:
    if not path.is_dir():
        raise RetrainError(f"--module: {path} is a file; expected a TF2 SavedModel directory")
    if not (path / "saved_model.pb").is_file():
        raise RetrainError(f"--module: {path} has no saved_model.pb; expected a TF2 SavedModel directory")
    return str(path)


def resolve(name_or_handle: str) -> str:
    """Name, handle or directory -> local SavedModel directory that hub.KerasLayer can load.

    ``efficientnet_lite0`` builds the bundled module on first use; other names and URLs are looked up
    in (or downloaded into) the TF-Hub cache. Raises RetrainError in one line for anything unknown,
    for a directory without saved_model.pb, and within seconds for a download without network.
    """
    if name_or_handle == BUNDLED:
        from retrain.backbone import lite0  # deferred: imports TensorFlow

        return str(lite0.ensure_built())
    if name_or_handle in KNOWN:
        return _downloaded(name_or_handle, KNOWN[name_or_handle][0])
    path = Path(name_or_handle).expanduser()
    if path.exists():
        return _local(path)
    url = hub_cache.as_url(name_or_handle)
    if url is not None:
        return _downloaded(name_or_handle, url)
    close = difflib.get_close_matches(name_or_handle, KNOWN, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise RetrainError(f"--module: found {name_or_handle!r}{hint}, expected a name that `retrain modules` "
                       "shows, a TF-Hub/Kaggle handle or a SavedModel directory")


def _downloaded(handle: str, url: str) -> str:
    path = hub_cache.download(handle, url)
    return path if "://" in path else _local(Path(path))  # UNCOMPRESSED format reads from cloud storage


def fingerprint(path: str | Path) -> str:
    """Hex id of a SavedModel's graph and weights.

    With fingerprint.pb (TF >= 2.12): saved_model_checksum (the graph file) joined with checkpoint_hash
    (the variables' index, which holds a checksum of every tensor), since the graph alone stays the
    same when only weights change. Without it: SHA-256 of saved_model.pb and variables/variables.index.
    """
    path = Path(path)
    if (path / "fingerprint.pb").is_file():
        import tensorflow as tf

        fp = tf.saved_model.experimental.read_fingerprint(str(path))
        return f"{fp.saved_model_checksum:016x}{fp.checkpoint_hash:016x}"
    digest = hashlib.sha256()
    for part in (path / "saved_model.pb", path / "variables" / "variables.index"):
        if part.is_file():
            digest.update(part.read_bytes())
    return digest.hexdigest()


def tf1_signature(signatures):
    """The signature a TF1 Hub format module (or a plain export) computes features with."""
    return signatures.get("default") or signatures.get("serving_default") or next(iter(signatures.values()))


def feature_output(outputs):
    """The feature vector among a module's outputs: the output itself, or from a dict (TF1 Hub format
    names it "default")."""
    if isinstance(outputs, dict):
        return outputs.get("default", outputs.get("feature_vector", next(iter(outputs.values()))))
    return outputs


def _image_function_specs(obj, path: str):
    """(input TensorSpec [N, H, W, 3], output shape) of the module's __call__, else of its TF1 signature."""
    import tensorflow as tf

    call = obj.__call__ if callable(obj) else None
    functions = list(getattr(call, "concrete_functions", None) or [])
    signatures = getattr(obj, "signatures", None) or {}
    if not functions and signatures:
        functions = [tf1_signature(signatures)]
    for function in functions:
        inputs = [s for s in tf.nest.flatten(function.structured_input_signature)
                  if isinstance(s, tf.TensorSpec) and s.shape.rank == 4]
        flat = tf.nest.flatten(feature_output(function.structured_outputs))
        if inputs and len(flat) == 1:
            return inputs[0], flat[0].shape
    raise RetrainError(f"--module: {path} has no function taking float32 images [N, H, W, 3] to one output; "
                       "expected an image feature-vector SavedModel")


def _read_contract(path: str) -> tuple[int | None, int | None]:
    """(fixed input side or None, feature length or None) from the module's call signature."""
    import tensorflow as tf

    try:
        obj = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise RetrainError(f"--module: {path} does not load ({reason(exc)}); expected a TF2 SavedModel") from None
    images, output = _image_function_specs(obj, path)
    if output.rank is not None and output.rank != 2:
        raise RetrainError(f"--module: {path} outputs shape {output}; expected a feature vector [N, D] "
                           "(an image feature-vector module, not a feature map)")
    height, width = images.shape[1], images.shape[2]
    if height is not None and width is not None and height != width:
        raise RetrainError(f"--module: {path} takes {height}x{width} images; expected a square input")
    image_size = height if height is not None and width is not None else None
    return image_size, (output[-1] if output.rank else None)


def _contract(path: str, fp: str) -> tuple[int | None, int | None]:
    """The contract, read once per fingerprint: loading a module costs seconds, and every run needs
    the contract before anything else, while the exporter loads the module anyway."""
    memo = module_home() / "contracts" / f"{fp}.json"
    try:
        image_size, feature_dim = json.loads(memo.read_text())
        return image_size, feature_dim
    except (OSError, ValueError, TypeError):
        pass
    contract = _read_contract(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        fs.write_atomic(memo, json.dumps(list(contract)))
    except OSError as exc:
        log.debug("could not memoize the contract of %s: %s", path, exc)
    return contract


def load_info(name_or_handle: str) -> ModuleInfo:
    """Resolve a module and read its contract: fixed input side (or None) and feature length (or None).
    Raises RetrainError when the folder is not a loadable image feature-vector SavedModel."""
    path = resolve(name_or_handle)
    fp = fingerprint(path)
    image_size, feature_dim = _contract(path, fp)
    where = "" if str(path) == str(name_or_handle) else f" ({path})"  # a local folder given as it is: once
    log.info("module %s%s: image size %s, %s features", name_or_handle, where, image_size or "free",
             feature_dim or "unknown")
    return ModuleInfo(name_or_handle, path, image_size, feature_dim, fp)


DEFAULT_IMAGE_SIZE = 224  # the usual ImageNet input side, for modules that take any size


def image_size_for(module: ModuleInfo, requested: int | None) -> int:
    """The module's fixed size wins; --image-size applies to modules that take any size (default 224)."""
    if module.image_size is None:
        size = requested or DEFAULT_IMAGE_SIZE
        log.info("images resized to %dx%d", size, size)
        return size
    if requested is not None and requested != module.image_size:
        raise RetrainError(f"--image-size: found {requested}, but module {module.handle} expects "
                           f"{module.image_size}x{module.image_size} images")
    return module.image_size
