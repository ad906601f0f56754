"""The detached release signature (release.json.sig) and the shared vectors in
mobile_shims/testdata/signatures, which the JVM (SignatureVectorsTest) and Swift check too."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("cryptography", reason="release signatures need `cryptography`")

from edgeyard.signing import (
    SIGNATURE_FILE,
    SigningError,
    generate_keys,
    load_private_key,
    parse_signature_line,
    sign_manifest,
    sign_release,
    verify_bytes,
    verify_manifest,
    verify_release,
)
from shims.test_jvm_wrapper import write_release

VECTORS = Path(__file__).resolve().parents[2] / "mobile_shims" / "testdata" / "signatures"


def _generator():
    spec = importlib.util.spec_from_file_location("signature_vectors",
                                                  VECTORS.parent / "signatures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cases() -> list[tuple[str, str]]:
    lines = (VECTORS / "cases.txt").read_text().splitlines()
    return [tuple(line.split(" ")) for line in lines if line and not line.startswith("#")]


def test_the_committed_vectors_are_what_the_generator_writes(tmp_path):
    written = _generator().generate(tmp_path / "signatures")
    rel = sorted(str(p.relative_to(tmp_path / "signatures")) for p in written)
    committed = sorted(str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*") if p.is_file())
    assert rel == committed, "run `python mobile_shims/testdata/signatures.py`"
    for r in rel:
        assert (tmp_path / "signatures" / r).read_bytes() == (VECTORS / r).read_bytes(), r


@pytest.mark.parametrize("case,expected", cases())
def test_every_vector_has_its_expected_verdict(case, expected):
    key = VECTORS / "public_key.pem"
    if expected == "legacy":
        with pytest.warns(DeprecationWarning, match="edgeyard sign"):
            v = verify_release(VECTORS / case, key)
        assert v.manifest_ok and v.deprecated and v.artifact_ok == {"onnx-fp32": True}
        return
    v = verify_release(VECTORS / case, key)
    assert v.manifest_ok == (expected == "valid"), v.reason
    assert v.wrong_key == (expected == "wrong-key")
    assert v.signed == (expected != "unsigned")
    assert v.deprecated is None and v.artifact_ok == {}
    if expected == "valid":
        assert v.manifest == json.loads((VECTORS / case / "release.json").read_bytes())
    else:
        assert v.manifest is None
    if expected in ("tampered", "reordered"):
        assert "release.json edited or replaced" in v.reason


def test_the_reordered_vector_is_the_same_json():
    assert json.loads((VECTORS / "reordered" / "release.json").read_bytes()) == \
        json.loads((VECTORS / "valid" / "release.json").read_bytes())


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "release"
    write_release(root)
    priv, pub = generate_keys(tmp_path / "keys" / "release.pem")
    _, other = generate_keys(tmp_path / "keys" / "other.pem")
    return root, priv, pub, other


def test_sign_release_writes_a_detached_signature_over_the_bytes(release):
    root, priv, pub, other = release
    kid = sign_release(root, priv)
    data = (root / "release.json").read_bytes()
    assert "signature" not in json.loads(data)  # the field is gone in the new format
    line = (root / SIGNATURE_FILE).read_text()
    assert line.endswith("\n") and line.count("\n") == 1 and line.startswith(f"ed25519 {kid} ")
    algorithm, kid2, raw = parse_signature_line(line)
    assert (algorithm, kid2, len(raw)) == ("ed25519", kid, 64)
    v = verify_release(root, pub)
    assert v.manifest_ok and v.artifact_trusted("onnx-fp32") and v.manifest == json.loads(data)
    assert verify_release(root / "release.json", pub).manifest_ok  # the file itself will do
    w = verify_release(root, other)
    assert not w.manifest_ok and w.wrong_key and not w.artifact_trusted("onnx-fp32")


def test_any_byte_changed_trusts_nothing(release):
    root, priv, pub, _ = release
    sign_release(root, priv)
    data = (root / "release.json").read_bytes()
    sig = (root / SIGNATURE_FILE).read_bytes()
    for changed in (data + b"\n", data.replace(b"5.0", b"5.00", 1),
                    json.dumps(json.loads(data)).encode()):  # re-serialized: same content
        v = verify_bytes(changed, sig, pub)
        assert not v.manifest_ok and v.signed and not v.wrong_key
        assert not any(v.artifact_trusted(a) for a in json.loads(data)["artifacts"])
    v = verify_bytes(data, None, pub)
    assert not v.manifest_ok and not v.signed and "edgeyard sign" in v.reason


@pytest.mark.parametrize("bad", [b"", b"ed25519", b"ed25519 abc", b"ed25519 a b c",
                                 b"ed25519  abc", b"ed25519 abc not*base64", b"x" * 2000,
                                 "ed25519 \u00e9 AAAA".encode()])
def test_malformed_signature_files_are_refused(bad, release):
    root, _, pub, _ = release
    with pytest.raises(SigningError):
        parse_signature_line(bad)
    v = verify_bytes((root / "release.json").read_bytes(), bad, pub)
    assert not v.manifest_ok and v.signed


def test_an_old_format_release_still_verifies_with_a_deprecation_warning(release):
    root, priv, pub, _ = release
    manifest = sign_manifest(json.loads((root / "release.json").read_text()),
                             load_private_key(priv))
    (root / "release.json").write_text(json.dumps(manifest, indent=2))
    with pytest.warns(DeprecationWarning, match="edgeyard sign"):
        v = verify_release(root, pub)
    assert v.manifest_ok and v.deprecated and "edgeyard sign" in v.deprecated
    assert set(v.artifact_ok) == {"tflite-int8", "executorch-fp32", "onnx-fp32"}
    # an edit outside an artifact's statement: each artifact is still judged on its own
    manifest["profiles"]["phone"]["budgets"]["max_latency_p90_ms"] = 500.0
    manifest["artifacts"]["tflite-int8"]["selftest"]["atol"] = 1.0
    with pytest.warns(DeprecationWarning):
        v = verify_manifest(manifest, pub)
    assert not v.manifest_ok and v.deprecated
    assert not v.artifact_trusted("tflite-int8") and v.artifact_trusted("onnx-fp32")
    # re-signing moves it to the new format: the field goes, release.json.sig comes
    legacy = root.parent / "legacy"
    shutil.copytree(root, legacy)
    sign_release(legacy, priv)
    assert "signature" not in json.loads((legacy / "release.json").read_text())
    v = verify_release(legacy, pub)
    assert v.manifest_ok and v.deprecated is None
