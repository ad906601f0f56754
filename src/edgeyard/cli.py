"""The `edgeyard` command: a thin layer over the Python API.

Exit codes, the same on every command (`_exit.ExitCode`, README "Exit codes"): 0 OK; 1 FAILED,
the verdict is bad (a target, a gate figure, a drift check, a sha256); 2 a usage error, from
click only; 3 UNDECIDED, no verdict yet (gate inconclusive, too little data for drift, a rollout
still running); 4 ERROR, the command stopped before a result (bad input, an unreadable file, an
unreachable server or runner); 5 MISSING_EXTRA, with the pip command to run.

`--json` prints a command's result as JSON on stdout (the human text is the default); an option
that writes a file is `--json-out FILE`.

Installed without its extra (`pip install 'edgeyard[cli]'`), the `edgeyard` script is
`edgeyard.__main__:main`, which says so instead of failing on `import typer` here.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ._exit import ExitCode, exit_code_of
from .errors import EdgeyardError, MissingExtra

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build, gate, ship and watch ML models on edge devices.",
)


def _fail(exc: BaseException, code: int | None = None) -> typer.Exit:
    """One line on stderr and the exit to raise (default: `exit_code_of(exc)`)."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exit_code_of(exc) if code is None else code)


def read_file_option(path: Path, option: str) -> bytes:
    """The bytes of a file named by `option`; one that cannot be read (missing, a directory,
    no permission) ends the command with one line and ERROR, not a traceback."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(EdgeyardError(f"cannot read {option} {str(path)!r}: "
                                  f"{exc.strerror or exc}"), ExitCode.ERROR) from None


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While a command whose `--json` result goes to stdout works, whatever else is written to
    stdout (a library's print, in Python or in C) goes to stderr, so stdout stays one JSON
    document."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    try:
        fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's in-memory streams
        fd = err_fd = -1
    saved = os.dup(fd) if fd >= 0 else -1
    if saved >= 0:
        os.dup2(err_fd, fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved >= 0:
            os.dup2(saved, fd)
            os.close(saved)


@app.command()
def build(
    config: Annotated[Path, typer.Argument(help="build.toml (see edgeyard.config)")],
    out: Annotated[Path | None, typer.Option(help="release directory (overrides the config)")] = None,
    profile: Annotated[list[str] | None, typer.Option(help="profile(s) to build (overrides)")] = None,
    profile_dir: Annotated[list[Path] | None, typer.Option(help="extra profile directory")] = None,
    jobs: Annotated[int | None, typer.Option(help="targets converted in parallel (default 1; on Ray, the cluster's CPUs)")] = None,
    executor: Annotated[str | None, typer.Option(help="where converters run: local (default), ray://HOST:PORT (a Ray cluster's client server) or ray (the cluster this host is in)")] = None,
    sign_key: Annotated[Path | None, typer.Option(help="Ed25519 private key (PEM) to sign with")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result and the manifest as JSON")] = False,
) -> None:
    """Build and verify a release from a config file. Exit 0 built, 1 a target FAILED or a
    profile has nothing to ship, 4 bad input (config, model, data, profile) or an unreachable
    Ray cluster, 5 a missing extra (`--executor ray...` needs the `ray` extra)."""
    from .builder.pipeline import build as run_build
    from .config import load_arrays, load_config

    try:
        with stdout_to_stderr(as_json):
            cfg = load_config(config)
            eval_x, eval_y = load_arrays(cfg.evaluation, "evaluation")
            calib = load_arrays(cfg.calibration, "calibration")[0] if cfg.calibration else None
            release = run_build(
                str(cfg.source),
                profiles=profile or cfg.profiles,
                evaluation=eval_x,
                labels=eval_y,
                budgets=cfg.budgets,
                task_metric=cfg.task_metric_object(),
                calibration=calib,
                out=out or cfg.out,
                name=cfg.name,
                version=cfg.version,
                profile_dirs=[*cfg.profile_dirs, *(profile_dir or [])],
                timeout_s=cfg.timeout_s,
                # build.toml's default `jobs = 1` cannot be told from an unset one: on Ray,
                # 1 means the cluster's default (every CPU); --jobs sets it exactly
                jobs=jobs or (cfg.jobs if cfg.jobs != 1 else None),
                executor=executor,
                sign_key=sign_key,
                student=cfg.student_factory() if cfg.student else None,
                train=_train_data(cfg.train) if cfg.train else None,
                distill_options=cfg.distill_options,
            )
    except EdgeyardError as exc:
        raise _fail(exc) from None
    code = ExitCode.OK if release.ok else ExitCode.FAILED
    if as_json:
        print_json({"release": str(release.path), "ok": release.ok, "exit_code": int(code),
                    "failed": [{"profile": p, "target": e["target"], "reasons": e.get("reasons", [])}
                               for p, e in release.failed],
                    "nothing_to_ship": release.nothing_to_ship, "manifest": release.manifest})
    else:
        typer.echo(release.summary())
    raise typer.Exit(code)


def _train_data(path: Path) -> object:
    from .config import load_arrays

    x, y = load_arrays(path, "train")
    return x if y is None else (x, y)


@app.command()
def profiles(
    name: Annotated[str | None, typer.Argument(help="show one profile in full")] = None,
    profile_dir: Annotated[list[Path] | None, typer.Option(help="extra profile directory")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List and validate device profiles. Exit 1 when any profile file is invalid, 4 when
    NAME is no profile."""
    from .errors import ProfileError
    from .profiles import available_profiles, load_all, load_profile

    dirs = profile_dir or []
    if name:
        try:
            p = load_profile(name, dirs)
        except EdgeyardError as exc:
            raise _fail(exc) from None
        typer.echo(json.dumps({**p.to_dict(), "path": str(p.path)}, indent=2))
        return
    loaded = load_all(dirs)
    paths = available_profiles(dirs)
    bad = {k: v for k, v in loaded.items() if isinstance(v, ProfileError)}
    if as_json:
        typer.echo(json.dumps({
            k: ({"error": str(v)} if isinstance(v, ProfileError) else
                {**v.to_dict(), "path": str(paths[k])})
            for k, v in loaded.items()
        }, indent=2))
    else:
        for k, v in loaded.items():
            if isinstance(v, ProfileError):
                typer.echo(f"{k:<18} INVALID  {v}")
            else:
                chain = " -> ".join(t.describe() for t in v.targets)
                typer.echo(f"{k:<18} {v.hardware.arch:<8} {v.runner:<28} {chain}")
                typer.echo(f"{'':<18} {v.description}")
    raise typer.Exit(ExitCode.FAILED if bad else ExitCode.OK)


