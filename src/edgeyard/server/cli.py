"""`edgeyard serve`, `edgeyard releases register`, `edgeyard drift`, `edgeyard server-key`.

Heavy modules (FastAPI, SQLAlchemy, uvicorn) load inside the commands that need them. Exit codes
as for every command (`edgeyard._exit.ExitCode`): an error from the server, or an unreachable
one, is 4.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .._deps import require
from .._exit import ExitCode, exit_code_of
from ..errors import EdgeyardError

DATA_DIR = Path("edgeyard-data")


def _fail(exc: BaseException) -> typer.Exit:
    """One line on stderr; MISSING_EXTRA (5) for a missing extra, else ERROR (4)."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exit_code_of(exc))


def _engine(database: str | None, data_dir: Path) -> Any:
    require("sqlalchemy")
    from . import db

    engine = db.make_engine(database or db.default_url(data_dir))
    db.migrate(engine)
    return engine


def _key_file(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def ensure_keys(engine: Any, data_dir: Path) -> dict[str, str]:
    """Keys from $EDGEYARD_ADMIN_KEY / $EDGEYARD_INGEST_KEY are registered; where no key of a
    kind exists yet, one is created and written to <data dir>/<kind>.key (mode 600)."""
    from . import store

    out = {}
    for kind in ("admin", "ingest"):
        env = os.environ.get(f"EDGEYARD_{kind.upper()}_KEY")
        if env:
            store.add_key(engine, env, kind, label="from the environment")
            out[kind] = "$EDGEYARD_" + kind.upper() + "_KEY"
        elif not store.has_keys(engine, kind):
            key = store.create_key(engine, kind, label="created on first start")
            _key_file(data_dir / f"{kind}.key", key)
            out[kind] = str(data_dir / f"{kind}.key")
        elif (data_dir / f"{kind}.key").exists():
            out[kind] = str(data_dir / f"{kind}.key")
    return out


def serve(
    database: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: SQLite in --data-dir)")] = None,
    data_dir: Annotated[Path, typer.Option(help="SQLite file and first-start keys")] = DATA_DIR,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (4318 is OTLP/HTTP's)")] = 4318,
    webhook: Annotated[str | None, typer.Option(help="POST new findings here (JSON)")] = None,
    check_every: Annotated[float, typer.Option(help="seconds between background drift checks "
                                                    "(0: only on request)")] = 300.0,
    check_window: Annotated[str, typer.Option(help="window of the background checks")] = "1h",
    max_body_mb: Annotated[float, typer.Option(help="largest accepted request body")] = 8.0,
    rate_per_key: Annotated[float | None, typer.Option(
        help="uploads per second per ingest key before 429 (default: no limit)")] = None,
    bucket_s: Annotated[int, typer.Option(help="aggregate windows into buckets of this many "
                                               "seconds (the time resolution of queries)")] = 300,
    max_series_per_request: Annotated[int, typer.Option(
        help="distinct series (signals, counter attribute sets) one request may write; points "
             "of more are refused (0: no limit)")] = 1_000,
    max_series_per_app: Annotated[int, typer.Option(
        help="distinct series an app may store; points of new series over it are refused "
             "(0: no limit)")] = 10_000,
    log_refusals_per_s: Annotated[float, typer.Option(
        help="log lines a second for refused requests (the rest are counted)")] = 10.0,
    poll: Annotated[float, typer.Option(
        help="seconds between a device's polls for its release (sent to the devices)")] = 300.0,
    workers: Annotated[int, typer.Option(
        help="worker processes behind the port (connections handed to each in turn), about "
             "one per core; the background work runs on one of them, the leader")] = 1,
    precompute_every: Annotated[float, typer.Option(
        help="seconds between the leader's looks for a closed bucket, whose day check and "
             "timeline it then computes ahead (0: off)")] = 30.0,
    retention_days: Annotated[float, typer.Option(
        help="uploads and aggregates older than this many days are deleted (0: kept)")] = 0.0,
    merge_in_request: Annotated[bool, typer.Option(
        help="merge each window into the aggregates in its request's transaction instead of "
             "appending it for the background compactor")] = False,
    commit_on_loop: Annotated[bool, typer.Option(
        help="run each group commit on the event loop instead of a thread beside it: more "
             "uploads/s on a worker that only ingests, but a slow fsync then stalls every other "
             "request (device polls, downloads, the API)")] = False,
    spool: Annotated[bool | None, typer.Option(
        help="answer an upload whose series are all stored once it is in the worker's spool "
             "file (fdatasync; beside the SQLite file, else under --data-dir), and store it "
             "behind the answer, hundreds a transaction; reads on this host still see it at "
             "once (default: on with SQLite, off with PostgreSQL, where another host's reads "
             "see it a moment later)")] = None,
    spool_sync_ms: Annotated[float, typer.Option(
        help="0: a spooled upload is answered after the spool's fdatasync (a power loss loses "
             "no answered upload); N > 0: answered once the operating system has it, with an "
             "fdatasync every N ms: a killed or crashed server loses none, a power loss or "
             "kernel crash up to about N ms of answered uploads (as PostgreSQL's "
             "synchronous_commit=off)")] = 0.0,
    discard: Annotated[bool, typer.Option(
        help="decode and answer uploads but store nothing: the null endpoint benchmarks/"
             "ingest.py compares storage with", hidden=True)] = False,
    rollout_tick: Annotated[float, typer.Option(
        help="seconds between looks of the rollout loop (each rollout is looked at every "
             "check_s of its plan; 0: no automatic decisions)")] = 10.0,
) -> None:
    """Run the telemetry ingestion and drift service (OTLP/HTTP on /v1/metrics)."""
    require("fastapi", extra="server")
    require("uvicorn", extra="server")
    import uvicorn

    from .._signals import stop_on_signals
    from .app import Settings, create_app

    engine = _engine(database, data_dir)
    keys = ensure_keys(engine, data_dir)
    settings = Settings(database=database or str(engine.url), max_body=int(max_body_mb * 2**20),
                        rate_per_key=rate_per_key, webhook=webhook, bucket_s=bucket_s,
                        check_every_s=check_every or None, check_window=check_window,
                        max_series_per_request=max_series_per_request or None,
                        max_series_per_app=max_series_per_app or None,
                        log_refusals_per_s=log_refusals_per_s, poll_s=poll,
                        rollout_tick_s=rollout_tick or None,
                        precompute_every_s=precompute_every or None,
                        retention_s=retention_days * 86400 or None,
                        append=not merge_in_request, loop_writer=commit_on_loop,
                        discard=discard, freeze_heap=True)
    if spool is None:
        spool = engine.dialect.name == "sqlite"
    if spool and not merge_in_request and not discard:
        from . import db

        settings.spool_dir = str(db.spool_of(engine) or data_dir / "spool")
    if spool_sync_ms < 0 or (spool_sync_ms and not settings.spool_dir):
        raise typer.BadParameter(
            f"must be >= 0, and it applies to the spool only (got {spool_sync_ms:g}; the spool "
            f"is {'on' if settings.spool_dir else 'off: --spool turns it on'})",
            param_hint="--spool-sync-ms")
    settings.spool_sync_s = spool_sync_ms / 1000
    if workers < 1:
        raise typer.BadParameter(f"must be 1 or more (got {workers})", param_hint="--workers")
    _log_to_stderr()
    dump_stacks_on_sigusr1()
    shown = engine.url.render_as_string(hide_password=True)
    typer.echo(f"edgeyard serve listening on http://{host}:{port} (database {shown}; "
               + ", ".join(f"{k} key: {v}" for k, v in keys.items())
               + (f"; {workers} workers" if workers > 1 else "") + ")")
    from . import fastdecode, partsmerge

    typer.echo(f"uploads decoded: {fastdecode.describe()}; sketches merged: "
               f"{partsmerge.describe()}")
    if settings.spool_dir:
        from . import store
        from .spool import drain

        left = drain(engine, Path(settings.spool_dir),
                     store.Limits(series_per_app=settings.max_series_per_app))
        typer.echo(f"spool: {settings.spool_dir}" + (
            f" (stored {left.windows} windows a stopped server had spooled)"
            if left.windows else ""))
    sys.stdout.flush()
    if workers > 1:
        from .workers import serve_workers

        engine.dispose()
        serve_workers(settings, host, port, workers)
        return
    app = create_app(settings, engine)
    stop_on_signals()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except KeyboardInterrupt:
        pass


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints every thread's Python stack to stderr (the service keeps
    running): what a stalled server is waiting on, without a debugger."""
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)


def _log_to_stderr() -> None:
    """The service's own lines (refused requests, internal errors) on stderr, next to
    uvicorn's."""
    import logging

    log = logging.getLogger("edgeyard.server")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def server_key(
    kind: Annotated[str, typer.Argument(help="ingest (devices) or admin (register, read)")],
    app_name: Annotated[str | None, typer.Option("--app", help="ingest keys: the only model "
                                                              "it may upload for")] = None,
    label: Annotated[str, typer.Option(help="a note for you")] = "",
    database: Annotated[str | None, typer.Option(help="as for serve")] = None,
    data_dir: Annotated[Path, typer.Option(help="as for serve")] = DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="print the key and its kind as JSON")] = False,
) -> None:
    """Create an API key in the server's database and print it (it is stored hashed)."""
    from . import store

    if kind not in ("ingest", "admin"):
        raise typer.BadParameter(f"must be 'ingest' or 'admin' (got {kind!r})", param_hint="KIND")
    try:
        engine = _engine(database, data_dir)
        key = store.create_key(engine, kind, app_name, label)
    except (ValueError, EdgeyardError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"kind": kind, "app": app_name, "label": label, "key": key}, indent=2))
    else:
        typer.echo(key)


