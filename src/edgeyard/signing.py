"""Ed25519 signatures over release manifests (the `cryptography` package).

A signed release carries, in `release.json`'s `signature` field:

- `manifest`: a signature over the canonical manifest (every field but `signature`, JSON with
  sorted keys and no whitespace): it protects everything, including the profiles' chain order
  and budgets;
- `artifacts`: one signature per artifact over a small statement binding the release identity,
  the artifact's path, sha256, size, format and self-test tolerance, the golden data's sha256 and
  the model's I/O. When the manifest signature fails (the file was edited), each engine can still
  be judged on its own statement: an untouched artifact entry verifies, a tampered one does not.

The device verifies with the public key only. `key_id` (first 16 hex digits of the sha256 of the
raw public key) names the key, so a wrong key is reported as such.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._deps import require
from .errors import EdgeyardError

ALGORITHM = "ed25519"


class SigningError(EdgeyardError):
    """A key cannot be read, or a release cannot be signed."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def manifest_body(manifest: dict[str, Any]) -> bytes:
    return canonical({k: v for k, v in manifest.items() if k != "signature"})


def artifact_statement(manifest: dict[str, Any], artifact_id: str) -> bytes:
    a = manifest["artifacts"][artifact_id]
    return canonical({
        "release": {k: manifest["model"][k] for k in ("name", "version", "source_sha256")},
        "artifact_id": artifact_id,
        "artifact": {k: a.get(k) for k in ("path", "sha256", "size_bytes", "format", "backend",
                                           "precision", "selftest", "status")},
        "golden": manifest["golden"],
        "model_io": {"inputs": manifest["model"]["inputs"],
                     "outputs": manifest["model"]["outputs"]},
    })


def _ed25519() -> Any:
    return require("cryptography.hazmat.primitives.asymmetric.ed25519", extra="sign",
                   purpose="Ed25519 release signatures")


def _serialization() -> Any:
    return require("cryptography.hazmat.primitives.serialization", extra="sign")


def generate_keys(private_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new private key (PKCS#8 PEM, mode 0600) and its public key next to it (.pub.pem)."""
    ed = _ed25519()
    ser = _serialization()
    priv_path = Path(private_path)
    pub_path = priv_path.with_name(priv_path.name.removesuffix(".pem") + ".pub.pem")
    if priv_path.exists():
        raise SigningError(f"{priv_path} exists: refusing to overwrite a private key")
    key = ed.Ed25519PrivateKey.generate()
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    priv_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM,
                                                       ser.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path


def load_private_key(path: str | os.PathLike[str]) -> Any:
    ser = _serialization()
    ed = _ed25519()
    try:
        key = ser.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"cannot read private key {os.fspath(path)!r}: {exc}") from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise SigningError(f"{os.fspath(path)!r} is not an Ed25519 private key")
    return key


def load_public_key(key: Any) -> Any:
    """A public key from a PEM file path, PEM bytes/str, or a key object."""
    ser = _serialization()
    ed = _ed25519()
    if isinstance(key, ed.Ed25519PublicKey):
        return key
    if isinstance(key, ed.Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, (str, os.PathLike)) and not str(key).lstrip().startswith("-----BEGIN"):
        data = Path(key).read_bytes()
    else:
        data = key.encode() if isinstance(key, str) else bytes(key)
    try:
        pub = ser.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningError(f"not a PEM public key: {exc}") from None
    if not isinstance(pub, ed.Ed25519PublicKey):
        raise SigningError("the public key is not an Ed25519 key")
    return pub


def key_id(public_key: Any) -> str:
    ser = _serialization()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_manifest(manifest: dict[str, Any], private_key: Any) -> dict[str, Any]:
    """The manifest with its `signature` field filled in (the input is not changed)."""
    out = {k: v for k, v in manifest.items() if k != "signature"}
    sig = {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "artifacts": {
            k: base64.b64encode(private_key.sign(artifact_statement(out, k))).decode()
            for k, a in out["artifacts"].items() if a.get("sha256")
        },
    }
    sig["manifest"] = base64.b64encode(private_key.sign(manifest_body(out))).decode()
    out["signature"] = sig
    return out


@dataclass(frozen=True)
class Verdict:
    manifest_ok: bool
    reason: str | None  # why the manifest signature does not hold
    artifact_ok: dict[str, bool]
    wrong_key: bool = False  # signed, but with another key than the one given

    def artifact_trusted(self, artifact_id: str) -> bool:
        return self.manifest_ok or self.artifact_ok.get(artifact_id, False)


def verify_manifest(manifest: dict[str, Any], public_key: Any) -> Verdict:
    """Check the manifest's signatures against `public_key` (never raises on a bad signature)."""
    ed_exc = require("cryptography.exceptions", extra="sign").InvalidSignature
    sig = manifest.get("signature")
    if not sig:
        return Verdict(False, "the release is not signed", {})
    pub = load_public_key(public_key)
    if sig.get("algorithm") != ALGORITHM:
        return Verdict(False, f"unsupported signature algorithm {sig.get('algorithm')!r}", {})
    kid = key_id(pub)
    if sig.get("key_id") != kid:
        return Verdict(False, f"signed with key {sig.get('key_id')}, but the key given is {kid} "
                              f"(wrong key)", {}, wrong_key=True)

    def ok(signature: str, data: bytes) -> bool:
        try:
            pub.verify(base64.b64decode(signature), data)
            return True
        except (ed_exc, ValueError):
            return False

    manifest_ok = ok(sig.get("manifest", ""), manifest_body(manifest))
    arts = {}
    for k, s in (sig.get("artifacts") or {}).items():
        arts[k] = k in manifest.get("artifacts", {}) and ok(s, artifact_statement(manifest, k))
    reason = None if manifest_ok else "the manifest signature does not verify (release.json edited)"
    return Verdict(manifest_ok, reason, arts)


def sign_release(release_dir: str | os.PathLike[str], private_key_path: str | os.PathLike[str]) -> str:
    """Sign `release_dir/release.json` in place (atomically); returns the key id."""
    from .release import MANIFEST, load_release, write_json_atomic

    rel = load_release(release_dir)
    key = load_private_key(private_key_path)
    problems = rel.verify_files()
    if problems:
        raise SigningError("refusing to sign a release whose files do not match its manifest: "
                           + "; ".join(problems))
    write_json_atomic(rel.path / MANIFEST, sign_manifest(rel.manifest, key))
    return key_id(key.public_key())
