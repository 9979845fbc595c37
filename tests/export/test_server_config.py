"""models.config and batching_parameters.txt parse as the protos the real TF Serving reads them as."""
from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from retrain.export.server_config import CONTAINER_BASE, MODEL_NAME, write_server_config

# tensorflow-serving-api ships no session_bundle_config_pb2, so BatchingParameters is declared here with
# the field names, numbers and types of tensorflow_serving/servables/tensorflow/session_bundle_config.proto
# (TF Serving master, 2026): text_format then refuses any unknown name or mistyped value, as the server does.
_BATCHING_FIELDS = [  # (name, number, wrapper message or scalar type, repeated)
    ("max_batch_size", 1, "Int64Value", False), ("batch_timeout_micros", 2, "Int64Value", False),
    ("max_enqueued_batches", 3, "Int64Value", False), ("num_batch_threads", 4, "Int64Value", False),
    ("thread_pool_name", 5, "StringValue", False), ("enable_large_batch_splitting", 8, "BoolValue", False),
    ("max_execution_batch_size", 9, "Int64Value", False), ("allowed_batch_sizes", 6, "int64", True),
    ("pad_variable_length_inputs", 7, "bool", False),
]


def batching_parameters_class():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb).SerializeToString())
    file = descriptor_pb2.FileDescriptorProto(name="session_bundle_config.proto", package="tensorflow.serving",
                                              syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    Field = descriptor_pb2.FieldDescriptorProto
    for name, number, kind, repeated in _BATCHING_FIELDS:
        field = message.field.add(name=name, number=number,
                                  label=Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL)
        if kind[0].isupper():
            field.type, field.type_name = Field.TYPE_MESSAGE, f".google.protobuf.{kind}"
        else:
            field.type = {"int64": Field.TYPE_INT64, "bool": Field.TYPE_BOOL}[kind]
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_files_parse_as_tf_servings_protos(tmp_path):
    models, batching = write_server_config(tmp_path)
    config = text_format.Parse(models.read_text("utf-8"), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (MODEL_NAME, CONTAINER_BASE, "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1
    parameters = text_format.Parse(batching.read_text("utf-8"), batching_parameters_class()())
    assert parameters.max_batch_size.value == 32 and parameters.batch_timeout_micros.value > 0
    assert not parameters.HasField("num_batch_threads")  # left to the server: one per core where it runs


def test_the_declared_batching_proto_refuses_what_the_server_would():


    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size: 32", batching_parameters_class()())  # a wrapper needs { value: }
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sizes { value: 32 }", batching_parameters_class()())


def test_rewriting_keeps_one_copy(tmp_path):
    first = [p.read_bytes() for p in write_server_config(tmp_path)]
    assert [p.read_bytes() for p in write_server_config(tmp_path)] == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batching_parameters.txt", "models.config"]
