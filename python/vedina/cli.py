"""``vedina``: serve | migrate | worker | jobs | demo-data | set-role | drain | provider-sim.

Settings come from the environment (see README); flags only override a few
of them for convenience.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vedina", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--server", choices=["granian", "robyn"], help="override SERVER")
    serve.add_argument("--workers", type=int, help="override WORKERS")
    serve.add_argument("--port", type=int, help="override PORT")
    serve.add_argument("--host", help="override HOST")
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate_mode = migrate.add_mutually_exclusive_group()
    migrate_mode.add_argument("--check", action="store_true",
                              help="exit 1 if a migration is pending or the database differs from the schema")
    migrate_mode.add_argument("--autogenerate", metavar="MESSAGE",
                              help="write the next revision from the schema's difference with the database")
    commands.add_parser("worker", help="relay the outbox and run queued jobs")
    jobs = commands.add_parser("jobs", help="inspect the job queues").add_subparsers(dest="jobs_command", required=True)
    dead = jobs.add_parser("dead", help="jobs that failed their last try: list (JSON lines), replay or drop them")
    dead.add_argument("action", choices=["list", "replay", "drop"])
    dead.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                      help="a dead letter's id (repeatable), as list shows it")
    dead.add_argument("--all", dest="everything", action="store_true", help="every dead letter")
    jobs.add_parser("migrate-queues", help="convert the job queues to AMQP_QUEUE_TYPE (stop the workers first)")
    demo = commands.add_parser("demo-data", help="load demo movies with small playable media files")
    demo.add_argument("--movies", type=int, default=0, metavar="N",
                      help="also generate N realistic catalog rows (people, genres, credits) pointing at the demo clips")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated catalog")
    set_role = commands.add_parser("set-role", help="give an existing account a role (bootstrap the first admin)")
    set_role.add_argument("email")
    set_role.add_argument("role", choices=["viewer", "editor", "moderator", "admin"])
    drain = commands.add_parser("drain", help="make /ready answer 503 (draining) before a restart, or undo it")
    drain.add_argument("--port", type=int, help="the instance's PORT (names the default DRAIN_FILE)")
    drain.add_argument("--off", action="store_true", help="remove the drain file: /ready checks the services again")
    backup = commands.add_parser("backup", help="back up the database and media (see README, Backups)")
    backup.add_argument("--dest", metavar="DIR", help="override BACKUP_DIR")
    restore = commands.add_parser("restore", help="verify a backup and restore it into a scratch database/file")
    restore.add_argument("backup", metavar="BACKUP", help="a backup directory (or its manifest.json)")
    restore.add_argument("--into", metavar="TARGET", help="database name (real) or SQLite path (embedded)")
    restore.add_argument("--until", metavar="TIMESTAMP", help="replay the binlog up to this ISO 8601 time (real)")
    restore.add_argument("--media-into", metavar="DIR", help="also restore the media files into DIR")
    restore.add_argument("--overwrite-live", action="store_true", help="allow the live database/file/media as target")
    sim = commands.add_parser("provider-sim", help="run the payment provider simulator (Stripe's API subset, loopback)")
    sim.add_argument("--host", dest="sim_host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument("--port", dest="sim_port", type=int, help="port (default PROVIDER_SIM_PORT)")
    sim.add_argument("--webhook-url", default="", help="where events are POSTed (default: nowhere until configured)")
    sim.add_argument("--webhook-secret", help="signing secret (default: the one Vedina verifies, see README)")
    sim.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Robyn parses sys.argv when it is imported and when an app is built; our
    # flags are not its flags, so it gets a clean argv.
    sys.argv = [sys.argv[0]]
    overrides = {"server": "SERVER", "workers": "WORKERS", "port": "PORT", "host": "HOST"}
    for attribute, variable in overrides.items():
        value = getattr(args, attribute, None)
        if value is not None:
            os.environ[variable] = str(value)

    from vedina.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"vedina: configuration error: {exc}", file=sys.stderr)
        return 2

    from vedina.logs import configure_logging

    configure_logging(settings.log_level)
    if args.command == "serve":
        from vedina.http.serve import prepare_multiprocess_dir, serve_granian, serve_robyn

        # First, before anything imports prometheus_client (the simulator's helpers reach the
        # storage modules): it picks its multiprocess mode at import.
        prepare_multiprocess_dir(settings.data_dir, settings.port)
        from vedina.provider_sim.child import provider_sim_for

        with provider_sim_for(settings):
            (serve_robyn if settings.server == "robyn" else serve_granian)(settings)
    elif args.command == "migrate":
        return _migrate(settings, args)
    elif args.command == "drain":
        path = settings.drain_path
        if args.off:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        print(f"{'not draining' if args.off else 'draining'}: {path}")
    elif args.command in ("backup", "restore"):
        from vedina.backup.command import run_command

        return run_command(settings, args)
    elif args.command == "provider-sim":
        from vedina.config import provider_webhook_secret
        from vedina.provider_sim import run

        asyncio.run(run(host=args.sim_host, port=args.sim_port or settings.provider_sim_port,
                        webhook_url=args.webhook_url or None, exit_with_parent=args.exit_with_parent,
                        webhook_secret=args.webhook_secret or provider_webhook_secret(settings).decode()))
    elif args.command == "worker":
        from vedina.jobs.worker import run_worker

        asyncio.run(run_worker(settings))
    elif args.command == "jobs" and args.jobs_command == "migrate-queues":
        from vedina.jobs.queue_migration import migrate_command

        return asyncio.run(migrate_command(settings))
    elif args.command == "jobs":
        from vedina.jobs.dead_letters import dead_command

        return asyncio.run(dead_command(settings, action=args.action, ids=args.ids, everything=args.everything))
    elif args.command == "demo-data":
        from vedina.demo.loader import load_demo_data

        added = asyncio.run(load_demo_data(settings, generated=args.movies, seed=args.seed))
        print(f"demo data: {added} movie(s) added, media in {settings.media_dir}")
    elif args.command == "set-role":
        from vedina.composition import set_role_by_email
        from vedina.errors import NotFound

        try:
            user = asyncio.run(set_role_by_email(settings, email=args.email, role=args.role))
        except NotFound:
            print(f"vedina: no account with email {args.email}", file=sys.stderr)
            return 1
        print(f"user {user.id} ({user.email}) is now {user.role}")
    return 0


def _migrate(settings, args) -> int:
    from vedina.storage import migrate

    newer = None if args.autogenerate else asyncio.run(migrate.newer_revision(settings))
    if newer:  # a newer release migrated it; expand-only migrations keep this release working (ADR 0015)
        print(f"{settings.storage_profile} database is at {newer}, newer than this release: nothing to do")
        return 0
    if args.check:
        waiting = asyncio.run(migrate.pending(settings))
        differences = [] if waiting else asyncio.run(migrate.drift(settings))  # drift means nothing before them
        for revision in waiting:
            print(f"pending migration: {revision}")
        for difference in differences:
            print(f"schema drift: {difference}")
        if waiting or differences:
            return 1
        print(f"{settings.storage_profile} database is at head and matches the schema")
    elif args.autogenerate:
        print(f"wrote {asyncio.run(migrate.autogenerate(settings, args.autogenerate))}")
    else:
        asyncio.run(migrate.upgrade(settings))
        print(f"migrated {settings.storage_profile} database to head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
