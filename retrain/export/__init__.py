"""What leaves a run: the SavedModel and its assets, TFLite, and the commands that use an export
(predict, evaluate)."""
