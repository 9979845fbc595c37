"""TFLite model metadata for an image classifier, the way on-device libraries read it.

MediaPipe Tasks' ImageClassifier, ML Kit and the TFLite Task Library look for a "TFLITE_METADATA"
entry in the model's metadata list; it names a buffer holding a ModelMetadata flatbuffer (file
identifier "M001", tensorflow/tflite-support's metadata_schema.fbs). From it they learn that the input
is an RGB image and how to normalise camera bytes (float = (byte - mean) / std), and which associated
file names the output's classes (TENSOR_AXIS_LABELS, one label per line in score order). Associated
files travel inside the .tflite as a zip archive appended after the flatbuffer: interpreters read the
flatbuffer from the front and ignore the tail, metadata readers open the same bytes as a zip.

Only the subset of the schema a classifier needs is written here, field by field with the flatbuffers
runtime. Slot numbers are the fields' positions in the schema (a union takes two: its type, then its
value), so they must never be renumbered.
"""
from __future__ import annotations

import dataclasses
import io
import zipfile

import flatbuffers
import numpy as np

METADATA_NAME = b"TFLITE_METADATA"  # the entry in Model.metadata that metadata readers look for
FILE_IDENTIFIER = b"M001"  # metadata_schema.fbs: file_identifier
MODEL_IDENTIFIER = b"TFL3"  # schema.fbs of the TFLite model
# The largest "Added in" version among the fields written below: none is newer than the first schema.
MIN_PARSER_VERSION = "1.0.0"

# Enum and union values of metadata_schema.fbs.
_RGB = 1  # ColorSpaceType
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2  # ContentProperties union
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union


@dataclasses.dataclass(frozen=True)
class ClassifierInfo:
    """What the metadata says about one image classifier (one input, one output)."""
    name: str
    description: str
    version: str
    image_size: int          # square input side in pixels
    labels: list[str]        # in score order
    labels_file: str = "labels.txt"
    mean: float = 0.0        # float input = (pixel byte - mean) / std: 0 and 255 give [0, 1]
    std: float = 255.0
    author: str = "retrain"


