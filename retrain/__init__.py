"""retrain: a new softmax layer on a frozen TF-Hub image feature vector, exported for TF Serving.

    import retrain
    result = retrain.run(retrain.Config(images=Path("data/fashion")))
"""
from retrain.config import Config
from retrain.errors import RetrainError
from retrain.pipeline import Result, run
from retrain.version import __version__

__all__ = ["Config", "Result", "RetrainError", "run", "__version__"]
