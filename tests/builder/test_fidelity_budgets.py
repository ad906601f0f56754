"""Outputs that are not a classifier's (a regression value, a dense per-pixel map) are judged by
cosine and SQNR: an artifact whose weights were perturbed in the file, which loads and runs
fine, FAILS on them; the real conversion of the same model is OK."""

from __future__ import annotations

import numpy as np
import pytest

import edgeyard
from edgeyard.backends import register_backend, unregister_backend
from fault_backends import PerturbedBackend

PROFILE = """
name = "{name}"
description = "a real target, a slightly and a badly perturbed one"
[hardware]
arch = "x86_64"
os = "linux"
[budgets]
{budgets}
[[targets]]
backend = "onnx"
precision = "fp32"
[[targets]]
backend = "test-perturbed"
precision = "fp32"
options = {{ noise = 0.0001 }}
[[targets]]
backend = "test-perturbed"
precision = "fp32"
options = {{ noise = 0.5 }}
"""


@pytest.fixture
def perturbed():
    register_backend(PerturbedBackend(), replace=True)
    yield
    unregister_backend("test-perturbed")


def _sobel(x: np.ndarray) -> np.ndarray:
    """Edge magnitude of [N, 1, 8, 8] images (the dense model's target)."""
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[..., 1:-1] = x[..., 2:] - x[..., :-2]
    gy[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    return np.sqrt(gx ** 2 + gy ** 2).astype(np.float32)


def _trained(kind: str, data):
    """Small torch models trained for a few seconds on the digits: a regression (the digit's
    value as a number) and a dense per-pixel map (its edges)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    if kind == "regression":
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                    torch.nn.Linear(32, 1))
        x, y = data.x_train, data.y_train.astype(np.float32)[:, None]
    else:
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(8, 1, 3, padding=1))
        x, y = data.x_train, _sobel(data.x_train)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(tx), ty).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("kind", ["regression", "dense"])
def test_a_perturbed_artifact_fails_on_fidelity(kind, tmp_path, digits_data, perturbed):
    pytest.importorskip("onnxruntime", reason="the onnx extra runs the artifacts")
    model = _trained(kind, digits_data)
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "fid.toml").write_text(PROFILE.format(name="fid", budgets="min_sqnr_db = 30"))
    x = digits_data.x_eval[:96]
    rel = edgeyard.build(model, example_inputs=(x[:1],), profiles=["fid"], profile_dirs=[d],
                         evaluation=x, out=tmp_path / "rel", log=None)
    chain = {(e["backend"], e["options"].get("noise")): e for e in rel.chain("fid")}
    good, slight, bad = (chain[("onnx", None)], chain[("test-perturbed", 0.0001)],
                         chain[("test-perturbed", 0.5)])
    assert good["status"] == "ok", good["reasons"]
    assert slight["status"] == "ok", slight["reasons"]
    assert bad["status"] == "failed"
    reasons = "; ".join(bad["reasons"])
    assert "output: cosine" in reasons and "SQNR" in reasons, reasons
    fid = bad["parity"]["outputs"]["output"]
    assert fid["sqnr_db"] < 30 and fid["cosine_mean"] < 0.99
    assert good["parity"]["outputs"]["output"]["sqnr_db"] > 100
    assert good["parity"]["top1_agreement"] is None  # not a classifier: nothing hides behind it
    assert not rel.ok