@app.command()
def inspect(
    release: Annotated[Path, typer.Argument(help="release directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print the checks and the manifest as JSON")] = False,
    public_key: Annotated[Path | None, typer.Option(help="verify the signature with this key")] = None,
) -> None:
    """Show what a release holds; check its schema, every file's sha256 and, with
    --public-key, its signature. Exit 0 all match, 1 a mismatch, 4 not a release or an
    unreadable key, 5 a check needs a missing extra (and nothing else is wrong)."""
    from .release import load_release

    try:
        rel = load_release(release)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    if not as_json:
        typer.echo(rel.summary())
        m = rel.manifest
        typer.echo(f"\nsource: {m['model']['source_format']} sha256 {m['model']['source_sha256'][:16]}...")
        cal = m["calibration"]
        typer.echo(f"calibration: {cal['count']} samples" if cal else "calibration: none")
        typer.echo("toolchain: " + ", ".join(f"{k} {v}" for k, v in m["toolchain"].items()))
        typer.echo(f"signature: {_signature_line(rel.path, m)}")
    problems = rel.verify_files()
    unchecked: list[str] = []  # checks a missing extra kept from running, with its pip command
    notes: list[str] = []
    if public_key is not None:
        from .signing import verify_release

        key_bytes = read_file_option(public_key, "--public-key")
        try:
            verdict = verify_release(rel.path, key_bytes)
        except MissingExtra as exc:
            unchecked.append(f"signature not checked: {exc}")
        except EdgeyardError as exc:  # not an Ed25519 PEM key
            raise _fail(exc) from None
        else:
            if not verdict.manifest_ok:
                problems.append(f"signature: {verdict.reason}")
            if verdict.deprecated:
                notes.append(f"warning: {verdict.deprecated}")
    try:
        rel.validate()
    except MissingExtra as exc:
        unchecked.append(f"schema not checked: {exc}")
    except EdgeyardError as exc:
        problems.append(str(exc))
    for p in problems:
        typer.echo(f"PROBLEM: {p}", err=True)
    for u in unchecked:
        typer.echo(f"error: {u}", err=True)
    for n in notes:
        typer.echo(n, err=True)
    code = (ExitCode.FAILED if problems else ExitCode.MISSING_EXTRA if unchecked
            else ExitCode.OK)
    if as_json:
        print_json({"release": str(rel.path), "exit_code": int(code), "problems": problems,
                    "unchecked": unchecked, "manifest": rel.manifest})
    elif code == ExitCode.OK:
        typer.echo("files: every sha256 matches; manifest matches its schema")
    raise typer.Exit(code)


