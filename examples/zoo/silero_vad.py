"""Silero VAD (v6, 16 kHz): a trained streaming voice-activity detector, as a torch module.

Weights: the `silero-vad` wheel (6.2.3), `silero_vad/data/silero_vad.jit`: the TorchScript
model that `silero_vad.load_silero_vad()` returns by default (the same weights as
`silero_vad.onnx`). Its 16 kHz sub-model's state dict (`_model.*`: STFT basis, four conv
blocks, LSTM cell, output conv; 309k parameters) is loaded into `SileroVAD16k` below, a plain
torch port of that sub-model. The package has no eager-torch definition; the port follows the
TorchScript code and the package's own tinygrad port (`silero_vad/tinygrad_model.py`): reflect
pad 64 -> STFT as a conv (256 taps, hop 128) -> magnitude -> 4 x (conv1d + ReLU) -> LSTM cell
-> ReLU -> 1x1 conv -> sigmoid. Checked against onnxruntime on `silero_vad.onnx`
(sr=16000): streaming ~700 chunks of speech and silence through both, max |difference| 2.8e-5 on
the probability; chunk by chunk on the evaluation inputs below, 1.8e-7 on the probability and
8.8e-6 on the state. Not used: `silero_vad_16k.safetensors` (the tinygrad port's file) holds a different
checkpoint (weights differ by up to 18), and the ONNX files take the state as (2, batch, 128),
not batch first, and `silero_vad.onnx` / `_op18_ifless` dispatch on `sr` with an If node
(`silero_vad_openvino_16k.onnx` is the static, If-free one: (1, 576) + (2, 1, 128)).

Model: forward(x, state) -> (speech_prob, new_state).
    x: float32 (batch, 576): 64 samples of context (the previous chunk's last 64 samples, zeros
       at the start of a stream) followed by a 512-sample chunk (32 ms at 16 kHz);
    state: float32 (batch, 2, 128): the LSTM's (h, c), zeros at the start of a stream (silero's
       own layout is (2, batch, 128); it is batch first here);
    speech_prob: float32 (batch, 1) in [0, 1]; new_state: float32 (batch, 2, 128).
16 kHz only (no `sr` input: the 8 kHz sub-model is not part of this module).

Inputs: streams of 16 kHz audio, each a clip of 0.5-1 s of lead-in, an English sentence of
`zoo.minilm` (at most 12 words) spoken by espeak-ng (`espeak-ng -v en -s 150`, resampled from
22.05 kHz), then 1 s of tail. The background of each clip (over the whole clip) cycles through
digital silence, white noise, brown noise and mains hum (50 Hz + harmonics), the noise at 5-25 dB
below the speech (numpy seed 0). Each stream is run through the model from a zero state, chunk
by chunk as silero's own iterator does, and samples are taken from it with the state the model
had reached at that point (so the state inputs are the model's own, realistic, states; the first
chunk of a stream has the zero state). Labels (int64): 1 (speech) for chunks inside the spoken
sentence whose clean speech RMS is >= 0.03; 0 (non-speech: silence or noise) for chunks in the
lead-in or more than 0.3 s into the tail; chunks in between (pauses inside the sentence, the
model's hang-over right after speech) are not sampled. Each clip gives as many speech as
non-speech chunks: evaluation 128 chunks from 16 clips (16 from 4 clips for small=True),
calibration 64 chunks from 8 other clips, other sentences and other noise (16 from 4).

Task metric "vad_accuracy": the share of evaluation chunks where speech_prob > 0.5 matches the
label.

Needs the espeak-ng program (not a Python module): `apt-get install espeak-ng`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ._common import ZooModel, missing
from .speech_encoder import SAMPLE_RATE, espeak, short_sentences, speak

NAME = "silero_vad"
REQUIRES = ("torch", "scipy", "silero_vad")
INSTALL = ("make install (the zoo dependency group and the weight wheels, Makefile "
           "ZOO_WEIGHTS); the espeak-ng program: apt-get install espeak-ng")
CHUNK, CONTEXT = 512, 64
_BACKGROUNDS = ("silence", "white", "brown", "hum")


def data_dir() -> Path:
    """silero_vad/data in the installed wheel (found without importing the package, whose
    __init__ calls torch.set_num_threads(1))."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"silero_vad is not installed: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _module() -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SileroVAD16k(nn.Module):
        """The 16 kHz silero VAD network, state batch first."""

        def __init__(self) -> None:
            super().__init__()
            self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
            self.conv1 = nn.Conv1d(129, 128, kernel_size=3, stride=1, padding=1)
            self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
            self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
            self.conv4 = nn.Conv1d(64, 128, kernel_size=3, stride=1, padding=1)
            self.lstm_cell = nn.LSTMCell(128, 128)
            self.final_conv = nn.Conv1d(128, 1, kernel_size=1)

        def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = F.pad(x.unsqueeze(1), (0, 64), mode="reflect")
            x = self.stft_conv(x)  # (batch, 2 * 129, 4): real and imaginary parts
            x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.relu(self.conv3(x))
            x = F.relu(self.conv4(x))  # (batch, 128, 1)
            h, c = self.lstm_cell(x[:, :, 0], (state[:, 0], state[:, 1]))
            prob = torch.sigmoid(self.final_conv(F.relu(h).unsqueeze(-1)))  # (batch, 1, 1)
            return prob[:, :, 0], torch.stack([h, c], dim=1)

    return SileroVAD16k()


