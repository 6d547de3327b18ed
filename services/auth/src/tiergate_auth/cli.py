"""`tiergate keys create|list|revoke`: agents' API keys, through the auth admin API;
`tiergate db upgrade|downgrade|current`: the records schema, on the database itself.

`db` reads the auth service's own settings (`TIERGATE_AUTH_CONFIG`, `TIERGATE_AUTH_*`
environment, secret files), so it migrates exactly the database the service will use.

The admin API's URL and token come from `--url`/`--admin-token` or the environment
(`TIERGATE_AUTH_URL`, `TIERGATE_ADMIN_TOKEN`). Exit status: 0 done, 1 refused or failed, 2 bad
usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from tiergate_auth.records.cli import run_db
from tiergate_proto.identity import ApiKeyCreate, ApiKeyCreated, ApiKeyList, KeyLimits, Window

__all__ = ["main"]


def _window(text: str) -> Window:
    """`100/60` → 100 per 60 s; also `100/1m`, `20/15m`, `1000/1h`, `5000/1d`."""
    try:
        count, _, span = text.partition("/")
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        seconds = int(span[:-1]) * units[span[-1]] if span[-1:] in units else int(span)
        return Window(limit=int(count), window_s=seconds)
    except (ValueError, KeyError, IndexError, msgspec.ValidationError):
        raise argparse.ArgumentTypeError(
            f"expected COUNT/SECONDS or COUNT/<n>[smhd], got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiergate", description="tiergate administration")
    parser.add_argument(
        "--url", default=os.environ.get("TIERGATE_AUTH_URL", "http://127.0.0.1:8081")
    )
    parser.add_argument("--admin-token", default=os.environ.get("TIERGATE_ADMIN_TOKEN"))
    parser.add_argument("--json", action="store_true", help="print JSON")
    groups = parser.add_subparsers(dest="group", required=True)
    keys = groups.add_parser("keys", help="API keys for agents").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key (shown once)")
    create.add_argument("--owner", required=True)
    create.add_argument("--tier", default="agent")
    create.add_argument("--description", default="")
    create.add_argument("--requests", type=_window, help="e.g. 600/1m")
    create.add_argument("--tokens", type=_window, help="e.g. 200000/1h")
    create.add_argument("--max-concurrent", type=int)
    create.add_argument("--max-tokens", type=int)
    create.add_argument("--models", help="comma-separated model ids, or *")
    keys.add_parser("list", help="list keys")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    db = groups.add_parser("db", help="the records database schema").add_subparsers(
        dest="action", required=True
    )
    up = db.add_parser("upgrade", help="migrate to REV (default: head, this code's schema)")
    up.add_argument("revision", nargs="?", default="head")
    down = db.add_parser("downgrade", help="migrate down to REV (base: drop every table)")
    down.add_argument("revision")
    db.add_parser("current", help="print the database's revision and the code's head")
    return parser


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _fail(response: httpx.Response) -> int:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    print(f"tiergate: {response.status_code}: {message}", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace, client: httpx.Client) -> int:
    action = {"create": _create, "list": _list, "revoke": _revoke}[args.action]
    return action(args, client)


def _create(args: argparse.Namespace, client: httpx.Client) -> int:
    limits = KeyLimits(
        requests=args.requests,
        tokens=args.tokens,
        max_concurrent=args.max_concurrent,
        max_tokens=args.max_tokens,
        models=[m.strip() for m in args.models.split(",")] if args.models else None,
    )
    body = ApiKeyCreate(
        owner=args.owner, tier=args.tier, limits=limits, description=args.description
    )
    response = client.post("/v1/admin/keys", content=msgspec.json.encode(body))
    if response.status_code != 201:
        return _fail(response)
    created = msgspec.json.decode(response.content, type=ApiKeyCreated)
    if args.json:
        print(response.text)
    else:
        print(f"{created.key}\n")
        print(f"id {created.info.id}, owner {created.info.owner}, tier {created.info.tier}")
        print("The key is shown only now: store it in your agent's secret store.")
    return 0


def _list(args: argparse.Namespace, client: httpx.Client) -> int:
    response = client.get("/v1/admin/keys")
    if response.status_code != 200:
        return _fail(response)
    if args.json:
        print(response.text)
        return 0
    listing = msgspec.json.decode(response.content, type=ApiKeyList)
    print(f"{'ID':<22} {'OWNER':<24} {'TIER':<10} {'CREATED':<21} LAST USED")
    for info in listing.data:
        print(
            f"{info.id:<22} {info.owner[:24]:<24} {info.tier:<10} "
            f"{_when(info.created_at):<21} {_when(info.last_used_at)}"
        )
    return 0


def _revoke(args: argparse.Namespace, client: httpx.Client) -> int:
    response = client.delete(f"/v1/admin/keys/{args.key_id}")
    if response.status_code != 200:
        return _fail(response)
    print(response.text if args.json else f"revoked {args.key_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `tiergate` command."""
    args = _parser().parse_args(argv)
    if args.group == "db":
        return run_db(args.action, getattr(args, "revision", None))
    if not args.admin_token:
        print("tiergate: set --admin-token or TIERGATE_ADMIN_TOKEN", file=sys.stderr)
        return 2
    headers: dict[str, Any] = {
        "authorization": f"Bearer {args.admin_token}",
        "content-type": "application/json",
    }
    try:
        with httpx.Client(base_url=args.url, headers=headers, timeout=10.0) as client:
            return _run(args, client)
    except httpx.HTTPError as exc:
        print(f"tiergate: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