def _signature_line(release: Path, manifest: dict[str, Any]) -> str:
    """What `inspect` says of a release's signature (read, not verified)."""
    from .signing import SIGNATURE_FILE, SigningError, parse_signature_line

    sig_file = release / SIGNATURE_FILE
    if sig_file.is_file():
        try:
            algorithm, kid, _ = parse_signature_line(sig_file.read_bytes())
        except (SigningError, OSError) as exc:
            return f"unreadable {SIGNATURE_FILE}: {exc}"
        return f"{algorithm} key {kid} ({SIGNATURE_FILE})"
    old = manifest.get("signature")
    if old:
        return (f"{old.get('algorithm')} key {old.get('key_id')} (inside release.json: the old "
                f"format, deprecated; re-sign with edgeyard sign RELEASE --key KEY.pem)")
    return "none (edgeyard sign RELEASE --key KEY.pem)"


envs_app = typer.Typer(help="Isolated environments for converters whose pins conflict with "
                                 "this one (litert-torch).", invoke_without_command=True)
app.add_typer(envs_app, name="envs")


@envs_app.callback()
def envs_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
) -> None:
    """List the isolated converter environments: where, whether installed, and why."""
    from ._envs import status

    if ctx.invoked_subcommand is not None:
        return
    if as_json:
        print_json(status())
        return
    for e in status():
        state = "installed" if e["installed"] else f"not installed ({e['install']})"
        typer.echo(f"{e['name']:<14} {state}")
        typer.echo(f"{'':<14} {e['path']}")
        typer.echo(f"{'':<14} {e['why']}")


@envs_app.command("install")
def envs_install(
    name: Annotated[str, typer.Argument(help="environment name (see `edgeyard envs`)")],
) -> None:
    """Create an environment and install its converter (with this environment's torch)."""
    from ._envs import install

    try:
        install(name, log=typer.echo)
    except EdgeyardError as exc:
        raise _fail(exc) from None


keys_app = typer.Typer(help="Release signing keys (Ed25519).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option(help="private key file; the public key goes next to it as .pub.pem")] = Path("edgeyard-release.pem"),
    as_json: Annotated[bool, typer.Option("--json", help="print the paths and the key id as JSON")] = False,
) -> None:
    """Generate an Ed25519 key pair for signing releases (private key mode 0600). Exit 4 when
    the file exists (a key is never overwritten)."""
    from .signing import generate_keys, key_id, load_public_key

    try:
        priv, pub = generate_keys(out)
        kid = key_id(load_public_key(pub))
    except (EdgeyardError, OSError) as exc:
        raise _fail(exc) from None
    if as_json:
        print_json({"private_key": str(priv), "public_key": str(pub), "key_id": kid})
        return
    typer.echo(f"private key: {priv} (keep it secret; CI secret for `edgeyard build --sign-key`)")
    typer.echo(f"public key:  {pub} (ship it with the app: Runtime.from_release(..., public_key=...))")
    typer.echo(f"key id:      {kid}")


@app.command()
def sign(
    release: Annotated[Path, typer.Argument(help="release directory")],
    key: Annotated[Path, typer.Option(help="Ed25519 private key (PEM)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest signed and the key id as JSON")] = False,
) -> None:
    """Sign a release with an Ed25519 key: writes release.json.sig, a detached signature over
    release.json's exact bytes (a release signed the old way, inside release.json, loses that
    field). Exit 4 when the key cannot be read or the release's files do not match its
    manifest."""
    from .signing import SIGNATURE_FILE, sign_release

    try:
        kid = sign_release(release, key)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    if as_json:
        print_json({"manifest": str(release / "release.json"),
                    "signature": str(release / SIGNATURE_FILE), "key_id": kid})
        return
    typer.echo(f"signed {release / 'release.json'} with key {kid} "
               f"(signature: {release / 'release.json.sig'})")


