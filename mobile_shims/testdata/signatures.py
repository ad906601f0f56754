"""Shared release-signature vectors, written by the Python signer (edgeyard/signing.py).

    python mobile_shims/testdata/signatures.py [OUT_DIR]   (default: ./signatures next to this file)

Writes, under `signatures/`:
- `public_key.pem` (what `edgeyard keys generate` writes) and `public_key.hex` (the 32 raw
  bytes): the key every case is checked with;
- one directory per case holding `release.json` and, except for `unsigned`, `release.json.sig`;
- `cases.txt`: `<case> <expected>` per line, expected one of
    valid       the signature holds
    tampered    release.json edited after signing (a value changed): fails
    reordered   the same JSON content with two keys swapped: other bytes, so it fails (no
                verifier may re-serialize JSON to check a signature)
    wrong-key   signed by another key: fails, reported as the wrong key
    unsigned    no release.json.sig: not signed
    legacy      the old format (a `signature` field inside release.json, deprecated): holds,
                with a deprecation note, on platforms that still read it

The keys come from fixed seeds (sha256 of a public label): the output is byte-for-byte
reproducible, and these are throwaway test keys: never sign a real release with them. Checked
by tests/runtime/test_signature_vectors.py (Python) and SignatureVectorsTest.java (JVM); the
Swift shim reads the same files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeyard.signing import sign_manifest, signature_line

HERE = Path(__file__).resolve().parent
CASES = [("valid", "valid"), ("tampered", "tampered"), ("reordered", "reordered"),
         ("wrong-key", "wrong-key"), ("unsigned", "unsigned"), ("legacy", "legacy")]


def key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"edgeyard signature vectors: {label}".encode()).digest())


def manifest() -> dict:
    """A small manifest with what trips JSON writers: non-ASCII, escapes, Python float text."""
    return {
        "schema": "edgeyard.release",
        "schema_version": 1,
        "model": {"name": "m\u00fc", "version": "1.0", "source_format": "onnx",
                  "source_sha256": "a" * 64,
                  "inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32"}],
                  "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}]},
        "golden": {"path": "golden.npz", "sha256": "b" * 64, "count": 4, "inputs": 1,
                   "outputs": 1},
        "artifacts": {"onnx-fp32": {"backend": "onnx", "precision": "fp32", "format": "onnx",
                                    "status": "ok", "path": "artifacts/m-onnx-fp32.onnx",
                                    "sha256": "c" * 64, "size_bytes": 1234,
                                    "selftest": {"atol": 1e-05}, "build_seconds": 0.1}},
        "profiles": {"phone": {"description": "T\u00e9l\u00e9phone \u2014 \U0001f4f1 \"2\"\t\\",
                               "budgets": {"max_latency_p90_ms": 5.0},
                               "chain": [{"target": "onnx-fp32", "status": "ok"}]}},
    }


def text(m: dict) -> bytes:
    return (json.dumps(m, indent=2, ensure_ascii=False) + "\n").encode()


def generate(out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    release, other = key("release"), key("other")
    pub = release.public_key()
    (out / "public_key.pem").write_bytes(pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (out / "public_key.hex").write_text(
        pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex() + "\n")
    signed = text(manifest())
    assert b'"max_latency_p90_ms": 5.0' in signed and b'  "schema": "edgeyard.release",\n  "schema_version": 1,\n' in signed
    files: dict[str, dict[str, bytes]] = {
        "valid": {"release.json": signed, "release.json.sig": signature_line(signed, release).encode()},
        "tampered": {"release.json": signed.replace(b'"max_latency_p90_ms": 5.0',
                                                    b'"max_latency_p90_ms": 500.0'),
                     "release.json.sig": signature_line(signed, release).encode()},
        "reordered": {"release.json": signed.replace(
            b'  "schema": "edgeyard.release",\n  "schema_version": 1,\n',
            b'  "schema_version": 1,\n  "schema": "edgeyard.release",\n'),
            "release.json.sig": signature_line(signed, release).encode()},
        "wrong-key": {"release.json": signed, "release.json.sig": signature_line(signed, other).encode()},
        "unsigned": {"release.json": signed},
        "legacy": {"release.json": text(sign_manifest(manifest(), release))},
    }
    assert json.loads(files["reordered"]["release.json"]) == json.loads(signed)
    written = [out / "public_key.pem", out / "public_key.hex"]
    for case, contents in files.items():
        (out / case).mkdir()
        for name, data in contents.items():
            (out / case / name).write_bytes(data)
            written.append(out / case / name)
    (out / "cases.txt").write_text(
        "# <case directory> <expected verdict> (see mobile_shims/testdata/signatures.py)\n"
        + "".join(f"{c} {e}\n" for c, e in CASES))
    written.append(out / "cases.txt")
    return written


if __name__ == "__main__":
    for f in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "signatures"):
        print(f)