releases_app = typer.Typer(no_args_is_help=True, help="Releases known to the server.")


@releases_app.command("register")
def register(
    release_dir: Annotated[Path, typer.Argument(help="a built release directory")],
    server: Annotated[str, typer.Option(envvar="EDGEYARD_SERVER")] = "http://127.0.0.1:4318",
    key: Annotated[str | None, typer.Option(help="admin key (or $EDGEYARD_ADMIN_KEY)")] = None,
    data_dir: Annotated[Path, typer.Option(help="where serve wrote admin.key")] = DATA_DIR,
    files: Annotated[bool, typer.Option(help="also upload the files devices download (for "
                                             "rollouts); --no-files: drift checks only")] = True,
    stable: Annotated[bool, typer.Option(help="make it the release devices serve outside a "
                                              "rollout (an app's first release)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the server's answer as JSON")] = False,
) -> None:
    """Upload a release to the server: its reference sketches (drift checks) and the files
    devices download (content-addressed: a file the server has is not sent again). Exit 4
    when the server refuses it or cannot be reached."""
    from .client import Client, admin_key

    try:
        client = Client(server, admin_key(key, data_dir))
        out = client.register(release_dir, files=files)
        if stable:
            client.set_stable(out["model"], out["release"])
    except EdgeyardError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({**out, "server": server, "stable": stable}, indent=2, default=str))
        return
    sent = f", {len(out['uploaded'])} files uploaded" if "uploaded" in out else ""
    typer.echo(f"registered {out['model']} {out['release']} at {server}{sent}"
               + (" (stable)" if stable else ""))


