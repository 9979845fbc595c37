"""Run in its own process (python tests/mediapipe_classify.py MODEL IMAGES.npy): MediaPipe Tasks'
ImageClassifier opens MODEL given only its path and classifies each uint8 RGB image of IMAGES.npy
([N, H, W, 3]). Prints JSON: {"names": label names by score index, "scores": [N, K] scores by index}.

A process of its own: MediaPipe bundles its own TFLite runtime, kept apart from TensorFlow's.
"""
from __future__ import annotations

import json
import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision


def main(model: str, images_path: str) -> None:
    images = np.load(images_path)
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
    names, scores = {}, []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in images:
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image, np.uint8))
            categories = classifier.classify(frame).classifications[0].categories
            names.update({c.index: c.category_name for c in categories})
            scores.append([score for _, score in sorted((c.index, c.score) for c in categories)])
    print(json.dumps({"names": [names[i] for i in sorted(names)], "scores": scores}, ensure_ascii=False))


if __name__ == "__main__":
    main(*sys.argv[1:])
