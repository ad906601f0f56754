"""Fidelity metrics for any output, the budgets on them, task metrics, evaluation arguments and
the recipe rule: the pure parts, on arrays made here (no toolchain)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeyard.backends.base import Recipe
from edgeyard.builder.fidelity import SQNR_CAP_DB, measure, per_sample_cosine
from edgeyard.builder.pipeline import _split_evaluation
from edgeyard.builder.recipes import candidates, classify, order_by_rule
from edgeyard.builder.verify import TaskMetric, budget_problems, compare, is_classifier
from edgeyard.errors import DataError, EdgeyardError, ProfileError
from edgeyard.profiles import Budgets, parse_budgets

RNG = np.random.default_rng(0)


def test_identical_outputs_are_perfect():
    ref = RNG.normal(size=(20, 3, 4)).astype(np.float32)
    f = measure("h", ref, ref.copy())
    assert f.cosine_min == pytest.approx(1.0) and f.cosine_mean == pytest.approx(1.0)
    assert f.sqnr_db == SQNR_CAP_DB and f.rel_l2 == 0.0 and f.max_abs_error == 0.0
    assert f.top1_agreement is None  # not a classifier unless said so


def test_noise_gives_the_sqnr_it_should():
    ref = RNG.normal(size=(200, 64))
    noise = RNG.normal(size=ref.shape) * 0.1  # noise power 1% of the signal's: 20 dB
    f = measure("e", ref, ref + noise)
    assert f.sqnr_db == pytest.approx(20.0, abs=0.3)
    assert f.rel_l2 == pytest.approx(0.1, rel=0.05)
    assert 0.99 < f.cosine_mean < 0.999 and f.cosine_min <= f.cosine_p1 <= f.cosine_mean


def test_a_flipped_embedding_is_caught_per_sample():
    ref = RNG.normal(size=(100, 16))
    out = ref.copy()
    out[[7, 9]] = -out[[7, 9]]  # two samples broken: the mean hides them, the tail does not
    f = measure("e", ref, out)
    assert f.cosine_min == pytest.approx(-1.0) and f.cosine_p1 == pytest.approx(-1.0)
    assert f.cosine_mean == pytest.approx(0.96)


def test_scalar_outputs_get_one_cosine_over_the_samples():
    """A per-sample cosine of one number is only its sign: a regression output whose values
    are noise with the right sign must not score 1."""
    ref = RNG.uniform(10, 11, size=(50, 1))
    out = RNG.uniform(10, 11, size=(50, 1))  # in the right range, unrelated
    f = measure("y", ref, out)
    assert f.cosine_mean == f.cosine_min < 0.5
    assert measure("y", ref, ref + 0.5).cosine_mean < 0.9  # a constant shift is not free
    assert measure("y", ref, ref * (1 + 1e-6)).cosine_mean > 0.999


def test_zero_vectors_and_non_finite_outputs():
    ref = np.zeros((3, 4))
    assert per_sample_cosine(ref, ref).tolist() == [1.0, 1.0, 1.0]
    assert per_sample_cosine(ref, ref + [[1, 0, 0, 0]] * 3).tolist() == [0.0, 0.0, 0.0]
    bad = RNG.normal(size=(3, 4))
    bad[1, 2] = np.nan
    f = measure("x", RNG.normal(size=(3, 4)), bad)
    assert f.cosine_mean is None and f.sqnr_db is None


def test_classifier_topk_and_integer_exact_match():
    logits = RNG.normal(size=(300, 10))
    out = logits.copy()
    out[:30] = out[:30][:, ::-1]  # 10% of samples scrambled
    f = measure("logits", logits, out, classifier=True)
    assert f.top1_agreement == pytest.approx(0.9, abs=0.01)
    assert f.top1_agreement <= f.top5_agreement <= 1.0
    ids = RNG.integers(0, 50, size=(40, 8))
    wrong = ids.copy()
    wrong[:4, 0] += 1
    assert measure("ids", ids, wrong).exact_match == pytest.approx(0.9)


def test_embeddings_are_not_judged_as_classifiers():
    emb = RNG.normal(size=(30, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert not is_classifier(emb, None, None)
    assert is_classifier(emb, np.zeros(30), None)  # labels say it is one
    assert not is_classifier(RNG.normal(size=(30, 8)), None, False)
    probs = np.eye(8)[RNG.integers(0, 8, 30)]  # one-hot probabilities: unit rows, but a classifier
    assert is_classifier(probs, None, None)


def test_budgets_judge_every_output_by_name():
    ref = [RNG.normal(size=(64, 32)), RNG.normal(size=(64, 4, 4))]
    out = [ref[0] + RNG.normal(size=ref[0].shape) * 0.3, ref[1].copy()]
    parity = compare(ref, out, None, ["embedding", "map"], classifier=False)
    problems = budget_problems(parity, None, None, Budgets())
    assert len(problems) == 1 and problems[0].startswith("embedding: cosine 0.9")
    assert "< budget 0.99" in problems[0]
    loose = Budgets(outputs={"embedding": {"min_cosine": 0.9}})
    assert budget_problems(parity, None, None, loose) == []
    sqnr = Budgets(min_sqnr_db=20.0, outputs={"embedding": {"min_cosine": 0.9}})
    assert [p.split(":")[0] for p in budget_problems(parity, None, None, sqnr)] == ["embedding"]
    assert "SQNR" in budget_problems(parity, None, None, sqnr)[0]


def test_parity_round_trips_through_the_manifest_dict():
    ref = [RNG.normal(size=(16, 10))]
    parity = compare(ref, [ref[0] * 1.01], RNG.integers(0, 10, 16), ["logits"])
    again = type(parity).from_dict(parity.to_dict())
    assert again.outputs == parity.outputs and again.top1_agreement == parity.top1_agreement


def test_task_metric_value_and_budget():
    ref = [RNG.normal(size=(32, 5))]

    def agree(out, src, labels):
        return float(np.mean(out[0].argmax(1) == src[0].argmax(1)))

    metric = TaskMetric(agree, "argmax agreement", min_value=0.99)
    bad = [ref[0][:, ::-1].copy()]
    parity = compare(ref, bad, None, task_metric=metric, source_task_value=1.0)
    assert parity.task["value"] < 0.5 and parity.task["source_value"] == 1.0
    assert any(p.startswith("argmax agreement") for p in
               budget_problems(parity, None, None, Budgets(min_cosine=None)))

    def broken(out, src, labels):
        raise ZeroDivisionError("oops")

    with pytest.raises(EdgeyardError, match=r"task metric 'broken' raised ZeroDivisionError"):
        compare(ref, ref, None, task_metric=TaskMetric(broken))
    with pytest.raises(EdgeyardError, match="must be a callable"):
        TaskMetric.coerce(3)  # type: ignore[arg-type]


def test_budget_tables_validate_and_merge():
    b = parse_budgets({"min_cosine": 0.995, "outputs": {"aux": {"min_sqnr_db": 12}}}, "x")
    assert b.for_output("aux").min_sqnr_db == 12.0 and b.for_output("aux").min_cosine == 0.995
    assert b.for_output("main").min_sqnr_db is None
    merged = Budgets(max_size_mb=20).merged({"max_size_mb": 100, "outputs": {"aux": {"min_cosine": 0.9}}})
    assert merged.max_size_mb == 100 and merged.for_output("aux").min_cosine == 0.9
    with pytest.raises(ProfileError, match=r"unknown key 'min_cosin'.*did you mean 'min_cosine'"):
        parse_budgets({"outputs": {"aux": {"min_cosin": 0.9}}}, "x")
    with pytest.raises(ProfileError, match="fraction between 0 and 1"):
        parse_budgets({"min_cosine": 99}, "x")


def test_evaluation_arguments_are_read_plainly():
    x, y = np.zeros((4, 3)), np.arange(4)
    assert _split_evaluation((x, y), None, 1)[1] is y
    ids, mask = np.zeros((4, 8), np.int64), np.ones((4, 8), np.int64)
    inputs, labels = _split_evaluation((ids, mask), None, 2)  # two inputs, no labels
    assert labels is None and inputs[1] is mask
    inputs, labels = _split_evaluation(((ids, mask), y), None, 2)
    assert labels is y
    inputs, labels = _split_evaluation((ids, mask), y, 2)  # labels= keyword
    assert labels is not None and inputs[0] is ids
    with pytest.raises(DataError, match=r"read as \(inputs, labels\).*labels="):
        _split_evaluation((ids, mask), None, 3)


def test_the_recipe_rule_reads_the_graph():
    conv = classify({"convolution": 12, "addmm": 1})  # type: ignore[arg-type]
    attn = classify({"mm": 40, "softmax": 6, "convolution": 1})  # type: ignore[arg-type]
    lstm = classify({"lstm": 1, "addmm": 2})  # type: ignore[arg-type]
    assert (conv.kind, conv.prefers) == ("conv", "static")
    assert (attn.kind, attn.prefers) == ("attention", "dynamic")
    assert (lstm.kind, lstm.prefers) == ("recurrent", "dynamic")
    static = Recipe("static", "static", "", needs_calibration=True)
    dynamic = Recipe("dynamic", "dynamic", "")
    assert [r.name for r in order_by_rule([static, dynamic], attn)] == ["dynamic", "static"]
    assert [r.name for r in order_by_rule([dynamic, static], conv)] == ["static", "dynamic"]
    tried, left = candidates((static, dynamic), None, have_calibration=False)
    assert tried == [dynamic] and left[0][0] is static and "calibration" in left[0][1]
    assert candidates((static, dynamic), "static", True)[0] == [static]
    assert math.isfinite(conv.to_dict()["counts"]["conv"])