@releases_app.command("stable")
def set_stable(
    model: Annotated[str, typer.Argument(help="the app (model name)")],
    release: Annotated[str, typer.Argument(help="the release its devices serve")],
    server: Annotated[str, typer.Option(envvar="EDGEYARD_SERVER")] = "http://127.0.0.1:4318",
    key: Annotated[str | None, typer.Option(help="admin key (or $EDGEYARD_ADMIN_KEY)")] = None,
    data_dir: Annotated[Path, typer.Option(help="where serve wrote admin.key")] = DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Set the release an app's devices serve outside a rollout (no rollout may be running).
    Exit 4 when the server refuses it or cannot be reached."""
    from .client import Client, admin_key

    try:
        Client(server, admin_key(key, data_dir)).set_stable(model, release)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"model": model, "stable": release, "server": server}, indent=2))
        return
    typer.echo(f"{model}: stable release {release}")


def drift(
    model: Annotated[str, typer.Option(help="model name (an OpenTelemetry app's service.name)")],
    release: Annotated[str | None, typer.Option(
        help="release version: checked against its build-time reference (with "
             "--baseline-window: only this release's data)")] = None,
    window: Annotated[str, typer.Option(help="time window: 15m, 1h, 7d")] = "1h",
    baseline_window: Annotated[str | None, typer.Option(
        help="compare with the app's own data of this period before the window (e.g. 7d) "
             "instead of a release's reference: for apps without a registered release")] = None,
    profile: Annotated[str | None, typer.Option(help="one segment (profile) only")] = None,
    end: Annotated[float | None, typer.Option(help="end of the window, unix seconds "
                                                   "(default: now)")] = None,
    server: Annotated[str, typer.Option(envvar="EDGEYARD_SERVER")] = "http://127.0.0.1:4318",
    key: Annotated[str | None, typer.Option(help="admin key (or $EDGEYARD_ADMIN_KEY)")] = None,
    data_dir: Annotated[Path, typer.Option(help="where serve wrote admin.key")] = DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON result")] = False,
    alert: Annotated[bool, typer.Option(help="record findings and call the webhook")] = False,
) -> None:
    """Check a release's (or an app's) production data for drift. Exit 0 ok, 1 drift, 3 not
    enough data, 4 the server refused the check or cannot be reached."""
    from .client import Client, admin_key

    if release is None and baseline_window is None:
        raise typer.BadParameter("give --release (checked against its build-time reference) or "
                                 "--baseline-window 7d (against the app's own earlier data)",
                                 param_hint="'--release'")
    try:
        res = Client(server, admin_key(key, data_dir)).drift(model, release, window, profile,
                                                             end=end, alert=alert,
                                                             baseline=baseline_window)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(res, indent=2))
    else:
        typer.echo(format_result(res))
    raise typer.Exit(DRIFT_EXIT.get(res["verdict"], ExitCode.UNDECIDED))


# a drift check's verdict -> exit code; anything else (insufficient_data) is UNDECIDED
DRIFT_EXIT = {"ok": ExitCode.OK, "drift": ExitCode.FAILED}


def format_result(res: dict[str, Any]) -> str:
    """The terminal table of a drift check."""
    ov = res.get("overall") or {}
    ref = res.get("reference") or {}
    against = f" vs the {ref['seconds'] / 3600:g} h before" if ref.get("kind") == "baseline" \
        else ""
    lines = [f"{res['model']} {res['release'] or '(every release)'}: "
             f"{res['verdict'].upper()} over the last "
             f"{res['window']['seconds'] / 3600:g} h{against} ({res['devices']} devices, "
             f"{(ov.get('runtime') or {}).get('calls', 0)} calls)", "",
             f"{'signal':34} {'n':>8} {'KS':>7} {'bound':>7} {'thresh':>7} {'p':>8} "
             f"{'PSI':>7} {'JS':>7}  verdict"]
    def f(s: dict[str, Any], k: str, fmt: str = ".3f") -> str:
        v = s.get(k)
        return "–" if v is None else format(v, fmt)

    for s in ov.get("signals", []):
        verdict = "DRIFT" if s.get("verdict") == "drift" else str(s.get("verdict"))
        lines.append(f"{s['name'][:34]:34} {s.get('n', 0):>8} {f(s, 'ks'):>7} "
                     f"{f(s, 'ks_bound'):>7} {f(s, 'threshold'):>7} "
                     f"{f(s, 'p_value', '.2g'):>8} {f(s, 'psi'):>7} {f(s, 'js'):>7}  {verdict}")
    c = ov.get("classes")
    if c:
        lines.append(f"{'output.class (chi-square)':34} {c.get('n', 0):>8} {'':>7} {'':>7} "
                     f"{'':>7} {c.get('p_value', 1):>8.2g} {'':>7} {'':>7}  "
                     f"{'DRIFT' if c.get('verdict') == 'drift' else c.get('verdict')}")
    ea = ov.get("expected_accuracy")
    if ea:
        lines += ["", f"expected accuracy {ea['current']:.4f} vs reference {ea['reference']:.4f} "
                      f"(change {ea['difference']:+.4f}; {ea.get('note', '')})"]
    for seg, v in (res.get("segments") or {}).items():
        lines.append(f"segment {seg}: {v['verdict']}" + (f" ({', '.join(v['drifted'])})"
                                                          if v.get("drifted") else ""))
    for f_ in ov.get("findings", []):
        lines.append(f"finding: {f_['kind']} {f_['signal']}: {f_['message']}")
    return "\n".join(lines)