def load_model() -> Any:
    """SileroVAD16k with the 16 kHz weights of the wheel's silero_vad.jit, in eval mode."""
    import torch

    scripted = torch.jit.load(str(data_dir() / "silero_vad.jit"), map_location="cpu")
    sd = {k[len("_model."):]: v for k, v in scripted.state_dict().items() if k.startswith("_model.")}
    renames = {"stft.forward_basis_buffer": "stft_conv.weight",
               "decoder.decoder.2.weight": "final_conv.weight",
               "decoder.decoder.2.bias": "final_conv.bias"}
    for i in range(4):
        for w in ("weight", "bias"):
            renames[f"encoder.{i}.reparam_conv.{w}"] = f"conv{i + 1}.{w}"
    for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        renames[f"decoder.rnn.{w}"] = f"lstm_cell.{w}"
    model = _module()
    model.load_state_dict({renames[k]: v for k, v in sd.items()}, strict=True)
    return model.eval()


def _background(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of the given kind (zeros for "silence")."""
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "brown":
        x = np.cumsum(rng.standard_normal(n))
        x -= np.convolve(x, np.ones(801) / 801, mode="same")  # high-pass: remove the drift
    else:  # "hum": 50 Hz mains and two harmonics
        t = np.arange(n) / SAMPLE_RATE
        x = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                for f, a in ((50, 1.0), (100, 0.5), (150, 0.3)))
    x = np.asarray(x, dtype=np.float64)
    return (x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def _clips(texts: list[str], rng: np.random.Generator, first: int) -> list[tuple[np.ndarray, ...]]:
    """(audio, clean speech, speech start, speech end) per text, background types cycling."""
    clips = []
    for i, speech in enumerate(speak(texts)):
        lead = int(rng.integers(SAMPLE_RATE // 2, SAMPLE_RATE + 1))
        clean = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(SAMPLE_RATE, np.float32)])
        kind = _BACKGROUNDS[(first + i) % len(_BACKGROUNDS)]
        active = speech[np.abs(speech) > 0.01]
        level = np.sqrt(np.mean(active ** 2)) * 10 ** (-rng.uniform(5, 25) / 20)
        noisy = clean + np.float32(level) * _background(kind, len(clean), rng)
        clips.append((np.clip(noisy, -1, 1).astype(np.float32), clean, lead, lead + len(speech)))
    return clips


def _samples(model: Any, clips: list[tuple[np.ndarray, ...]], per_clip: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stream the clips through the model (all at once, as a batch, from zero states) and take
    per_clip / 2 speech and per_clip / 2 non-speech chunks of each, with the state the model had
    reached before each."""
    import torch

    n = max(len(c[0]) for c in clips) // CHUNK + 1
    padded = np.zeros((len(clips), CONTEXT + n * CHUNK), dtype=np.float32)
    for j, (audio, *_) in enumerate(clips):
        padded[j, CONTEXT: CONTEXT + len(audio)] = audio  # zeros after the clip's end are never used
    windows = np.stack([padded[:, i * CHUNK: i * CHUNK + CHUNK + CONTEXT] for i in range(n)], axis=1)
    seen = np.empty((len(clips), n, 2, 128), dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of tiny sequential steps: threads only add overhead
    try:
        state = torch.zeros(len(clips), 2, 128)
        with torch.no_grad():
            for i in range(n):
                seen[:, i] = state.numpy()
                _, state = model(torch.from_numpy(windows[:, i]), state)
    finally:
        torch.set_num_threads(threads)

    xs, states, labels = [], [], []
    for j, (audio, clean, start, end) in enumerate(clips):
        lo = np.arange(len(audio) // CHUNK) * CHUNK
        hi = lo + CHUNK
        rms = np.array([np.sqrt(np.mean(clean[a:b] ** 2)) for a, b in zip(lo, hi, strict=True)])
        speech = np.flatnonzero((lo >= start) & (hi <= end) & (rms >= 0.03))
        quiet = np.flatnonzero((hi <= start) | (lo >= end + int(0.3 * SAMPLE_RATE)))
        k = per_clip // 2
        for idx, label in ((speech, 1), (quiet, 0)):
            pick = np.sort(rng.choice(idx, size=k, replace=False))
            xs.append(windows[j, pick])
            states.append(seen[j, pick])
            labels.append(np.full(k, label, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(states), np.concatenate(labels)


def vad_accuracy(artifact: list[np.ndarray], source: list[np.ndarray], labels: np.ndarray | None) -> float:
    """Share of chunks where speech_prob > 0.5 matches the label (1 speech, 0 not)."""
    if labels is None:
        raise ValueError("vad_accuracy needs the labels")
    prob = np.asarray(artifact[0]).reshape(len(labels), -1)[:, 0]
    return float(np.mean((prob > 0.5) == (np.asarray(labels) == 1)))


def load(small: bool = False) -> ZooModel:
    if miss := missing(REQUIRES):
        raise ImportError(f"{NAME} needs {', '.join(miss)}: {INSTALL}")
    espeak()
    model = load_model()

    per_clip, n_eval_clips, n_calib_clips = (4, 4, 4) if small else (8, 16, 8)
    rng = np.random.default_rng(0)
    texts = short_sentences(n_eval_clips + n_calib_clips)
    ev_clips = _clips(texts[:n_eval_clips], rng, 0)
    cal_clips = _clips(texts[n_eval_clips:], rng, n_eval_clips)
    ex, es, ey = _samples(model, ev_clips, per_clip, rng)
    cx, cs, _ = _samples(model, cal_clips, per_clip, rng)
    evaluation, calibration = (ex, es), (cx, cs)
    n_eval, n_calib = len(ex), len(cx)
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=(ex[:1], es[:1]),
        evaluation=evaluation,
        calibration=calibration,
        labels=ey,
        weights="trained: Silero VAD v6, 16 kHz sub-model of silero_vad/data/silero_vad.jit from the "
                "silero-vad 6.2.3 wheel, in a torch port (matches silero_vad.onnx to 3e-5)",
        data=f"{n_eval} + {n_calib} chunks (64 context + 512 samples at 16 kHz, float32) of espeak-ng "
             "speech over silence / white / brown noise / hum, with the model's streaming LSTM state "
             "(float32 (2, 128)) at that point; labels 1 speech, 0 silence or noise",
        kind="vad",
        task_metric=vad_accuracy,
        task_metric_name="vad_accuracy",
        notes={"requires_program": "espeak-ng", "sample_rate": SAMPLE_RATE, "chunk": CHUNK,
               "context": CONTEXT, "state_layout": "(batch, 2, 128) = (h, c); silero's is (2, batch, 128)",
               "onnx_alternative": str(data_dir() / "silero_vad_openvino_16k.onnx")},
    )
