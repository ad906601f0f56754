"""The `edgeyard` command: a thin layer over the Python API.

Exit codes: 0 success; 1 something built/checked FAILED (a target, a gate figure, a drift
check); 2 bad input (config, profile, model, data, a missing key) that stopped the command
before it could produce a result; `gate` adds 2 = inconclusive and 3 = the gate could not run,
`drift` adds 3 = too little data to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import EdgeyardError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build, gate, ship and watch ML models on edge devices.",
)


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


@app.command()
def build(
    config: Annotated[Path, typer.Argument(help="build.toml (see edgeyard.config)")],
    out: Annotated[Path | None, typer.Option(help="release directory (overrides the config)")] = None,
    profile: Annotated[list[str] | None, typer.Option(help="profile(s) to build (overrides)")] = None,
    profile_dir: Annotated[list[Path] | None, typer.Option(help="extra profile directory")] = None,
    jobs: Annotated[int | None, typer.Option(help="targets converted in parallel")] = None,
    sign_key: Annotated[Path | None, typer.Option(help="Ed25519 private key (PEM) to sign with")] = None,
) -> None:
    """Build and verify a release from a config file. Exit 1 when any target FAILED."""
    from .builder.pipeline import build as run_build
    from .config import load_arrays, load_config

    try:
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
            jobs=jobs or cfg.jobs,
            sign_key=sign_key,
            student=cfg.student_factory() if cfg.student else None,
            train=_train_data(cfg.train) if cfg.train else None,
            distill_options=cfg.distill_options,
        )
    except EdgeyardError as exc:
        raise _fail(exc) from None
    typer.echo(release.summary())
    raise typer.Exit(0 if release.ok else 1)


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
    """List and validate device profiles. Exit 1 when any profile file is invalid."""
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
    raise typer.Exit(1 if bad else 0)


@app.command()
def inspect(
    release: Annotated[Path, typer.Argument(help="release directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest")] = False,
    public_key: Annotated[Path | None, typer.Option(help="verify the signature with this key")] = None,
) -> None:
    """Show what a release holds; check its schema, every file's sha256 and, with
    --public-key, its signature. Exit 1 on any mismatch."""
    from .release import load_release

    try:
        rel = load_release(release)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(rel.manifest, indent=2))
    else:
        typer.echo(rel.summary())
        m = rel.manifest
        typer.echo(f"\nsource: {m['model']['source_format']} sha256 {m['model']['source_sha256'][:16]}...")
        cal = m["calibration"]
        typer.echo(f"calibration: {cal['count']} samples" if cal else "calibration: none")
        typer.echo("toolchain: " + ", ".join(f"{k} {v}" for k, v in m["toolchain"].items()))
        sig = m.get("signature")
        typer.echo(f"signature: {sig['algorithm']} key {sig['key_id']}" if sig else
                   "signature: none (edgeyard sign RELEASE --key KEY.pem)")
    problems = rel.verify_files()
    if public_key is not None:
        from .signing import verify_manifest

        verdict = verify_manifest(rel.manifest, public_key)
        if not verdict.manifest_ok:
            problems.append(f"signature: {verdict.reason}")
    try:
        rel.validate()
    except EdgeyardError as exc:
        problems.append(str(exc))
    for p in problems:
        typer.echo(f"PROBLEM: {p}", err=True)
    if not as_json and not problems:
        typer.echo("files: every sha256 matches; manifest matches its schema")
    raise typer.Exit(1 if problems else 0)


envs_app = typer.Typer(help="Isolated environments for converters whose pins conflict with "
                                 "this one (litert-torch).", invoke_without_command=True)
app.add_typer(envs_app, name="envs")


@envs_app.callback()
def envs_list(ctx: typer.Context) -> None:
    """List the isolated converter environments: where, whether installed, and why."""
    from ._envs import status

    if ctx.invoked_subcommand is not None:
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
) -> None:
    """Generate an Ed25519 key pair for signing releases (private key mode 0600)."""
    from .signing import generate_keys, key_id, load_public_key

    try:
        priv, pub = generate_keys(out)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    typer.echo(f"private key: {priv} (keep it secret; CI secret for `edgeyard build --sign-key`)")
    typer.echo(f"public key:  {pub} (ship it with the app: Runtime.from_release(..., public_key=...))")
    typer.echo(f"key id:      {key_id(load_public_key(pub))}")


@app.command()
def sign(
    release: Annotated[Path, typer.Argument(help="release directory")],
    key: Annotated[Path, typer.Option(help="Ed25519 private key (PEM)")],
) -> None:
    """Sign a release's manifest (and each artifact's entry) with an Ed25519 key."""
    from .signing import sign_release

    try:
        kid = sign_release(release, key)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    typer.echo(f"signed {release / 'release.json'} with key {kid}")


@app.command()
def gate(
    candidate: Annotated[Path, typer.Argument(help="candidate release directory")],
    baseline: Annotated[Path, typer.Option(help="baseline release directory (the last release)")],
    profile: Annotated[list[str] | None, typer.Option(help="profile(s) to gate (default: all shared)")] = None,
    runner: Annotated[str | None, typer.Option(help="local or agent://host:port (default: the profile's)")] = None,
    runner_token: Annotated[str | None, typer.Option(envvar="EDGEYARD_AGENT_TOKEN", help="agent token")] = None,
    junit: Annotated[Path | None, typer.Option(help="write JUnit XML here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the JSON report here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write the Markdown summary here")] = None,
    targets: Annotated[str, typer.Option(help="primary: each profile's first OK target; all")] = "primary",
    min_rounds: Annotated[int, typer.Option(help="interleaved rounds before the first decision")] = 6,
    max_rounds: Annotated[int, typer.Option(help="cap on rounds; then 'inconclusive'")] = 30,
    latency_floor: Annotated[float, typer.Option(help="smallest p50 regression that counts")] = 0.05,
    latency_p90_floor: Annotated[float, typer.Option(help="smallest p90 regression that counts")] = 0.10,
    size_tolerance: Annotated[float, typer.Option(help="allowed artifact growth")] = 0.05,
) -> None:
    """Gate a candidate release against the baseline on the production hardware.

    Exit 0 pass, 1 regression or broken budget, 2 inconclusive after the run cap, 3 the gate
    could not run. The Markdown summary is appended to $GITHUB_STEP_SUMMARY when it is set.
    """
    from .gating import GateError, GatePolicy, write_reports
    from .gating import gate as run_gate

    if targets not in ("primary", "all"):
        typer.echo("error: --targets must be 'primary' or 'all'", err=True)
        raise typer.Exit(3)
    if not 2 <= min_rounds <= max_rounds:
        typer.echo("error: need 2 <= --min-rounds <= --max-rounds", err=True)
        raise typer.Exit(3)
    policy = GatePolicy(latency_floor=latency_floor, latency_p90_floor=latency_p90_floor,
                        size_tolerance=size_tolerance,
                        min_rounds=min_rounds, max_rounds=max_rounds, targets=targets)
    try:
        report = run_gate(candidate, baseline, profile or None, runner, policy=policy,
                          token=runner_token)
    except (GateError, EdgeyardError) as exc:
        typer.echo(f"error: the gate could not run: {exc}", err=True)
        raise typer.Exit(3) from None
    write_reports(report, junit, json_out, markdown)
    typer.echo(report.to_markdown())
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
    """Run the measurement agent on a device (the gate's agent://host:port runner)."""
    from .gating.agent import serve

    if token_file is not None:
        token = token_file.read_text().strip()
    if not token:
        typer.echo("error: the agent needs a token: --token-file or $EDGEYARD_AGENT_TOKEN", err=True)
        raise typer.Exit(2)
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
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
