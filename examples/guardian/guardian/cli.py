"""Command line: ``python -m guardian serve | worker | upstream | status | submit``.

The one place that prints to the terminal, catches guardian errors and picks exit codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from guardian import __version__, logsetup
from guardian.errors import GuardianError, InstanceRunningError
from guardian.paths import DataDir

EXIT_CODES_HELP = """exit codes:
  0  success (status: ready)
  1  request rejected by the service (submit: 4xx answer) or runtime error
  2  usage error (bad flags)
  3  status: ready but degraded (dependency circuit open)
  4  status: not ready (readiness answered 503)
  5  service unreachable
  6  serve: another guardian instance already owns the data directory
  7  audit verify: the audit chain is broken (first broken entry printed)
"""


def _add_instance_flags(parser: argparse.ArgumentParser, with_port: bool = True) -> None:
    """Add the flags shared by serve/supervisor/api/worker."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="directory holding the database, logs, pid files and metric shards",
    )
    if with_port:
        parser.add_argument("--port", type=int, default=8080, help="API port (default 8080)")
        parser.add_argument(
            "--host", default="127.0.0.1", help="API bind address (default 127.0.0.1)"
        )
    parser.add_argument(
        "--upstream-url",
        default=os.environ.get("GUARDIAN_UPSTREAM_URL"),
        help="base URL of the dependency (default: $GUARDIAN_UPSTREAM_URL); "
        "without it, dependency tasks are rejected",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argparse tree."""
    parser = argparse.ArgumentParser(
        prog="guardian",
        description="Durable task service with supervised workers.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"guardian {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    serve = sub.add_parser(
        "serve",
        help="run an instance (keeper → supervisor → api + workers)",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    _add_instance_flags(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (1-16); persisted as the worker_count setting",
    )
    serve.add_argument(
        "--healer", action="store_true", help="run the self-healing loop as a supervised process"
    )
    serve.add_argument(
        "--tls",
        action="store_true",
        help="also serve HTTPS on 127.0.0.1 (self-signed certificate in <data-dir>/tls, "
        "issued if missing; port in <data-dir>/tls/port)",
    )
    serve.add_argument(
        "--enable-fault-injection",
        action="store_true",
        help="TESTING ONLY: accept fault injection and the governance clock override "
        "(POST /api/guardian/faults/..., `guardian fault inject`)",
    )

    for name, text in (
        ("supervisor", "internal: supervise api and workers (started by serve)"),
        ("api", "internal: run the HTTP API process (started by the supervisor)"),
    ):
        internal = sub.add_parser(name, help=text, epilog=EXIT_CODES_HELP, formatter_class=fmt)
        _add_instance_flags(internal)
        if name == "supervisor":
            internal.add_argument("--healer", action="store_true", help="also supervise the healer")
    healer = sub.add_parser(
        "healer", help="internal: run the self-healing loop (started by the supervisor)"
    )
    _add_instance_flags(healer)
    _add_healing_commands(sub)

    worker = sub.add_parser(
        "worker",
        help="run one worker process (normally started by the supervisor)",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    _add_instance_flags(worker, with_port=False)
    worker.add_argument("--slot", type=int, default=0, help="worker slot number (default 0)")

    upstream = sub.add_parser(
        "upstream",
        help="run the stand-in dependency service",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    upstream.add_argument("--port", type=int, required=True, help="port to listen on")
    upstream.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    upstream.add_argument("--log-file", type=Path, default=None, help="also append JSON logs here")

    status = sub.add_parser(
        "status",
        help="print health of a running instance",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    status.add_argument("--url", help="base URL of the instance, e.g. http://127.0.0.1:8080")
    status.add_argument("--data-dir", type=Path, help="data dir: report pid files and task counts")
    status.add_argument("--json", action="store_true", help="print JSON")

    submit = sub.add_parser(
        "submit", help="submit a task and print its id", epilog=EXIT_CODES_HELP, formatter_class=fmt
    )
    submit.add_argument("--url", required=True, help="base URL of the instance")
    submit.add_argument("--kind", required=True, choices=("orchestrate", "compute", "dependency"))
    submit.add_argument("--payload", default="{}", help="JSON object (default {})")
    return parser


def _add_healing_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``playbooks``, ``fault``, ``audit`` and ``incidents``."""
    playbooks = sub.add_parser("playbooks", help="list the registered playbooks (JSON)")
    playbooks.add_argument("action", choices=("list",))
    fault = sub.add_parser(
        "fault", help="inject the fault a playbook heals (instance needs --enable-fault-injection)"
    )
    fault.add_argument("action", choices=("inject",))
    fault.add_argument("playbook_id", help="playbook id, see `guardian playbooks list`")
    fault.add_argument("--data-dir", type=Path, required=True, help="data dir of the instance")
    fault.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="injector option"
    )
    audit = sub.add_parser("audit", help="verify the hash-chained audit log")
    audit.add_argument("action", choices=("verify",))
    audit.add_argument("--data-dir", type=Path, required=True, help="data dir of the instance")
    incidents = sub.add_parser("incidents", help="print incidents and healer stats (JSON)")
    incidents.add_argument("--data-dir", type=Path, required=True, help="data dir of the instance")
    incidents.add_argument("--playbook", default=None, help="only this playbook's incidents")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, map errors to exit codes."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except InstanceRunningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("hint: stop it first, or pass another --data-dir", file=sys.stderr)
        return 6
    except GuardianError as exc:
        logging.getLogger("guardian.cli").error("command failed: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    """Run the selected sub-command."""
    command = args.command
    if command in {"serve", "supervisor", "api", "worker"}:
        return _run_instance_process(args)
    if command == "upstream":
        return _run_upstream(args)
    if command == "status":
        return _status(args)
    if command in {"playbooks", "fault", "audit", "incidents", "healer"}:
        return _healing(args)
    return _submit(args)


def _healing(args: argparse.Namespace) -> int:
    """Run one of the self-healing commands."""
    from guardian.healing import cli_support  # noqa: PLC0415 - keep other commands light

    if args.command == "healer":
        data_dir = DataDir(args.data_dir.resolve())
        logsetup.configure("healer", data_dir.log_path)
        return cli_support.run_healer(data_dir, args.upstream_url, (args.host, args.port))
    if args.command == "playbooks":
        print(json.dumps(cli_support.playbook_list(), indent=2))
        return 0
    data_dir = DataDir(args.data_dir.resolve())
    if args.command == "fault":
        options = dict(item.split("=", 1) for item in args.option if "=" in item)
        result = cli_support.inject(data_dir, args.playbook_id, options)
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    if args.command == "audit":
        report = cli_support.audit_report(data_dir)
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0 if report["intact"] else 7
    print(json.dumps(cli_support.incidents_report(data_dir, args.playbook), indent=2))
    return 0


def _run_instance_process(args: argparse.Namespace) -> int:
    """Start one of the processes of an instance."""
    from guardian import runtime  # noqa: PLC0415 - keep `status`/`submit` start-up light

    data_dir = DataDir(args.data_dir.resolve())
    data_dir.ensure()
    logsetup.configure(args.command, data_dir.log_path)
    if args.command == "worker":
        from guardian import worker  # noqa: PLC0415

        return worker.main(
            data_dir, worker.WorkerConfig(slot=args.slot, upstream_url=args.upstream_url)
        )
    if getattr(args, "workers", None) is not None and not 1 <= args.workers <= 16:
        print("error: --workers must be between 1 and 16", file=sys.stderr)
        return 2
    config = runtime.InstanceConfig(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        upstream_url=args.upstream_url,
        workers=getattr(args, "workers", None),
        healer=bool(getattr(args, "healer", False)),
        fault_injection=bool(getattr(args, "enable_fault_injection", False)),
        tls=bool(getattr(args, "tls", False)),
    )
    entry = {
        "serve": runtime.keeper_main,
        "supervisor": runtime.supervisor_main,
        "api": runtime.api_main,
    }[args.command]
    return entry(config)


def _run_upstream(args: argparse.Namespace) -> int:
    """Run the stand-in upstream until SIGTERM/SIGINT."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from guardian import upstream  # noqa: PLC0415

    logsetup.configure("upstream", args.log_file)
    server = upstream.serve(args.host, args.port)

    def stop(signum: int, frame: object) -> None:
        del frame
        logging.getLogger("guardian.upstream").info("stopping", extra={"signal": signum})
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.getLogger("guardian.upstream").info(
        "upstream listening", extra={"port": server.server_address[1]}
    )
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


def _status(args: argparse.Namespace) -> int:
    """Print health from the URL and/or the data dir."""
    from guardian import status  # noqa: PLC0415

    if not args.url and not args.data_dir:
        print("error: give --url and/or --data-dir", file=sys.stderr)
        return status.EXIT_USAGE
    report: dict[str, object] = {}
    code = status.EXIT_OK
    if args.data_dir:
        report["local"] = status.data_dir_status(args.data_dir.resolve())
    if args.url:
        try:
            http_report = status.http_status(args.url)
        except status.UnreachableError as exc:
            report["http"] = {"url": args.url, "error": str(exc)}
            code = status.EXIT_UNREACHABLE
        else:
            report["http"] = http_report
            code = status.exit_code_for(http_report)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_status_text(report)
    return code


def _print_status_text(report: dict[str, object]) -> None:
    """Human-readable status."""
    http = report.get("http")
    if isinstance(http, dict):
        if "error" in http:
            print(f"{http['url']}: unreachable ({http['error']})")
        else:
            readiness = http["readiness"]
            print(f"{http['url']}: live={http['live']} readiness={readiness.get('status')}")
            for name, check in sorted(readiness.get("checks", {}).items()):
                print(f"  {name}: {json.dumps(check, sort_keys=True)}")
    local = report.get("local")
    if isinstance(local, dict):
        print(f"data dir {local['data_dir']}")
        for name, info in sorted(local["pids"].items()):
            print(f"  {name}: pid {info['pid']} {'alive' if info['alive'] else 'gone'}")
        if "tasks" in local:
            print(f"  tasks: {json.dumps(local['tasks'], sort_keys=True)}")


def _submit(args: argparse.Namespace) -> int:
    """Submit a task and print its id."""
    from guardian import status  # noqa: PLC0415

    try:
        payload = json.loads(args.payload)
    except ValueError:
        print("error: --payload is not valid JSON", file=sys.stderr)
        return status.EXIT_USAGE
    try:
        code, body = status.submit(args.url, args.kind, payload)
    except status.UnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return status.EXIT_UNREACHABLE
    if code == 201:
        print(body["id"])
        return status.EXIT_OK
    print(f"error: {code} {body.get('error')}: {body.get('message')}", file=sys.stderr)
    return status.EXIT_REJECTED
