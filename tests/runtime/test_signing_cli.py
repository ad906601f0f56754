"""`edgeyard keys generate`, `edgeyard sign`, `edgeyard inspect --public-key` for real."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

from edgeyard.signing import verify_release


def cli(*args):
    return subprocess.run([sys.executable, "-m", "edgeyard.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_generate_sign_verify(signed_release, release_copy, tmp_path):
    r = cli("keys", "generate", "--out", tmp_path / "ci.pem")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "ci.pem").stat().st_mode) == 0o600
    assert (tmp_path / "ci.pub.pem").exists() and "key id:" in r.stdout
    assert cli("keys", "generate", "--out", tmp_path / "ci.pem").returncode == 4  # no overwrite
    r = cli("sign", release_copy, "--key", tmp_path / "ci.pem")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((release_copy / "release.json").read_text())
    assert "signature" not in manifest and (release_copy / "release.json.sig").is_file()
    assert verify_release(release_copy, tmp_path / "ci.pub.pem").manifest_ok
    r = cli("inspect", release_copy, "--public-key", tmp_path / "ci.pub.pem")
    assert r.returncode == 0 and "signature: ed25519 key" in r.stdout
    assert "(release.json.sig)" in r.stdout
    r = cli("inspect", release_copy, "--public-key", signed_release["public"])
    assert r.returncode == 1 and "(wrong key)" in r.stderr


def test_generate_creates_the_key_directory(tmp_path):
    r = cli("keys", "generate", "--out", tmp_path / "keys" / "release.pem")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "keys" / "release.pub.pem").exists()


def test_sign_refuses_a_release_whose_files_changed(release_copy, tmp_path):
    cli("keys", "generate", "--out", tmp_path / "k.pem")
    art = next((release_copy / "artifacts").iterdir())
    art.write_bytes(art.read_bytes() + b"\0")
    r = cli("sign", release_copy, "--key", tmp_path / "k.pem")
    assert r.returncode == 4 and "refusing to sign" in r.stderr


def test_inspect_verifies_an_old_format_release_and_says_to_re_sign_it(signed_release,
                                                                       release_copy, tmp_path):
    from edgeyard.signing import load_private_key, sign_manifest

    cli("keys", "generate", "--out", tmp_path / "k.pem")
    manifest = json.loads((release_copy / "release.json").read_text())
    old = sign_manifest(manifest, load_private_key(tmp_path / "k.pem"))
    (release_copy / "release.json").write_text(json.dumps(old, indent=2))
    (release_copy / "release.json.sig").unlink()
    r = cli("inspect", release_copy, "--public-key", tmp_path / "k.pub.pem")
    assert r.returncode == 0, r.stderr
    assert "old format, deprecated" in r.stdout and "edgeyard sign" in r.stderr
    assert cli("sign", release_copy, "--key", tmp_path / "k.pem").returncode == 0
    r = cli("inspect", release_copy, "--public-key", tmp_path / "k.pub.pem")
    assert r.returncode == 0 and "(release.json.sig)" in r.stdout and "deprecated" not in r.stderr


def test_inspect_refuses_an_edited_or_unsigned_release(signed_release, release_copy):
    path = release_copy / "release.json"
    path.write_bytes(path.read_bytes().replace(b'"version": "1.0"', b'"version":  "1.0"', 1))
    r = cli("inspect", release_copy, "--public-key", signed_release["public"])
    assert r.returncode == 1 and "release.json edited" in r.stderr
    (release_copy / "release.json.sig").unlink()
    r = cli("inspect", release_copy, "--public-key", signed_release["public"])
    assert r.returncode == 1 and "not signed" in r.stderr
