"""``artextract users add|list|remove|token``: the reviewers who may sign in to the explorer, kept in
the review database (:class:`artextract.web.db.ReviewStore`)."""
from __future__ import annotations

import getpass
import json
import sys

from ..base import UserError, add_command
from ..options import review_store


def _cmd_users_add(args) -> int:
    from ...extras import require

    require("web", "fastapi", "argon2", feature="artextract users add")  # the password hash (web.auth)
    store = review_store(args, create=True)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise UserError("no terminal to ask for the password: pass it on stdin with --password-stdin")
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ")
    store.add_user(args.name, password)
    print(f"added {args.name} to {store.path}; the explorer now asks everyone to sign in", file=sys.stderr)
    return 0


def _cmd_users_list(args) -> int:
    store = review_store(args, create=True)
    users = store.users()
    if args.json:
        print(json.dumps(users))
        return 0
    if not users:
        print(f"no users in {store.path} (sign-in is off)", file=sys.stderr)
        return 0
    print(f"{'name':<24} {'created (UTC)':<20} {'tokens':>6} {'decisions':>9}")
    for u in users:
        print(f"{u['name']:<24} {u['created_at'][:19].replace('T', ' '):<20} {u['tokens']:>6} {u['decisions']:>9}")
    return 0


def _cmd_users_remove(args) -> int:
    store = review_store(args)
    if not store.remove_user(args.name):
        raise UserError(f"no user {args.name!r} in {store.path}")
    print(f"removed {args.name} (their tokens and sessions; their decisions stay)", file=sys.stderr)
    return 0


def _cmd_users_token(args) -> int:
    store = review_store(args)
    token = store.new_token(args.name)
    print(token)
    print("keep it secret: it is shown once (only its hash is stored); send it as "
          "`Authorization: Bearer TOKEN`", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add ``users`` and its actions to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "users", "the reviewers who may sign in to the explorer",
                    "artextract users add alice --catalog demo/catalog.parquet",
                    description="Reviewer accounts, stored in the review database (argon2 password hashes). "
                    "Once one exists, `artextract serve` asks everyone to sign in, and every decision records "
                    "its reviewer.")
    usub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def user_cmd(name, help, example, func, with_name=True):
        c = add_command(usub, name, help, example)
        if with_name:
            c.add_argument("name", metavar="NAME", help="the reviewer's name (letters, digits, _.@-)")
        c.add_argument("--catalog", required=True, help="the catalogue the explorer serves")
        c.add_argument("--db", default=None, help="review database (default: as `artextract serve`)")
        c.set_defaults(func=func)
        return c

    c = user_cmd("add", "add a reviewer (asks for the password twice)",
                 "echo 's3cret-pass' | artextract users add alice --catalog demo/catalog.parquet --password-stdin",
                 _cmd_users_add)
    c.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    c = user_cmd("list", "list the reviewers", "artextract users list --catalog demo/catalog.parquet",
                 _cmd_users_list, with_name=False)
    c.add_argument("--json", action="store_true", help="print one JSON document")
    user_cmd("remove", "remove a reviewer with their tokens and sessions (their decisions stay)",
             "artextract users remove alice --catalog demo/catalog.parquet", _cmd_users_remove)
    user_cmd("token", "print a new API token for a reviewer (for Authorization: Bearer TOKEN)",
             "artextract users token alice --catalog demo/catalog.parquet", _cmd_users_token)