def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _floats(b: flatbuffers.Builder, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for value in reversed(values):
        b.PrependFloat32(value)
    return b.EndVector()


def _table(b: flatbuffers.Builder, slots: int, fields: dict[int, tuple[str, int | float]]) -> int:
    """A table with `slots` fields; fields: slot -> (kind, value), children already built (offsets)."""
    prepend = {"offset": b.PrependUOffsetTRelativeSlot, "byte": b.PrependInt8Slot, "ubyte": b.PrependUint8Slot,
               "uint": b.PrependUint32Slot}
    b.StartObject(slots)
    for slot, (kind, value) in sorted(fields.items()):
        prepend[kind](slot, value, 0)
    return b.EndObject()


def _stats(b: flatbuffers.Builder, low: float, high: float) -> int:
    high_vector, low_vector = _floats(b, [high]), _floats(b, [low])
    return _table(b, 2, {0: ("offset", high_vector), 1: ("offset", low_vector)})  # Stats: max, min


def _input_tensor(b: flatbuffers.Builder, info: ClassifierInfo) -> int:
    name = b.CreateString("image")
    description = b.CreateString(f"RGB image, {info.image_size}x{info.image_size} pixels; float input is "
                                 f"(byte - {info.mean:g}) / {info.std:g}, so [0, 1]")
    size = _table(b, 2, {0: ("uint", info.image_size), 1: ("uint", info.image_size)})  # ImageSize
    image = _table(b, 2, {0: ("byte", _RGB), 1: ("offset", size)})  # ImageProperties
    content = _table(b, 3, {0: ("ubyte", _IMAGE_PROPERTIES), 1: ("offset", image)})  # Content
    mean, std = _floats(b, [info.mean]), _floats(b, [info.std])
    normalisation = _table(b, 2, {0: ("offset", mean), 1: ("offset", std)})  # NormalizationOptions
    unit = _table(b, 2, {0: ("ubyte", _NORMALIZATION_OPTIONS), 1: ("offset", normalisation)})  # ProcessUnit
    units = _offsets(b, [unit])
    stats = _stats(b, (0 - info.mean) / info.std, (255 - info.mean) / info.std)
    # TensorMetadata: name 0, description 1, dimension_names 2, content 3, process_units 4, stats 5, files 6
    return _table(b, 7, {0: ("offset", name), 1: ("offset", description), 3: ("offset", content),
                         4: ("offset", units), 5: ("offset", stats)})


def _output_tensor(b: flatbuffers.Builder, info: ClassifierInfo) -> int:
    name = b.CreateString("probability")
    description = b.CreateString(f"Probabilities of the {len(info.labels)} labels, in the order of "
                                 f"{info.labels_file}")
    features = _table(b, 0, {})  # FeatureProperties has no fields
    content = _table(b, 3, {0: ("ubyte", _FEATURE_PROPERTIES), 1: ("offset", features)})
    stats = _stats(b, 0.0, 1.0)
    file_name = b.CreateString(info.labels_file)
    file_description = b.CreateString("Labels of the output scores, one a line")
    # AssociatedFile: name 0, description 1, type 2
    labels = _table(b, 5, {0: ("offset", file_name), 1: ("offset", file_description),
                           2: ("byte", _TENSOR_AXIS_LABELS)})
    files = _offsets(b, [labels])
    return _table(b, 7, {0: ("offset", name), 1: ("offset", description), 3: ("offset", content),
                         5: ("offset", stats), 6: ("offset", files)})


def metadata_bytes(info: ClassifierInfo) -> bytes:
    """A ModelMetadata flatbuffer (identifier M001) describing one image classifier."""
    b = flatbuffers.Builder(1024)
    inputs, outputs = _offsets(b, [_input_tensor(b, info)]), _offsets(b, [_output_tensor(b, info)])
    # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2, output_tensor_metadata 3, ...
    subgraph = _table(b, 10, {2: ("offset", inputs), 3: ("offset", outputs)})
    subgraphs = _offsets(b, [subgraph])
    strings = {slot: b.CreateString(text) for slot, text in
               {0: info.name, 1: info.description, 2: info.version, 4: info.author, 7: MIN_PARSER_VERSION}.items()}
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4, license 5,
    # associated_files 6, min_parser_version 7
    root = _table(b, 8, {3: ("offset", subgraphs), **{slot: ("offset", s) for slot, s in strings.items()}})
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def attach(model: bytes, info: ClassifierInfo) -> bytes:
    """model (a .tflite flatbuffer without metadata) with info's metadata and its labels file.

    The metadata goes into a new buffer named by a TFLITE_METADATA entry of Model.metadata (the model
    is unpacked and packed again with TensorFlow's own generated schema code; tensors and weights keep
    their bytes); the labels file is appended as a zip archive.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    unpacked = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    if any(entry.name == METADATA_NAME for entry in unpacked.metadata or []):
        raise ValueError("the model already carries TFLITE_METADATA")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_bytes(info), np.uint8)
    unpacked.buffers = [*(unpacked.buffers or []), buffer]
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(unpacked.buffers) - 1
    unpacked.metadata = [*(unpacked.metadata or []), entry]
    b = flatbuffers.Builder(len(model) + 4096)
    b.Finish(unpacked.Pack(b), file_identifier=MODEL_IDENTIFIER)
    archive = io.BytesIO()
    archive.write(b.Output())
    with zipfile.ZipFile(archive, "a") as files:
        files.writestr(info.labels_file, "".join(f"{label}\n" for label in info.labels))
    return archive.getvalue()


def read(model: bytes) -> tuple[bytes, dict[str, bytes]]:
    """(the ModelMetadata flatbuffer, {associated file name: bytes}) of a model written by attach."""
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        if root.Metadata(i).Name() == METADATA_NAME:
            found = root.Buffers(root.Metadata(i).Buffer()).DataAsNumpy().tobytes()
            break
    else:
        raise ValueError("no TFLITE_METADATA in the model")
    with zipfile.ZipFile(io.BytesIO(model)) as files:
        return found, {name: files.read(name) for name in files.namelist()}
