"""Bytes -> pixels: format headers, EXIF orientation, the one preprocessing shared by training and
serving, batch decoding, and training-time augmentation."""
