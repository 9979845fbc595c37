"""The pretrained network: names and handles -> a loadable module, the TF-Hub cache, the bundled
EfficientNet-Lite0 and its weight reader, the trainable backbone, the engines that run it, and the one
Keras import site."""
