"""``cloud-collector token create|list|revoke``: the API's bearer tokens, in the store
the config names. A new token is printed once, alone on the last line; the store keeps
only its hash."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

from cloud_collector.config import CollectorConfig, load_config
from cloud_collector.errors import CollectorError
from cloud_collector.geojson import iso_ms
from cloud_collector.roles import Role, hash_token, mint_token, parse_role
from cloud_collector.store import open_store
from cloud_collector.store.access import Access, TokenRecord

T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FLEET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhdw])$")
_UNIT_MS: Final = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


class TokenCliError(CollectorError):
    """A bad argument of a token command."""


def parse_expires(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``2w`` in ms."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise TokenCliError(f"--expires: {text!r} is not a duration like 90d, 12h, 30m or 2w")
    return int(match[1]) * _UNIT_MS[match[2]]


def new_record(
    name: str, role_text: str, fleets: list[str], expires: str | None, now_ms: int
) -> TokenRecord:
    """The record of a token to create (checked as the command line gives it)."""
    if not _NAME.match(name):
        raise TokenCliError(f"--name: {name!r} is not 1-64 characters of A-Z a-z 0-9 _ . -")
    try:
        role = parse_role(role_text)
    except ValueError as exc:
        raise TokenCliError(f"--role: {exc}") from None
    if role is Role.OPERATOR and not fleets:
        raise TokenCliError("--fleet: an operator token needs at least one --fleet")
    if role is not Role.OPERATOR and fleets:
        raise TokenCliError(f"--fleet: only operator tokens are scoped to fleets, not {role}")
    for fleet in fleets:
        if not _FLEET.match(fleet):
            raise TokenCliError(f"--fleet: {fleet!r} is not a fleet id (A-Z a-z 0-9 _ -)")
    return TokenRecord(
        name=name, token_hash="", role=role, fleets=tuple(dict.fromkeys(fleets)),
        created_ms=now_ms, expires_ms=None if expires is None else now_ms + parse_expires(expires),
        revoked_ms=None,
    )  # fmt: skip


async def create_token(access: Access, record: TokenRecord) -> str:
    """Store ``record`` under a new token's hash; the token."""
    token = mint_token()
    await access.add_token(
        TokenRecord(
            name=record.name, token_hash=hash_token(token), role=record.role,
            fleets=record.fleets, created_ms=record.created_ms, expires_ms=record.expires_ms,
            revoked_ms=None,
        )
    )  # fmt: skip
    return token


def _with_access(config: Path | None, work: Callable[[Access], Awaitable[T]]) -> T:
    cfg = load_config(config) if config is not None else CollectorConfig()

    async def run() -> T:
        store = await open_store(cfg.store.resolved_url(Path.cwd()))
        try:
            return await work(store.access)
        finally:
            await store.close()

    return asyncio.run(run())


def _describe(t: TokenRecord, now_ms: int) -> str:
    state = "revoked" if t.revoked_ms is not None else ("active" if t.usable(now_ms) else "expired")
    expires = "never" if t.expires_ms is None else iso_ms(t.expires_ms)
    fleets = ",".join(t.fleets) or "-"
    return f"{t.name}\t{t.role.value}\t{fleets}\t{iso_ms(t.created_ms)}\t{expires}\t{state}"


def _create(args: argparse.Namespace) -> int:
    now_ms = int(time.time() * 1000)
    record = new_record(args.name, args.role, args.fleet or [], args.expires, now_ms)
    token = _with_access(args.config, lambda access: create_token(access, record))
    out = sys.stdout
    expires = "never" if record.expires_ms is None else iso_ms(record.expires_ms)
    fleets = ",".join(record.fleets) or "-"
    out.write(f"created token {record.name}: role {record.role}, fleets {fleets},")
    out.write(f" expires {expires}; it is shown only now:\n")
    out.write(token + "\n")
    return 0


def _list(args: argparse.Namespace) -> int:
    records = _with_access(args.config, lambda access: access.tokens())
    now_ms = int(time.time() * 1000)
    sys.stdout.write("name\trole\tfleets\tcreated\texpires\tstate\n")
    for t in records:
        sys.stdout.write(_describe(t, now_ms) + "\n")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    now_ms = int(time.time() * 1000)
    done = _with_access(args.config, lambda access: access.revoke_token(args.name, now_ms))
    if not done:
        raise TokenCliError(f"NAME: no unrevoked token named {args.name!r}")
    sys.stdout.write(f"revoked token {args.name}\n")
    return 0


def add_token_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="create, list or revoke HTTP API tokens")
    actions = token.add_subparsers(dest="token_command", required=True)
    config_help = "TOML file naming the store; omitted keys take the embedded defaults"
    create = actions.add_parser("create", help="mint a token; printed once, on the last line")
    create.add_argument("--config", type=Path, help=config_help)
    create.add_argument("--role", required=True, help="operator, city or admin")
    create.add_argument("--name", required=True, help="unique name (shown in the audit log)")
    create.add_argument("--fleet", action="append", help="an operator's fleet (repeatable)")
    create.add_argument("--expires", help="lifetime, e.g. 90d, 12h, 30m, 2w (default: never)")
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", help="every token's name, role, fleets and state")
    listing.add_argument("--config", type=Path, help=config_help)
    listing.set_defaults(func=_list)
    revoke = actions.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name", metavar="NAME")
    revoke.add_argument("--config", type=Path, help=config_help)
    revoke.set_defaults(func=_revoke)
