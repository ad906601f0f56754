"""Ed25519 signatures over release manifests (the `cryptography` package).

A signed release is `release.json` plus a detached signature next to it, `release.json.sig`: one
line of ASCII text,

    ed25519 <key_id> <signature>\\n

three fields separated by one space: the algorithm, the key id (first 16 hex digits of the
sha256 of the raw 32-byte public key, so a wrong key is reported as such) and the standard
base64 (RFC 4648, with padding) of the 64-byte Ed25519 signature over the exact bytes of
release.json, as they are on disk and as the server serves them. A verifier reads the bytes,
checks the signature over them, and only then parses them as JSON: no platform ever rebuilds
canonical JSON, so any JSON reader will do (Java, Swift and C included). release.json carries no
`signature` field in this format; the artifacts are protected by their sha256 and size inside
the signed bytes (`artifacts[id].sha256`, `size_bytes`), checked when each file is loaded.

Trust is all or nothing: bytes that verify trust every artifact they list (each still checked
against its sha256 on load); bytes that do not verify (an edit, a reordering of keys, a
re-serialization, another key, a missing .sig) trust nothing.

Deprecated, read for one more version: the old format, where release.json carried a
`signature` field with an Ed25519 signature over the canonical JSON of the manifest (sorted
keys, no whitespace, Python's float text) and one per artifact over a small statement
(`artifact_statement`). Only in that format can an edited manifest still trust the artifacts
whose own statement verifies (`Verdict.artifact_ok`). Verifying it warns (`DeprecationWarning`,
and `Verdict.deprecated` says so): re-sign such a release with `edgeyard sign RELEASE --key
KEY.pem`, which removes the field and writes release.json.sig.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._deps import require
from .errors import EdgeyardError

ALGORITHM = "ed25519"
MANIFEST = "release.json"
SIGNATURE_FILE = "release.json.sig"
MAX_SIGNATURE_FILE = 1024  # bytes: a .sig line is about 130
DEPRECATED = ("release.json carries an embedded `signature` (the old format, read for one more "
              "version): re-sign the release with `edgeyard sign RELEASE --key KEY.pem` (it "
              "writes release.json.sig)")


class SigningError(EdgeyardError):
    """A key cannot be read, a release cannot be signed, or a .sig file cannot be parsed."""


# --- keys --------------------------------------------------------------------------------------


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


# --- the detached signature (release.json.sig) -------------------------------------------------


def signature_line(data: bytes, private_key: Any) -> str:
    """The release.json.sig text for `data` (release.json's exact bytes)."""
    sig = base64.b64encode(private_key.sign(data)).decode("ascii")
    return f"{ALGORITHM} {key_id(private_key.public_key())} {sig}\n"


def parse_signature_line(text: bytes | str) -> tuple[str, str, bytes]:
    """(algorithm, key_id, raw signature) of a release.json.sig; `SigningError` when it is not
    one line `ed25519 <key_id> <base64>`."""
    if isinstance(text, bytes):
        if len(text) > MAX_SIGNATURE_FILE:
            raise SigningError(f"{SIGNATURE_FILE} is {len(text)} bytes: not a signature file")
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise SigningError(f"{SIGNATURE_FILE} is not ASCII text") from None
    fields = text.removesuffix("\n").removesuffix("\r").split(" ")
    if len(fields) != 3 or not all(fields) or any(c.isspace() for f in fields for c in f):
        raise SigningError(f"{SIGNATURE_FILE} is not one line 'ed25519 <key_id> <base64>'")
    try:
        raw = base64.b64decode(fields[2], validate=True)
    except (binascii.Error, ValueError):
        raise SigningError(f"{SIGNATURE_FILE}: the signature is not base64") from None
    return fields[0], fields[1], raw


def _paths(release: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(release)
    manifest = p if p.name == MANIFEST else p / MANIFEST
    return manifest, manifest.with_name(SIGNATURE_FILE)


def sign_manifest_file(manifest_path: str | os.PathLike[str], private_key: Any) -> str:
    """Sign the exact bytes of the file at `manifest_path` into `<it>.sig` (written atomically);
    returns the key id. Edit nothing in the file afterwards: any byte changed breaks it."""
    from ._files import atomic_write

    path = Path(manifest_path)
    atomic_write(path.with_name(path.name + ".sig"),
                 signature_line(path.read_bytes(), private_key), durable=True)
    return key_id(private_key.public_key())


def sign_release(release_dir: str | os.PathLike[str], private_key_path: str | os.PathLike[str]) -> str:
    """Sign `release_dir/release.json` (writes release.json.sig); returns the key id. A
    release in the old format loses its embedded `signature` field first (release.json is
    rewritten atomically)."""
    from .release import load_release, write_json_atomic

    rel = load_release(release_dir)
    key = load_private_key(private_key_path)
    problems = rel.verify_files()
    if problems:
        raise SigningError("refusing to sign a release whose files do not match its manifest: "
                           + "; ".join(problems))
    manifest_path, _ = _paths(rel.path)
    if "signature" in rel.manifest:
        write_json_atomic(manifest_path,
                          {k: v for k, v in rel.manifest.items() if k != "signature"})
    return sign_manifest_file(manifest_path, key)


@dataclass(frozen=True)
class Verdict:
    """What a signature check found; a bad signature is a verdict, never an exception.

    Detached format: `manifest_ok` is all there is (`artifact_ok` stays empty): every artifact
    is trusted or none is, and `manifest` holds the JSON parsed from the very bytes that
    verified. Old format (deprecated): `artifact_ok` judges each artifact on its own statement
    when the manifest signature fails, and `deprecated` says how to re-sign."""

    manifest_ok: bool
    reason: str | None  # why the signature does not hold
    artifact_ok: dict[str, bool]
    wrong_key: bool = False  # signed, but with another key than the one given
    signed: bool = True  # False: no signature at all (no .sig and no embedded field)
    deprecated: str | None = None  # the old embedded format was read
    manifest: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def artifact_trusted(self, artifact_id: str) -> bool:
        return self.manifest_ok or self.artifact_ok.get(artifact_id, False)


def verify_bytes(data: bytes, signature: bytes | str | None, public_key: Any) -> Verdict:
    """Check release.json's bytes `data` against its .sig contents (None: there is no .sig)
    with `public_key`; only bytes that verify are parsed. With no .sig, a manifest that embeds a
    `signature` field goes through the deprecated `verify_manifest`."""
    pub = load_public_key(public_key)
    if signature is None:
        try:
            legacy = json.loads(data)
        except ValueError:
            legacy = None
        if isinstance(legacy, dict) and legacy.get("signature"):
            return verify_manifest(legacy, pub)
        return Verdict(False, f"the release is not signed (no {SIGNATURE_FILE}): sign it with "
                              f"`edgeyard sign RELEASE --key KEY.pem`", {}, signed=False)
    try:
        algorithm, kid_signed, raw = parse_signature_line(signature)
    except SigningError as exc:
        return Verdict(False, str(exc), {})
    if algorithm != ALGORITHM:
        return Verdict(False, f"unsupported signature algorithm {algorithm!r}", {})
    kid = key_id(pub)
    if kid_signed != kid:
        return Verdict(False, f"signed with key {kid_signed}, but the key given is {kid} "
                              f"(wrong key)", {}, wrong_key=True)
    ed_exc = require("cryptography.exceptions", extra="sign").InvalidSignature
    try:
        pub.verify(raw, data)
    except ed_exc:
        return Verdict(False, "the signature does not verify over release.json's bytes "
                              "(release.json edited or replaced after signing)", {})
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        return Verdict(False, f"release.json verifies but is not JSON: {exc}", {})
    return Verdict(True, None, {}, manifest=manifest)


def verify_release(release: str | os.PathLike[str], public_key: Any) -> Verdict:
    """Check the release at `release` (its directory or its release.json) with `public_key`:
    release.json.sig over release.json's bytes, else (deprecated) the embedded signature."""
    manifest_path, sig_path = _paths(release)
    try:
        data = manifest_path.read_bytes()
    except OSError as exc:
        return Verdict(False, f"cannot read {manifest_path}: {exc}", {}, signed=False)
    try:
        sig: bytes | None = sig_path.read_bytes()
    except FileNotFoundError:
        sig = None
    except OSError as exc:
        return Verdict(False, f"cannot read {sig_path}: {exc}", {})
    return verify_bytes(data, sig, public_key)


# --- the old embedded format (deprecated: read for one more version) -------------------------


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


def sign_manifest(manifest: dict[str, Any], private_key: Any) -> dict[str, Any]:
    """Deprecated (the old format; kept to write old-format fixtures): the manifest with an
    embedded `signature` field (the input is not changed). Use `sign_release`."""
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


def verify_manifest(manifest: dict[str, Any], public_key: Any) -> Verdict:
    """Deprecated: check an old-format manifest's embedded signatures (never raises on a bad
    signature; warns `DeprecationWarning`). A release signed the current way is checked with
    `verify_release` (or `verify_bytes`): its manifest holds no signature to check here."""
    warnings.warn(DEPRECATED, DeprecationWarning, stacklevel=2)
    ed_exc = require("cryptography.exceptions", extra="sign").InvalidSignature
    sig = manifest.get("signature")
    if not sig:
        return Verdict(False, "the release is not signed", {}, signed=False, deprecated=DEPRECATED)
    pub = load_public_key(public_key)
    if sig.get("algorithm") != ALGORITHM:
        return Verdict(False, f"unsupported signature algorithm {sig.get('algorithm')!r}", {},
                       deprecated=DEPRECATED)
    kid = key_id(pub)
    if sig.get("key_id") != kid:
        return Verdict(False, f"signed with key {sig.get('key_id')}, but the key given is {kid} "
                              f"(wrong key)", {}, wrong_key=True, deprecated=DEPRECATED)

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
    return Verdict(manifest_ok, reason, arts, deprecated=DEPRECATED,
                   manifest=manifest if manifest_ok else None)
