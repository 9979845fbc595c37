"""Run in its own process (python tests/mediapipe_classify.py IMAGES.npy MODEL...): MediaPipe Tasks'
ImageClassifier opens each MODEL given only its path and classifies each uint8 RGB image of IMAGES.npy
([N, H, W, 3]). Prints one JSON line: {MODEL: {"names": label names by score index, "scores": [N, K]}}.

A process of its own: MediaPipe bundles its own TFLite runtime, kept apart from TensorFlow's.
"""
from __future__ import annotations

import json
import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision


def classify(model: str, images: np.ndarray) -> dict:
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
    names, scores = {}, []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in images:
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image, np.uint8))
            categories = classifier.classify(frame).classifications[0].categories
            names.update({c.index: c.category_name for c in categories})
            scores.append([score for _, score in sorted((c.index, c.score) for c in categories)])
    return {"names": [names[i] for i in sorted(names)], "scores": scores}


if __name__ == "__main__":
    pixels = np.load(sys.argv[1])
    print(json.dumps({model: classify(model, pixels) for model in sys.argv[2:]}, ensure_ascii=False))
