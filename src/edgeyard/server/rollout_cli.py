"""`edgeyard rollout start|status|pause|resume|promote|rollback`: rollouts on a running server.

    edgeyard releases register build/digits-1.0 --stable     # the release devices serve today
    edgeyard releases register build/digits-1.1
    edgeyard rollout start digits --release 1.1 --steps 1,5,25,100 --hold 1h
    edgeyard rollout status digits                           # exit 0 done, 1 rolled back, 3 running
    edgeyard rollout status digits --json                    # the rollout and its decisions as JSON

The server decides between steps from the fleet's telemetry (see docs/rollouts.md); these
commands read and steer it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .._exit import ExitCode
from ..errors import EdgeyardError
from .cli import DATA_DIR, _fail

rollout_app = typer.Typer(no_args_is_help=True, help="Roll a release out to an app's fleet in "
                          "steps; the server halts and rolls back on its own when it is worse.")

Server = Annotated[str, typer.Option(envvar="EDGEYARD_SERVER")]
Key = Annotated[str | None, typer.Option(help="admin key (or $EDGEYARD_ADMIN_KEY)")]
DataDir = Annotated[Path, typer.Option(help="where serve wrote admin.key")]
# a rollout's state -> exit code; a state this client does not know is ERROR
EXIT = {"completed": ExitCode.OK, "rolled_back": ExitCode.FAILED, "running": ExitCode.UNDECIDED,
        "paused": ExitCode.UNDECIDED}
JsonFlag = Annotated[bool, typer.Option("--json", help="print the rollout as JSON")]


def _client(server: str, key: str | None, data_dir: Path) -> Any:
    from .client import Client, admin_key

    return Client(server, admin_key(key, data_dir))


def _seconds(text: str) -> float:
    from .watch import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@rollout_app.command("start")
def start(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="the app (model name)")],
    release: Annotated[str, typer.Option(help="the release to roll out (registered, with its "
                                              "files)")],
    steps: Annotated[str, typer.Option(help="percentages of the fleet, ending at 100")] =
        "1,5,25,100",
    hold: Annotated[str, typer.Option(help="least time per step (15m, 1h)")] = "1h",
    max_hold: Annotated[str, typer.Option(help="an undecided step pauses after this")] = "6h",
    check: Annotated[str, typer.Option(help="time between looks at the figures")] = "1m",
    fallback_margin: Annotated[float, typer.Option(
        help="fallback / error rate ratio new/old above 1 + this is worse")] = 0.25,
    fallback_floor: Annotated[float, typer.Option(
        help="a new fallback / error rate under (1 + margin) x old + this is not worse "
             "(with no fallbacks on either side a ratio cannot be bounded)")] = 0.001,
    latency_margin: Annotated[float, typer.Option(
        help="p90 latency above (1 + this) x the old release's is worse")] = 0.10,
    alpha: Annotated[float, typer.Option(help="false-halt budget of the whole rollout")] = 0.01,
    server: Server = "http://127.0.0.1:4318", key: Key = None, data_dir: DataDir = DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Start rolling RELEASE out to APP's devices, in place of its stable release. Exit 4 when
    the server refuses it or cannot be reached."""
    try:
        plan = {"steps": [float(s) for s in steps.split(",") if s.strip()],
                "hold_s": _seconds(hold), "max_hold_s": _seconds(max_hold),
                "check_s": _seconds(check), "fallback_margin": fallback_margin,
                "fallback_floor": fallback_floor,
                "latency_margin": latency_margin, "alpha": alpha}
    except ValueError:
        raise typer.BadParameter(f"--steps takes percentages, e.g. 1,5,25,100 (got {steps!r})"
                                 ) from None
    try:
        r = _client(server, key, data_dir).start_rollout(app_name, release, **plan)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"rollout {r['id']}: {app_name} {release} to {r['percent']:g}% of the fleet "
               f"(in place of {r['previous']}); steps {', '.join(f'{s:g}%' for s in r['steps'])}")


def _active(client: Any, app_name: str, rollout_id: str | None) -> dict[str, Any]:
    from .client import ServerError

    if rollout_id:
        return client.rollout(rollout_id)  # type: ignore[no-any-return]
    found = client.rollouts(app_name)
    if not found:
        raise ServerError(f"{app_name} has no rollout")
    return found[-1]  # type: ignore[no-any-return]


def format_status(r: dict[str, Any]) -> str:
    lines = [f"rollout {r['id']}: {r['model']} {r['release']} (in place of {r['previous']}) "
             f"{r['state'].upper()} at {r['percent']:g}% (step {r['step'] + 1} of "
             f"{len(r['steps'])}, held {r['step_held_s']:.0f} s): {r['reason']}"]
    for d in r["decisions"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d["time"]))
        lines.append(f"  {when} {d['action']:8} at {d['percent']:g}%: {d['why']}")
        for f in d["figures"]:
            est = f.get("estimate")
            lines.append(f"      {f['figure']}: {f['outcome']}"
                         + (f", estimate {est:.4g} vs {f['threshold']:.4g}"
                            if isinstance(est, int | float) else "")
                         + (f" ({f['note']})" if f.get("note") else ""))
    return "\n".join(lines)


@rollout_app.command("status")
def status(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    rollout_id: Annotated[str | None, typer.Option("--id", help="a rollout (default: the "
                                                                "app's latest)")] = None,
    as_json: JsonFlag = False,
    server: Server = "http://127.0.0.1:4318", key: Key = None, data_dir: DataDir = DATA_DIR,
) -> None:
    """The latest rollout of APP, with every decision and its figures. Exit 0 completed,
    1 rolled back, 3 still running or paused, 4 the server cannot be reached or has no such
    rollout."""
    try:
        r = _active(_client(server, key, data_dir), app_name, rollout_id)
    except EdgeyardError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(r, indent=2) if as_json else format_status(r))
    raise typer.Exit(EXIT.get(r["state"], ExitCode.ERROR))


def _action(action: str) -> Any:
    def run(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        rollout_id: Annotated[str | None, typer.Option("--id")] = None,
        server: Server = "http://127.0.0.1:4318", key: Key = None,
        data_dir: DataDir = DATA_DIR, as_json: JsonFlag = False,
    ) -> None:
        try:
            client = _client(server, key, data_dir)
            r = client.rollout(_active(client, app_name, rollout_id)["id"], action)
        except EdgeyardError as exc:
            raise _fail(exc) from None
        if as_json:
            typer.echo(json.dumps(r, indent=2))
            return
        typer.echo(f"rollout {r['id']}: {r['state']} at {r['percent']:g}% ({r['reason']})")

    run.__doc__ = {"pause": "Hold APP's rollout at its step (no automatic decisions).",
                   "resume": "Resume a paused rollout (its step's hold starts over).",
                   "promote": "Make the new release stable for every device now.",
                   "rollback": "Send every device back to the old release now."}[action]
    return run


for _name in ("pause", "resume", "promote", "rollback"):
    rollout_app.command(_name)(_action(_name))
