"""The folder (or list) -> labelled examples, skipped files with reasons, and the split. No TensorFlow."""
