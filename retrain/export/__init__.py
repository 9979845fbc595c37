"""What leaves a run: the SavedModel and its assets, TFLite (with its metadata) and ONNX checked against
it, and the commands that use an export (predict, evaluate)."""
