"""models.config and batching_parameters.txt beside saved_model/: what the real TF Serving reads.

With them, one `docker run` serves a run's output folder mounted at /models/model (README):
models.config is a ModelServerConfig text proto naming the model and its base path inside the
container; batching_parameters.txt a BatchingParameters text proto for --enable_batching. Both are
the same for every run, rewritten atomically, so a running server never reads half a file.
"""
from __future__ import annotations

from pathlib import Path

from retrain import fs

MODEL_NAME = "model"  # TF Serving's Docker image calls the model this too (MODEL_NAME=model)
CONTAINER_BASE = "/models/model/saved_model"  # where the README's docker run mounts <output>/saved_model

MODELS_CONFIG = f"""\
# TF Serving model config (ModelServerConfig text proto), read with --model_config_file.
# base_path is inside the container: the README's `docker run` mounts this folder at /models/model.
model_config_list {{
  config {{
    name: "{MODEL_NAME}"
    base_path: "{CONTAINER_BASE}"
    model_platform: "tensorflow"
    # the highest numbered version answers; a new run's version replaces it within a second
    model_version_policy {{ latest {{ num_versions: 1 }} }}
  }}
}}
"""

# Batches of up to 32 images (the size the export's map_fn decodes at once without much memory), formed
# within 2 ms of the first request; num_batch_threads is left to TF Serving (one per CPU core).
BATCHING_PARAMETERS = """\
# TF Serving batching (BatchingParameters text proto), read with --enable_batching --batching_parameters_file.
max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
pad_variable_length_inputs: false
"""


def write_server_config(output_dir: Path) -> tuple[Path, Path]:
    """Write <output_dir>/models.config and <output_dir>/batching_parameters.txt; returns their paths."""
    paths = Path(output_dir) / "models.config", Path(output_dir) / "batching_parameters.txt"
    fs.write_atomic(paths[0], MODELS_CONFIG)
    fs.write_atomic(paths[1], BATCHING_PARAMETERS)
    return paths
