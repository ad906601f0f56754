"""PP-OCRv4 text detection (DBNet: a per-pixel text probability map), as an ONNX file.

Weights: `rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx` inside the PyPI wheel
`rapidocr-onnxruntime` 1.4.4 (PaddleOCR's PP-OCRv4 mobile detector exported with paddle2onnx; no
download). Its input is dynamic ([batch, 3, height, width], sides multiples of 32); the zoo fixes
it to [1, 3, 320, 320] (small: [1, 3, 160, 160]). Output: [batch, 1, H, W] sigmoid text
probabilities, which rapidocr's DBPostProcess binarizes at 0.3 (`thresh` in its config.yaml).

Inputs: "pages" rendered here with Pillow's built-in font (`ImageFont.load_default`, no font
files): 2-7 lines of real English text (words from the dataset descriptions bundled with
scikit-learn, `sklearn/datasets/descr/*.rst`) at seeded positions, sizes (12-34 px; small: 9-20
px) and colours on a light, slightly tinted background, some lines with an underline or a box
around them. Pages are drawn at the input size directly, so rapidocr's DetPreProcess resize
(to multiples of 32) is the identity; the rest of it is applied: BGR order as cv2 reads images,
(x / 255 - 0.5) / 0.5, HWC -> CHW. Float32 [N, 3, 320, 320] (small: [N, 3, 160, 160]).

Task metric: mean over images of the IoU between the artifact's and the source's text maps,
both binarized at 0.3 (an image where both are empty counts 1).
"""

from __future__ import annotations

import numpy as np

from ._common import ZooModel, split
from .ocr_rec import INSTALL as _INSTALL
from .ocr_rec import corpus_words, font, model_path

NAME = "ocr_det"
REQUIRES: tuple[str, ...] = ("onnxruntime", "PIL", "rapidocr_onnxruntime", "sklearn")
INSTALL = _INSTALL

MODEL_FILE = "ch_PP-OCRv4_det_infer.onnx"
THRESH = 0.3


def render_page(rng: np.random.Generator, side: int, sizes: tuple[int, int]) -> np.ndarray:
    """A side x side page with a few text lines: uint8 [side, side, 3], BGR."""
    from PIL import Image, ImageDraw

    words = corpus_words()
    light = int(rng.integers(200, 256))
    bg = tuple(int(v) for v in np.clip(light - rng.integers(0, 35, 3), 0, 255))
    img = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(2, side // 8))
    for _ in range(int(rng.integers(2, 8))):
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        f = font(size)
        x = int(rng.integers(2, side // 3))
        start = int(rng.integers(0, len(words)))
        text = " ".join(words[start:start + int(rng.integers(1, 7))])
        while len(text) > 1 and f.getbbox(text)[2] > side - x - 2:
            text = text.rsplit(" ", 1)[0] if " " in text else text[:-1]
        left, top, right, bottom = f.getbbox(text)
        if y + bottom - top + 4 > side:
            break
        dark = int(rng.integers(0, 100))
        fg = tuple(int(v) for v in np.clip(dark + rng.integers(0, 60, 3), 0, 255))
        draw.text((x - left, y - top), text, fill=fg, font=f)
        deco = rng.random()
        if deco < 0.15:  # underline
            draw.line((x, y + bottom - top + 2, x + right - left, y + bottom - top + 2), fill=fg)
        elif deco < 0.25:  # a box around the line
            draw.rectangle((x - 3, y - 3, x + right - left + 3, y + bottom - top + 3), outline=fg)
        y += bottom - top + int(rng.integers(size // 3 + 2, size + 8))
    return np.ascontiguousarray(np.asarray(img)[..., ::-1])


def preprocess(img_bgr: np.ndarray) -> np.ndarray:
    """rapidocr's DetPreProcess without the resize: uint8 [H, W, 3] -> float32 [3, H, W]."""
    return ((img_bgr.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def map_iou(artifact: list[np.ndarray], source: list[np.ndarray],
            labels: np.ndarray | None = None) -> float:
    """Mean per-image IoU of the text maps binarized at 0.3."""
    a = np.asarray(artifact[0]) > THRESH
    s = np.asarray(source[0]) > THRESH
    axes = tuple(range(1, a.ndim))
    inter = (a & s).sum(axis=axes)
    union = (a | s).sum(axis=axes)
    return float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean())


def load(small: bool = False) -> ZooModel:
    side, sizes = (160, (9, 20)) if small else (320, (12, 34))
    n_eval, n_calib = (16, 32) if small else (96, 48)
    rng = np.random.default_rng(2)
    x = np.stack([preprocess(render_page(rng, side, sizes)) for _ in range(n_eval + n_calib)])
    evaluation, calibration = split((x,), n_eval)
    return ZooModel(
        name=NAME,
        model=str(model_path(MODEL_FILE)),
        example_inputs=(x[:1],),
        evaluation=evaluation,
        calibration=calibration,
        weights=f"PyPI wheel rapidocr-onnxruntime 1.4.4: rapidocr_onnxruntime/models/{MODEL_FILE} "
                "(PaddleOCR PP-OCRv4 mobile DBNet detector)",
        data=f"{side}x{side} pages of 2-7 text lines rendered with Pillow's built-in font from "
             "scikit-learn's bundled dataset descriptions (seeded positions, sizes, colours); "
             "rapidocr's det preprocessing: BGR, (x/255 - 0.5)/0.5, CHW",
        labels=None,
        kind="ocr-detection",
        task_metric=map_iou,
        task_metric_name="IoU of text maps > 0.3 vs source",
        notes={"threshold": THRESH,
               "input_shape_in_source": f"dynamic [batch, 3, H, W]; fixed here to [1, 3, {side}, {side}]"},
    )
