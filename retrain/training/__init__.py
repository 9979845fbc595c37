"""The new layer on feature rows; the augmented head; phase-2 fine-tuning, its batches and distribution."""
