"""The ``otpcore`` command: generate token keys, purge expired state, check a configuration.

Run ``otpcore --help`` (or ``python -m otpcore.cli --help``). Exit codes: 0 success; 1 the
check found problems, or the store failed; 2 a usage error or an ``--app`` that cannot be
loaded or used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

from otpcore.cli.check import DEFAULT_MAX_CONNECTIONS, Finding, check_target
from otpcore.cli.keys import ALGORITHMS, RSA_BITS, generate_key
from otpcore.cli.target import AppTarget, TargetError, open_target
from otpcore.domain.errors import OTPAuthError

__all__ = ["AppTarget", "main"]

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_USAGE: Final = 2

_APP_HELP: Final = """\
module:attr naming the application's otpcore objects. attr may be: an OTPAuth
(cleanup needs one bound to a store); an object whose `auth` attribute is an
OTPAuth, such as an otpcore_fastapi.OTPAuthConfig (its cookie settings are checked
too; cleanup purges through its revocation_source); an otpcore.cli.AppTarget(auth=...,
store=..., open_store=..., engine=..., settings=...); an async context manager yielding
one of these; or a zero-argument function (plain or async) returning any of them. The
current directory is importable.
"""

_EPILOG: Final = """\
exit codes: 0 success; 1 problems found (check) or the store failed (cleanup);
2 usage error, or --app cannot be imported or used.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otpcore",
        description="otpcore administration: token keys, expired-state cleanup, production checks.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = commands.add_parser("keys", help="token signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    generate = key_commands.add_parser(
        "generate",
        help="print a new private key (PEM) and its public JWK with a kid, as JSON",
        description="Generate a signing key. Prints one JSON object: alg, kid, "
        "private_key_pem (unless --private-key-out), public_key_pem and public_jwk. Set the "
        "PEM as OTPAuthConfig.private_key (or SigningKey(key=...)) and kid as key_id.",
    )
    generate.add_argument("--alg", required=True, choices=ALGORITHMS, help="signing algorithm")
    generate.add_argument("--kid", help="key id (default: the RFC 7638 JWK thumbprint)")
    generate.add_argument(
        "--rsa-bits", type=int, default=3072, choices=RSA_BITS, help="RS256 key size"
    )
    generate.add_argument(
        "--private-key-out",
        type=Path,
        metavar="FILE",
        help="write the private PEM to FILE (mode 0600, never overwritten) instead of stdout",
    )

    cleanup = commands.add_parser(
        "cleanup",
        help="purge expired state (for cron)",
        description="Delete expired revocations in one store operation and print how many. "
        "Safe to run at any time and from several hosts.",
        epilog=_EPILOG,
    )
    cleanup.add_argument("--app", required=True, help=_APP_HELP)

    check = commands.add_parser(
        "check",
        help="check a configuration for production",
        description="Check the secret, developer mode, issuer and audience, refresh cookie "
        "flags and the SQLAlchemy pool size. Prints one line per finding as 'LEVEL id: "
        "message'; fails on errors (and on warnings with --strict).",
        epilog=_EPILOG,
    )
    check.add_argument("--app", required=True, help=_APP_HELP)
    check.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "1")),
        help="worker processes across all hosts sharing the database "
        "(default $WEB_CONCURRENCY or 1)",
    )
    check.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="connections the database accepts for the app (default 97: PostgreSQL's "
        "max_connections 100 less 3 reserved)",
    )
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.add_argument("--ignore", action="append", default=[], metavar="ID", help="skip ID")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def _keys_generate(args: argparse.Namespace, out: TextIO) -> int:
    key = generate_key(args.alg, kid=args.kid, rsa_bits=args.rsa_bits)
    target: Path | None = args.private_key_out
    if target is not None:
        try:
            # O_EXCL: never replace an existing key; 0600: only the owner reads a private key.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            print(f"otpcore: cannot write {target}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        with os.fdopen(fd, "w") as file:
            file.write(key.private_pem)
    json.dump(key.as_json(include_private=target is None), out, indent=2)
    out.write("\n")
    return EXIT_OK


async def _cleanup(args: argparse.Namespace, out: TextIO) -> int:
    async with open_target(args.app) as target:
        if target.store is None:
            raise TargetError(
                f"{args.app} gives no store to clean: bind the OTPAuth to a store, set the "
                "config's revocation_source, or give an AppTarget with store= or open_store="
            )
        auth = target.auth.with_store(target.store)
        try:
            purged = await auth.purge_expired()
        except OTPAuthError as exc:
            print(f"otpcore: cleanup failed: {exc}", file=sys.stderr)
            return EXIT_PROBLEMS
    print(f"purged {purged} expired entries", file=out)
    return EXIT_OK


async def _check(args: argparse.Namespace, out: TextIO) -> int:
    if args.workers < 1 or args.max_connections < 1:
        print("otpcore: --workers and --max-connections must be positive", file=sys.stderr)
        return EXIT_USAGE
    async with open_target(args.app) as target:
        findings = check_target(target, workers=args.workers, max_connections=args.max_connections)
    findings = [f for f in findings if f.id not in set(args.ignore)]
    failing = {"error", "warning"} if args.strict else {"error"}
    if args.json:
        json.dump([_as_dict(f) for f in findings], out, indent=2)
        out.write("\n")
    else:
        for finding in findings:
            print(f"{finding.level:<7} {finding.id}: {finding.message}", file=out)
        errors = sum(f.level == "error" for f in findings)
        warnings = sum(f.level == "warning" for f in findings)
        print(f"{errors} error(s), {warnings} warning(s)", file=out)
    return EXIT_PROBLEMS if any(f.level in failing for f in findings) else EXIT_OK


def _as_dict(finding: Finding) -> dict[str, str]:
    return {"level": finding.level, "id": finding.id, "message": finding.message}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``otpcore`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        if args.command == "keys":
            return _keys_generate(args, out)
        if args.command == "cleanup":
            return asyncio.run(_cleanup(args, out))
        return asyncio.run(_check(args, out))
    except TargetError as exc:
        print(f"otpcore: {exc}", file=sys.stderr)
        return EXIT_USAGE
