"""Images -> feature rows of the frozen module through the content-addressed cache; the feature
matrix, activations at the fine-tuning cut, and augmented views."""
