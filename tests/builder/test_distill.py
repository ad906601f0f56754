"""Distillation on the digits: alone (`edgeyard.distill`) and from the build, when the teacher
cannot meet a profile's size budget. Latency of both artifacts is measured in
benchmarks/quantization.py, not asserted here."""

from __future__ import annotations

import numpy as np
import pytest

import edgeyard
from profile_files import write_profile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def distilled(digits_module, digits_data, digits_cnn):
    pytest.importorskip("torch")
    import torch

    torch.manual_seed(0)
    d = digits_data
    return edgeyard.distill(digits_cnn, digits_module.make_student(), (d.x_train, d.y_train),
                            validation=(d.x_calib, d.y_calib), seed=0, progress=False)


def test_student_keeps_97_percent_of_the_teacher_with_a_tenth_of_the_parameters(
        distilled, digits_module, digits_data, digits_cnn):
    student, report = distilled
    d = digits_data
    assert report.student_params * 10 <= report.teacher_params
    assert report.student_size_bytes * 5 < report.teacher_size_bytes
    teacher_acc = digits_module.accuracy(digits_cnn, d.x_eval, d.y_eval)  # held out from both
    student_acc = digits_module.accuracy(student, d.x_eval, d.y_eval)
    assert student_acc >= 0.97 * teacher_acc, (student_acc, teacher_acc)
    assert report.kept_accuracy >= 0.97 and report.agreement >= 0.95
    assert 1 <= report.best_epoch <= report.epochs_run and report.history
    assert "student: 9,802 params" in report.summary()


def test_a_seed_repeats_the_run(digits_module, digits_data, digits_cnn):
    import torch

    d = digits_data
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the student's initial weights
        s, r = edgeyard.distill(digits_cnn, digits_module.make_student(), (d.x_train, d.y_train),
                                validation=(d.x_calib, d.y_calib), epochs=3, seed=7,
                                progress=False)
        runs.append((s.state_dict(), r.history))
    (a, ha), (b, hb) = runs
    assert ha == hb
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_arguments_are_named(digits_module, digits_data, digits_cnn):
    d = digits_data
    with pytest.raises(ValueError, match="alpha must lie in"):
        edgeyard.distill(digits_cnn, digits_module.make_student(), d.x_train,
                         validation=d.x_calib, alpha=1.5)
    with pytest.raises(edgeyard.EdgeyardError, match="student= needs train="):
        edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["linux-x86_64"],
                       evaluation=d.x_eval, out="unused", student=digits_module.make_student)


def test_the_build_distills_when_the_teacher_breaks_the_size_budget(
        digits_module, digits_data, digits_cnn, tmp_path):
    pytest.importorskip("onnxruntime")
    d = digits_data
    # 0.2 MB: the teacher's fp32 ONNX (616 kB) cannot fit, the student's (~45 kB) can
    write_profile(tmp_path / "p", "tiny-flash", [("onnx", "fp32")], budgets="max_size_mb = 0.2")
    rel = edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["tiny-flash"],
                         evaluation=(d.x_eval, d.y_eval), out=tmp_path / "rel",
                         profile_dirs=[tmp_path / "p"], student=digits_module.make_student,
                         train=(d.x_train, d.y_train), log=None)
    dist = rel.manifest["distillation"]
    assert "tiny-flash: no artifact within its size budget" in dist["why"][0]
    assert dist["teacher"]["profiles"]["tiny-flash"][0]["status"] == "failed"
    assert dist["report"]["student_params"] == 9802
    (entry,) = rel.chain("tiny-flash")
    assert entry["status"] == "ok", rel.summary()
    art = rel.artifacts["onnx-fp32"]
    assert art["size_bytes"] < 0.2e6
    teacher_acc = dist["teacher"]["source_accuracy"]
    assert art["parity"]["accuracy"] >= 0.97 * teacher_acc
    assert rel.ok and rel.verify_files() == []
    assert np.isclose(rel.manifest["evaluation"]["source_accuracy"], art["parity"]["accuracy"])


STUDENTS = '''
import torch.nn as nn


def small():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 32), nn.ReLU(),
                         nn.Linear(32, 10))
'''


def test_a_build_config_names_the_student(digits_data, digits_cnn, tmp_path):
    import subprocess
    import sys

    import torch

    d = digits_data
    torch.export.save(torch.export.export(digits_cnn, (torch.from_numpy(d.x_eval[:1]),)),
                      tmp_path / "cnn.pt2")
    np.savez(tmp_path / "eval.npz", x=d.x_eval, y=d.y_eval)
    np.savez(tmp_path / "train.npz", x=d.x_train, y=d.y_train)
    (tmp_path / "students.py").write_text(STUDENTS)
    write_profile(tmp_path / "profiles", "tiny-flash", [("onnx", "fp32")], budgets="max_size_mb = 0.2")
    (tmp_path / "build.toml").write_text(
        '[model]\nname = "digits"\nsource = "cnn.pt2"\n[data]\nevaluation = "eval.npz"\n'
        '[build]\nprofiles = ["tiny-flash"]\nout = "out"\nprofile_dirs = ["profiles"]\n'
        '[distill]\nstudent = "students:small"\ntrain = "train.npz"\nepochs = 40\nseed = 1\n')
    r = subprocess.run([sys.executable, "-m", "edgeyard.cli", "build", str(tmp_path / "build.toml")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "distilling the student and building it instead" in r.stderr
    rel = edgeyard.load_release(tmp_path / "out")
    assert rel.manifest["distillation"]["report"]["seed"] == 1
    assert rel.chain("tiny-flash")[0]["status"] == "ok"
    (tmp_path / "build.toml").write_text(
        (tmp_path / "build.toml").read_text().replace("students:small", "students:nope"))
    r = subprocess.run([sys.executable, "-m", "edgeyard.cli", "build", str(tmp_path / "build.toml")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 4 and "students:nope" in r.stderr and "Traceback" not in r.stderr