@app.command()
def gate(
    candidate: Annotated[Path, typer.Argument(help="candidate release directory")],
    baseline: Annotated[Path, typer.Option(help="baseline release directory (the last release)")],
    profile: Annotated[list[str] | None, typer.Option(help="profile(s) to gate (default: all shared)")] = None,
    runner: Annotated[str | None, typer.Option(help="local or agent://host:port (default: the profile's)")] = None,
    runner_token: Annotated[str | None, typer.Option(envvar="EDGEYARD_AGENT_TOKEN", help="agent token")] = None,
    junit: Annotated[Path | None, typer.Option(help="write JUnit XML here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="write the JSON report here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write the Markdown summary here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON report instead of the Markdown")] = False,
    targets: Annotated[str, typer.Option(help="primary: each profile's first OK target; all")] = "primary",
    min_rounds: Annotated[int, typer.Option(help="interleaved rounds before the first decision")] = 6,
    max_rounds: Annotated[int, typer.Option(help="cap on rounds; then 'inconclusive'")] = 30,
    latency_floor: Annotated[float, typer.Option(help="smallest p50 regression that counts")] = 0.05,
    latency_p90_floor: Annotated[float, typer.Option(help="smallest p90 regression that counts")] = 0.10,
    size_tolerance: Annotated[float, typer.Option(help="allowed artifact growth")] = 0.05,
) -> None:
    """Gate a candidate release against the baseline on the production hardware.

    Exit 0 pass, 1 regression or broken budget, 3 inconclusive after the run cap, 4 the gate
    could not run (unreadable release, missing profile, unusable runner), 5 a missing extra.
    The Markdown summary is appended to $GITHUB_STEP_SUMMARY when it is set.
    """
    from .gating import GateError, GatePolicy, write_reports
    from .gating import gate as run_gate

    if targets not in ("primary", "all"):
        raise typer.BadParameter("must be 'primary' or 'all'", param_hint="'--targets'")
    if not 2 <= min_rounds <= max_rounds:
        raise typer.BadParameter(f"need 2 <= --min-rounds <= --max-rounds (got {min_rounds} and "
                                 f"{max_rounds})", param_hint="'--min-rounds'")
    policy = GatePolicy(latency_floor=latency_floor, latency_p90_floor=latency_p90_floor,
                        size_tolerance=size_tolerance,
                        min_rounds=min_rounds, max_rounds=max_rounds, targets=targets)
    try:
        with stdout_to_stderr(as_json):
            report = run_gate(candidate, baseline, profile or None, runner, policy=policy,
                              token=runner_token)
    except (GateError, EdgeyardError) as exc:
        typer.echo(f"error: the gate could not run: {exc}", err=True)
        raise typer.Exit(exit_code_of(exc)) from None
    if as_json:
        typer.echo(report.to_json())
    else:
        typer.echo(report.to_markdown())
    try:
        write_reports(report, junit, json_out, markdown)
    except OSError as exc:
        raise _fail(EdgeyardError(f"the gate decided ({report.verdict}) but a report could not "
                                  f"be written: {exc}"), ExitCode.ERROR) from None
    raise typer.Exit(report.exit_code)


@app.command()
def agent(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8765,
    token: Annotated[str | None, typer.Option(envvar="EDGEYARD_AGENT_TOKEN", help="bearer token")] = None,
    token_file: Annotated[Path | None, typer.Option(help="file holding the token")] = None,
    workdir: Annotated[Path | None, typer.Option(help="where uploads go (default: a temp dir)")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="largest accepted upload")] = 256.0,
) -> None:
    """Run the measurement agent on a device (the gate's agent://host:port runner). Exit 2
    without a token, 4 when --token-file cannot be read."""
    from .gating.agent import serve

    if token_file is not None:
        token = read_file_option(token_file, "--token-file").decode("utf-8", "replace").strip()
        if not token:
            raise _fail(EdgeyardError(f"--token-file {str(token_file)!r} is empty"), ExitCode.ERROR)
    if not token:
        raise typer.BadParameter("the agent needs a token: give --token-file or set "
                                 "$EDGEYARD_AGENT_TOKEN", param_hint="'--token-file'")
    serve(host, port, token, workdir, int(max_upload_mb * 1024 * 1024))


def _server_commands() -> None:
    from .server import cli as server_cli

    app.command("serve")(server_cli.serve)
    app.command("drift")(server_cli.drift)
    app.command("server-key")(server_cli.server_key)
    app.add_typer(server_cli.releases_app, name="releases")
    from .server.rollout_cli import rollout_app

    app.add_typer(rollout_app, name="rollout")


_server_commands()


def main() -> None:
    """The `edgeyard` command. An error a command did not expect still ends in one line on
    stderr with its exit code, never a traceback: a missing extra (5, with the pip command),
    any other edgeyard error or a file that cannot be read or written (4)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except (EdgeyardError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exit_code_of(exc))


if __name__ == "__main__":
    main()
