"""Account commands: ``users add|list|disable|enable|set-password|set-role|set-name`` (issue 7;
display names: issue 18 point 10).

A password is never taken from the command line (it would sit in the shell history and the process
list): it is read without echo from the terminal, asked twice, or from the first line of standard
input with ``--password-stdin`` (or whenever standard input is not a terminal).
Changes are audited under the name ``cli:<operating-system user>``: whoever can run this command
can read the database file anyway.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from monitoring.cli import EXIT_OK, BadInput


def register(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="manage accounts (roles: admin, clinician, viewer)")
    cmds = users.add_subparsers(dest="users_command", metavar="ACTION")
    cmds.required = True

    p = cmds.add_parser("add", help="create an account")
    p.add_argument("username", help="user name (for sign-in through the hospital's identity provider: the e-mail)")
    p.add_argument("--role", required=True, choices=("admin", "clinician", "viewer"))
    p.add_argument(
        "--display-name",
        metavar="TEXT",
        help='how reports and the dashboard name the person, e.g. "Dr A. Mensah, dermatology registrar" (at most 120 characters)',
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    group.add_argument("--oidc", action="store_true", help="no password: signs in only through the identity provider (st.login)")
    p.set_defaults(func=cmd_add)

    p = cmds.add_parser("list", help="list accounts")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser("disable", help="disable an account (accounts are never deleted)")
    p.add_argument("username")
    p.add_argument("--reason")
    p.set_defaults(func=cmd_disable)

    p = cmds.add_parser("enable", help="enable a disabled account")
    p.add_argument("username")
    p.add_argument("--reason")
    p.set_defaults(func=cmd_enable)

    p = cmds.add_parser("set-password", help="set a new password (also lifts the sign-in slow-down)")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_set_password)

    p = cmds.add_parser(
        "demo",
        help="on a database without any account: create the demo accounts with random passwords and print them once",
    )
    p.set_defaults(func=cmd_demo)

    p = cmds.add_parser("set-role", help="change an account's role")
    p.add_argument("username")
    p.add_argument("role", choices=("admin", "clinician", "viewer"))
    p.add_argument("--reason")
    p.set_defaults(func=cmd_set_role)

    p = cmds.add_parser("set-name", help="set an account's display name (blank TEXT clears it: the user name is shown)")
    p.add_argument("username")
    p.add_argument("display_name", metavar="TEXT", help='e.g. "Dr A. Mensah, dermatology registrar" (at most 120 characters)')
    p.add_argument("--reason")
    p.set_defaults(func=cmd_set_name)


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "cli"


def read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise BadInput("password: nothing on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass("New password: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise BadInput("password: the two entries differ")
    return first


def _run(args: argparse.Namespace, change) -> int:
    from monitoring.auth import AccountError
    from monitoring.db import session_scope
    from monitoring.schema import open_database

    engine = open_database(args.db)
    try:
        with session_scope(engine) as session:
            message = change(session)
    except AccountError as exc:
        raise BadInput(f"users {args.users_command}: {exc}") from None
    print(message)
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    from monitoring import auth

    password = None if args.oidc else read_password(args.password_stdin)

    def change(session) -> str:
        user = auth.create_user(
            session, actor=actor(), username=args.username, role=args.role, password=password, display_name=args.display_name
        )
        how = "signs in through the identity provider" if password is None else "signs in with a password"
        named = f", shown as {user.display_name!r}" if user.display_name else ""
        return f"account {user.username} created, role {user.role}{named}, {how}"

    return _run(args, change)


def cmd_set_password(args: argparse.Namespace) -> int:
    from monitoring import auth

    password = read_password(args.password_stdin)
    return _run(args, lambda s: f"password of {auth.set_password(s, actor=actor(), username=args.username, password=password).username} changed")


def cmd_disable(args: argparse.Namespace) -> int:
    from monitoring import auth

    return _run(args, lambda s: f"account {auth.disable_user(s, actor=actor(), username=args.username, reason=args.reason).username} disabled")


def cmd_enable(args: argparse.Namespace) -> int:
    from monitoring import auth

    return _run(args, lambda s: f"account {auth.enable_user(s, actor=actor(), username=args.username, reason=args.reason).username} enabled")


def cmd_set_role(args: argparse.Namespace) -> int:
    from monitoring import auth

    def change(session) -> str:
        user = auth.set_role(session, actor=actor(), username=args.username, role=args.role, reason=args.reason)
        return f"account {user.username} now has role {user.role}"

    return _run(args, change)


def cmd_set_name(args: argparse.Namespace) -> int:
    from monitoring import auth

    def change(session) -> str:
        user = auth.set_display_name(session, actor=actor(), username=args.username, display_name=args.display_name, reason=args.reason)
        if user.display_name is None:
            return f"account {user.username} has no display name: shown as {user.username}"
        return f"account {user.username} shown as {auth.person_label(user.username, user.display_name)!r}"

    return _run(args, change)


def cmd_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from monitoring import auth
    from monitoring.schema import open_database

    engine = open_database(args.db)
    with Session(engine) as session:
        rows = [
            {
                "username": u.username,
                "display_name": u.display_name,
                "role": u.role,
                "disabled": u.disabled,
                "sign_in": "identity provider" if u.password_hash is None else "password",
                "failed_attempts": u.failed_attempts,
                "created_at": u.created_at.isoformat(sep=" ", timespec="seconds"),
            }
            for u in auth.list_users(session)
        ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        for r in rows:
            state = "disabled" if r["disabled"] else "active"
            name = f"  {r['display_name']}" if r["display_name"] else ""
            print(f"{r['username']:<32} {r['role']:<10} {state:<9} {r['sign_in']:<17}{name}".rstrip())
        if not rows:
            print("no accounts: create one with  python -m monitoring users add NAME --role admin")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo set-up of the README (make run): accounts only where there are none, each with a
    random password shown here once; nothing ever has a default password."""
    from monitoring import auth
    from monitoring.db import session_scope
    from monitoring.schema import open_database

    engine = open_database(args.db)
    with session_scope(engine) as session:
        created = auth.ensure_demo_accounts(session)
    if not created:
        print("accounts exist already: no demo account created (python -m monitoring users list)")
        return EXIT_OK
    print("Demo accounts created. Their passwords are shown this once; keep them or set new ones with")
    print("  python -m monitoring users set-password NAME")
    for name, (role, password) in created.items():
        print(f"  user {name:<8} role {role:<10} password {password}")
    return EXIT_OK
