from __future__ import annotations

from pathlib import Path

import pytest

from edgeyard.errors import ProfileError, ProfileNotFound
from edgeyard.profiles import (
    Profile,
    available_profiles,
    builtin_profile_dir,
    load_all,
    load_profile,
    parse_profile,
)

BUILTIN = ["iphone-15", "jetson-orin-nano", "linux-x86_64", "pixel-8", "raspberry-pi-5"]

GOOD = """
name = "{name}"
description = "test board"
runner = "local"
[hardware]
arch = "x86_64"
os = "linux"
threads = 2
[budgets]
max_size_mb = 5
min_agreement = 0.9
[[targets]]
backend = "onnx"
precision = "fp32"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def test_builtin_profiles_all_load():
    loaded = load_all()
    for name in BUILTIN:
        assert isinstance(loaded[name], Profile), loaded[name]
    assert builtin_profile_dir().is_dir()


def test_builtin_profiles_fit_their_devices():
    first = {n: load_profile(n).targets[0].backend for n in BUILTIN}
    assert first["iphone-15"] == "coreml"
    assert first["jetson-orin-nano"] == "tensorrt"
    assert first["pixel-8"] in ("tflite", "executorch")
    assert load_profile("jetson-orin-nano").targets[1].backend == "onnx"
    assert load_profile("linux-x86_64").runner == "local"


def test_profile_fields_are_typed_and_frozen(tmp_path):
    p = load_profile(write(tmp_path, "board", GOOD.format(name="board")))
    assert p.hardware.threads == 2
    assert p.budgets.max_size_mb == 5.0
    assert p.budgets.max_accuracy_drop == 0.02  # default
    assert p.targets[0].key == "onnx-fp32"
    with pytest.raises(AttributeError):
        p.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.targets[0].options["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("max_size_mb = 5", "max_sise_mb = 5"), "unknown key 'max_sise_mb' (did you mean 'max_size_mb'?)"),
        (("max_size_mb = 5", 'max_size_mb = "5MB"'), "'max_size_mb' must be int or float (got '5MB' that is a str)"),
        (("threads = 2", "threads = true"), "'threads' must be int (got True that is a bool)"),
        (('backend = "onnx"', 'backend = "onyx"'), "no backend named 'onyx'; available: "),
        (('precision = "fp32"', 'precision = "int4"'), "unknown precision 'int4'; known: fp32, fp16, int8-weights, int8"),
        (('backend = "onnx"\nprecision = "fp32"', 'backend = "executorch"\nprecision = "int8-weights"'),
         "backend 'executorch' does not offer precision 'int8-weights'; it offers fp32, fp16, int8"),
        (('precision = "fp32"', 'precision = "fp32"\noptions = { delegate = "gpu" }'),
         "backend 'onnx' has no option 'delegate'; its options: opset"),
        (("min_agreement = 0.9", "min_agreement = 90"), "min_agreement is a fraction between 0 and 1"),
        (('arch = "x86_64"\n', ""), "missing required key 'arch'"),
        (("[[targets]]", "[[target]]"), "unknown key 'target' (did you mean 'targets'?)"),
    ],
)
def test_bad_profiles_say_what_is_wrong(tmp_path, change, message):
    old, new = change
    text = GOOD.format(name="board")
    assert old in text
    with pytest.raises(ProfileError) as exc:
        load_profile(write(tmp_path, "board", text.replace(old, new)))
    assert message in str(exc.value)
    assert "board.toml" in str(exc.value)


def test_name_must_match_file(tmp_path):
    with pytest.raises(ProfileError, match="must match the file name"):
        load_profile(write(tmp_path, "board", GOOD.format(name="other")))


def test_invalid_toml_is_a_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(write(tmp_path, "board", "name = 'unterminated"))


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ProfileNotFound) as exc:
        load_profile("pixel-9")
    msg = str(exc.value)
    for name in BUILTIN:
        assert name in msg
    assert isinstance(exc.value, KeyError)


def test_user_directory_comes_first_and_env_path_works(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    user.mkdir()
    write(user, "pixel-8", GOOD.format(name="pixel-8"))
    write(user, "board", GOOD.format(name="board"))
    assert load_profile("pixel-8", [user]).description == "test board"
    assert load_profile("pixel-8").description != "test board"
    monkeypatch.setenv("EDGEYARD_PROFILE_PATH", str(user))
    assert "board" in available_profiles()
    assert load_profile("board").hardware.threads == 2


def test_broken_file_does_not_hide_the_others(tmp_path):
    write(tmp_path, "broken", "name = 1")
    loaded = load_all([tmp_path])
    assert isinstance(loaded["broken"], ProfileError)
    assert isinstance(loaded["pixel-8"], Profile)


def test_parse_profile_rejects_duplicate_targets():
    data = {"name": "x", "hardware": {"arch": "a", "os": "b"},
            "targets": [{"backend": "onnx", "precision": "fp32"}] * 2}
    with pytest.raises(ProfileError, match="target listed twice: onnx-fp32"):
        parse_profile(data)
