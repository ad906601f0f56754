"""A Keras model goes to LiteRT natively (SavedModel -> TFLiteConverter), through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

import edgeyard

pytestmark = pytest.mark.slow


def test_keras_model_builds_fp32_and_int8_tflite(digits_data, tmp_path):
    keras = pytest.importorskip("keras", reason="the tflite extra brings Keras")
    pytest.importorskip("ai_edge_litert")
    d = digits_data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    to_nhwc = lambda x: np.transpose(x, (0, 2, 3, 1))  # noqa: E731
    model.fit(to_nhwc(d.x_train), d.y_train, epochs=5, batch_size=64, verbose=0)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "k.toml").write_text(
        'name = "k"\n[hardware]\narch = "aarch64"\nos = "android"\n'
        '[[targets]]\nbackend = "tflite"\nprecision = "int8"\n'
        '[[targets]]\nbackend = "tflite"\nprecision = "fp32"\n'
        '[[targets]]\nbackend = "executorch"\nprecision = "fp32"\n'
    )
    release = edgeyard.build(
        model, example_inputs=(to_nhwc(d.x_eval[:1]),), profiles=["k"],
        calibration=to_nhwc(d.x_calib), evaluation=(to_nhwc(d.x_eval), d.y_eval),
        out=tmp_path / "rel", profile_dirs=[profiles], log=None,
    )
    chain = {(e["backend"], e["precision"]): e for e in release.chain("k")}
    src = release.manifest["evaluation"]["source_accuracy"]
    assert release.manifest["model"]["source_format"] == "keras"
    assert chain["tflite", "fp32"]["status"] == "ok"
    assert chain["tflite", "fp32"]["parity"]["max_abs_error"] < 1e-4
    assert chain["tflite", "int8"]["status"] == "ok"
    assert src - chain["tflite", "int8"]["parity"]["accuracy"] <= 0.02
    assert chain["executorch", "fp32"]["status"] == "skipped"
    assert "this model is keras" in chain["executorch", "fp32"]["reason"]
