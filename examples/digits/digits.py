"""The digits data set and CNN used by the examples, tests and benchmarks.

Data: scikit-learn's bundled handwritten digits (1,797 8x8 grey images, 10 classes; no
download). Split 60% train, 20% calibration, 20% held-out evaluation, stratified and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Digits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray


def load(seed: int = 0) -> Digits:
    """Images as float32 [N, 1, 8, 8] in [0, 1], labels as int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, random_state=seed,
                                                  stratify=y)
    x_cal, x_ev, y_cal, y_ev = train_test_split(x_rest, y_rest, test_size=0.5,
                                                random_state=seed, stratify=y_rest)
    return Digits(x_tr, y_tr, x_cal, y_cal, x_ev, y_ev)


def make_cnn(width: int = 32, extra_fc: int = 0):
    """A small CNN: conv(width) -> conv(2*width) -> maxpool -> fc(128) -> [fc(128)] * extra_fc
    -> fc(10).

    `extra_fc` adds hidden 128x128 layers: a real change in compute used to make a release that
    is genuinely slower (2 extra layers: about 10% slower on ONNX Runtime, one thread, here).
    """
    import torch.nn as nn

    layers: list[nn.Module] = [
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * width * 16, 128), nn.ReLU(),
    ]
    for _ in range(extra_fc):
        layers += [nn.Linear(128, 128), nn.ReLU()]
    layers.append(nn.Linear(128, 10))
    return nn.Sequential(*layers)


def train(model, data: Digits, epochs: int = 15, seed: int = 0, lr: float = 1e-3):
    """Adam + cross-entropy, batch 64; deterministic for a seed. Returns the model in eval mode."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    model.train()
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        for i in range(0, len(perm), 64):
            idx = torch.from_numpy(perm[i : i + 64])
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def with_outlier_channel(model, data: Digits, scale: float = 300.0):
    """A copy of the digits CNN that computes exactly the same function but whose first conv has
    one outlier output channel, `scale` times larger than the others, and the second conv that
    channel's weights divided by `scale` (ReLU is positively homogeneous, so nothing changes in
    float). This is what BatchNorm folding with a tiny running variance, or LLM-style outlier
    features, do to real models: per-tensor int8 activations spend their whole range on one
    channel and the others round to zero. The channel chosen is the one with the largest
    activation on the evaluation data."""
    import copy

    import torch

    m = copy.deepcopy(model).eval()
    conv1, conv2 = m[0], m[2]
    with torch.no_grad():
        act = torch.relu(conv1(torch.from_numpy(data.x_eval)))
        ch = int(act.amax(dim=(0, 2, 3)).argmax())
        conv1.weight[ch] *= scale
        conv1.bias[ch] *= scale
        conv2.weight[:, ch] /= scale
    return m


def make_student():
    """A tenth-size student for the digits CNN (9,802 parameters against 151,306):
    conv(8) -> conv(16) -> maxpool -> fc(32) -> fc(10)."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 16, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )
