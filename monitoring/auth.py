"""Accounts, passwords, roles and permissions (issue 7; PRODUCT.md §8 Security).

- Passwords are hashed with Argon2id by argon2-cffi (its RFC 9106 default parameters); a hash made
  with older parameters is upgraded at the next successful sign-in.
- Roles: ``viewer`` reads; ``clinician`` reads and writes clinical data; ``admin`` also manages
  accounts and reads the audit trail. Every check goes through ``require``/``authorise_write``.
- Repeated failed sign-ins are slowed down in the database (so it holds across several dashboard
  processes), under four keys (``THROTTLE``): the name at one client address (after
  ``FREE_ATTEMPTS`` failures each further attempt waits ``BASE_DELAY_S × 2^(failures −
  FREE_ATTEMPTS)`` s after the last failure, at most ``MAX_DELAY_S``), the name from any address,
  the address for any name, and the whole server (looser). A name without an account is counted
  exactly like one with an account. Each attempt is counted before its password is checked (an
  atomic compare-and-set), so parallel guesses get no more checks than allowed; an attempt inside a
  window is refused without checking the password. An attacker's guesses slow down the attacker's
  address, not the holder's: the holder at another workstation signs in. The numbers are design
  choices (in the spirit of NIST SP 800-63B §5.2.2, rate limiting), not clinical thresholds.
- At most ``ARGON2_CONCURRENCY`` password hashes are computed at once (64 MiB each), so a burst of
  sign-ins holds memory and CPU bounded.
- Every sign-in, failed or refused sign-in and account change is written to the audit trail. A
  password or its hash never is.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import re
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import case as sa_case
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from monitoring import audit, intake
from monitoring.db import table_of
from monitoring.models import SignInThrottle, User, utcnow

VIEWER = "viewer"
CLINICIAN = "clinician"
ADMIN = "admin"
ROLES: tuple[str, ...] = (ADMIN, CLINICIAN, VIEWER)

READ = "read"
WRITE = "write"
MANAGE_ACCOUNTS = "manage_accounts"
VIEW_AUDIT = "view_audit"
PERMISSIONS: dict[str, frozenset[str]] = {
    VIEWER: frozenset({READ}),
    CLINICIAN: frozenset({READ, WRITE}),
    ADMIN: frozenset({READ, WRITE, MANAGE_ACCOUNTS, VIEW_AUDIT}),
}

# Slowing down repeated failures (design choice, see the module docstring).
FREE_ATTEMPTS = 3
BASE_DELAY_S = 1.0
MAX_DELAY_S = 15 * 60.0

MIN_PASSWORD_LENGTH = 10  # NIST SP 800-63B asks for at least 8; a little more for clinical data
MAX_PASSWORD_LENGTH = 1024  # Argon2 takes any length; refuse absurd input rather than hash megabytes
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")  # e-mail addresses fit (OIDC)

DEMO_ACCOUNTS: tuple[tuple[str, str], ...] = (("demo", CLINICIAN), ("admin", ADMIN))

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this when the account does not exist keeps the answer time the same, so
    the time taken does not tell whether a user name exists. Made on first use: hashing is slow by
    design and importing this module must stay cheap."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """Bad input for an account operation (unknown user, weak password, unknown role...)."""


class PermissionDenied(PermissionError):
    """The signed-in user's role does not allow this."""


class SignInRefused(Exception):
    """Sign-in failed. The message never says whether the user name exists."""

    def __init__(self, message: str, retry_after_s: float = 0.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in: what the dashboard keeps in its session."""

    user_id: int
    username: str
    role: str
    display_name: str | None = None

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())

    @property
    def label(self) -> str:
        """How reports and the dashboard name this person (``person_label``)."""
        return person_label(self.username, self.display_name)


def person_label(username: str, display_name: str | None) -> str:
    """"Dr A. Mensah, dermatology registrar (amensah)" when the account has a display name, else
    the user name: the name a clinician recognises, and the account that signs the audit trail."""
    return f"{display_name} ({username})" if display_name else username


def signed_in_as(user: User) -> SignedIn:
    """What the dashboard keeps in its session for this account, as the database has it now."""
    assert user.id is not None
    return SignedIn(user.id, user.username, user.role, user.display_name)


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str, username: str | None = None) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise AccountError("password must not begin or end with white space")
    if username and password.lower() == username.lower():
        raise AccountError("password must not be the user name")


def generate_password() -> str:
    """A random password for a new account (about 96 bits of entropy)."""
    return secrets.token_urlsafe(12)


# --- roles and permissions -----------------------------------------------------------------


def permissions_of(role: str) -> frozenset[str]:
    return PERMISSIONS.get(role, frozenset())


def _role_of(user: Any) -> str | None:
    if user is None:
        return None
    if isinstance(user, str):
        return user
    if getattr(user, "disabled", False):
        return None
    return getattr(user, "role", None)


def has(role_or_permission: str, user: Any) -> bool:
    """Whether ``user`` (a User, a SignedIn, or a role name) has that permission, or every
    permission of that role."""
    role = _role_of(user)
    if role is None:
        return False
    granted = permissions_of(role)
    if role_or_permission in PERMISSIONS:
        return PERMISSIONS[role_or_permission] <= granted
    return role_or_permission in granted


def require(role_or_permission: str, user: Any) -> None:
    """Raise PermissionDenied unless ``user`` has ``role_or_permission``."""
    if not has(role_or_permission, user):
        who = getattr(user, "username", None) or "anonymous"
        raise PermissionDenied(f"{who} may not do this (needs {role_or_permission})")


def get_user(session: Session, username: str) -> User | None:
    return session.execute(select(User).where(col(User.username) == username)).scalar_one_or_none()


def authorise_write(
    session: Session,
    *,
    username: str,
    action: str,
    entity: str,
    patient_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> User:
    """The account behind a write service call, if it may write clinical data.

    Otherwise the refusal is audited in a transaction of its own (it must outlive the caller's
    rollback) and PermissionDenied is raised. Call it before the service writes anything.
    """
    user = get_user(session, username)
    if user is not None and has(WRITE, user):
        return user
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    reason = "unknown account" if user is None else ("account disabled" if user.disabled else f"role {user.role} is read-only")
    audit.record_separately(
        engine,
        username=username,
        action=audit.WRITE_REFUSED,
        entity=entity,
        patient_id=patient_id,
        after={"attempted": action, **(detail or {})},
        reason=reason,
    )
    raise PermissionDenied(f"{username} may not change clinical data ({reason})")


# --- sign-in throttling -----------------------------------------------------------------------


@dataclass(frozen=True)
class ThrottlePolicy:
    """After ``free`` failures counted under one key, each further attempt under it must wait
    ``base_delay_s × 2^(failures − free)`` seconds after the last failure, at most ``max_delay_s``;
    failures older than ``forget_after_s`` are forgotten. Design choices of this product (NIST SP
    800-63B §5.2.2, rate limiting), not clinical numbers."""

    free: int
    base_delay_s: float
    max_delay_s: float
    forget_after_s: float

    def delay_s(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(failures - self.free, 40))


# The keys an attempt is counted under, most specific first. The name-and-source pair carries the
# steep delay: an attacker's guesses slow down the attacker's own address, never the account's
# holder at the ward's workstation. The name alone (any address), the address alone (any name) and
# the whole server have looser limits against guessing from many addresses or for many names.
THROTTLE: dict[str, ThrottlePolicy] = {
    "pair": ThrottlePolicy(free=FREE_ATTEMPTS, base_delay_s=BASE_DELAY_S, max_delay_s=MAX_DELAY_S, forget_after_s=24 * 3600.0),
    "account": ThrottlePolicy(free=20, base_delay_s=1.0, max_delay_s=60.0, forget_after_s=3600.0),
    "source": ThrottlePolicy(free=30, base_delay_s=1.0, max_delay_s=MAX_DELAY_S, forget_after_s=3600.0),
    "global": ThrottlePolicy(free=300, base_delay_s=0.5, max_delay_s=30.0, forget_after_s=600.0),
}
MAX_KEY_PART = 96  # a name longer than an account name can be is cut (it is counted all the same)

# Argon2id hashes with 64 MiB of memory each (RFC 9106 defaults of argon2-cffi): at most this many
# at once, so a burst of sign-ins (unknown names included) holds CPU and memory bounded.
ARGON2_CONCURRENCY = 2
ARGON2_WAIT_S = 10.0
_argon2_slots = threading.BoundedSemaphore(ARGON2_CONCURRENCY)


def throttle_delay_s(failed_attempts: int) -> float:
    """Seconds to wait after the last failure of a name at one address."""
    return THROTTLE["pair"].delay_s(failed_attempts)


def retry_after_s(user: User, now: dt.datetime | None = None) -> float:
    """The wait the older per-account counter of ``app_user`` would impose (kept for the admin's
    view of an account; sign-in itself uses ``sign_in_throttle``)."""
    if user.last_failed_at is None:
        return 0.0
    wait = throttle_delay_s(user.failed_attempts)
    elapsed = ((now or utcnow()) - user.last_failed_at).total_seconds()
    return max(0.0, wait - elapsed)


GENERIC_FAILURE = "user name or password not recognised, or the account is disabled"
BUSY_FAILURE = "sign-in is busy: try again in a few seconds"


TRUSTED_PROXY_ENV = "DRESS_TRUSTED_PROXY"
LOOPBACK = "127.0.0.1"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies(raw: str | None = None) -> tuple[Network, ...]:
    """The reverse proxies trusted to say who their client is: ``DRESS_TRUSTED_PROXY``, a
    comma-separated list of addresses (or networks such as 10.0.0.0/24); none when unset. A value
    that is not an address is refused, naming it."""
    text = os.environ.get(TRUSTED_PROXY_ENV, "") if raw is None else raw
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{TRUSTED_PROXY_ENV}: value {part!r}: not an IP address or network") from None
    return tuple(out)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def is_trusted_proxy(peer: str | None, trusted: Sequence[Network]) -> bool:
    """Whether the direct peer ``peer`` is one of the ``trusted`` proxies (``trusted_proxies``):
    the one rule for believing a proxy's X-Forwarded-* headers. Not an address: no."""
    here = _address(peer) if peer else None
    return here is not None and any(here in net for net in trusted)


def forwarded_https(peer: str | None, forwarded_proto: Sequence[str], trusted: Sequence[Network]) -> bool:
    """Whether a plain-HTTP request from ``peer`` came to a trusted proxy over HTTPS: the peer is
    trusted (``is_trusted_proxy``) and the right-most ``X-Forwarded-Proto`` entry (the one the
    nearest proxy wrote; ``forwarded_proto``: every header value, in order) is ``https``. From an
    untrusted peer the header is whatever the client chose and is never believed."""
    if not is_trusted_proxy(peer, trusted):
        return False
    entries = [e.strip().lower() for value in forwarded_proto for e in value.split(",") if e.strip()]
    return bool(entries) and entries[-1] == "https"


def source_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The client's address for the per-source sign-in throttle.

    ``peer``: the address of the direct peer (None: this machine, as Streamlit reports it);
    ``forwarded_for``: every X-Forwarded-For header value, in order. Only when the peer is a
    trusted proxy is X-Forwarded-For read, from the right (each proxy appends the address it
    received from): the right-most address that is not itself a trusted proxy is the client. The
    left part is whatever the client chose to send and is never believed. An entry that is not an
    address, or a list of trusted proxies only, gives the last trusted proxy: one source for all
    behind it, stricter, never a way around the throttle."""
    hop = LOOPBACK if peer is None else peer
    if not is_trusted_proxy(hop, trusted):
        return peer
    entries = [e.strip() for value in forwarded_for for e in value.split(",") if e.strip()]
    for entry in reversed(entries):
        found = _address(entry)
        if found is None:
            return hop
        if not any(found in net for net in trusted):
            return str(found)
        hop = str(found)
    return hop


def throttle_keys(username: str, source: str | None) -> list[tuple[str, ThrottlePolicy]]:
    name = (username or "").strip()[:MAX_KEY_PART]
    address = (source or "unknown")[:MAX_KEY_PART]
    return [
        (f"pair:{name}|{address}", THROTTLE["pair"]),
        (f"account:{name}", THROTTLE["account"]),
        (f"source:{address}", THROTTLE["source"]),
        ("global", THROTTLE["global"]),
    ]


def _wait_s(policy: ThrottlePolicy, failures: int, last: dt.datetime | None, now: dt.datetime) -> tuple[int, float]:
    """(failures still counted, seconds still to wait)."""
    if last is None:
        return failures, 0.0
    elapsed = (now - last).total_seconds()
    if elapsed >= policy.forget_after_s:
        return 0, 0.0
    return failures, max(0.0, policy.delay_s(failures) - elapsed)


def _insert_ignore(session: Session, key: str) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    table = table_of(SignInThrottle)
    if dialect == "postgresql":
        session.execute(postgresql.insert(table).values(key=key, failures=0).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(table).values(key=key, failures=0).on_conflict_do_nothing())
    else:  # pragma: no cover - SQLite and PostgreSQL are the supported databases
        if session.get(SignInThrottle, key) is None:
            session.add(SignInThrottle(key=key, failures=0))
            session.flush()


def _claim(engine: Engine, key: str, policy: ThrottlePolicy, now: dt.datetime) -> float:
    """Count one attempt under ``key`` before its password is checked; 0 when it may go ahead,
    else the seconds to wait (and nothing is counted).

    A compare-and-set on the counter (UPDATE ... WHERE failures = the value read): of any number
    of attempts at the same moment, in any number of processes, only as many go ahead as the
    policy allows; the others read the new count and wait."""
    table = table_of(SignInThrottle)
    for _ in range(200):
        with Session(engine) as session:
            row = session.execute(select(table.c.failures, table.c.last_failed_at).where(table.c.key == key)).first()
            if row is None:
                _insert_ignore(session, key)
                session.commit()
                continue
            counted, wait = _wait_s(policy, row.failures, row.last_failed_at, now)
            if wait > 0:
                return wait
            done = session.execute(
                update(table)
                .where(table.c.key == key, table.c.failures == row.failures)
                .values(failures=counted + 1, last_failed_at=now)
            )
            session.commit()
            if done.rowcount == 1:  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult, typed as Result
                return 0.0
    return ARGON2_WAIT_S  # unreachable in practice: that many writers on one key at once


def _release(engine: Engine, key: str, *, reset: bool) -> None:
    """Take back the attempt counted under ``key``: all of it after a successful sign-in of that
    name at that address (``reset``), one count otherwise."""
    table = table_of(SignInThrottle)
    with Session(engine) as session:
        values = {"failures": 0, "last_failed_at": None} if reset else {"failures": sa_case((table.c.failures > 0, table.c.failures - 1), else_=0)}
        session.execute(update(table).where(table.c.key == key).values(**values))
        session.commit()


THROTTLE_KINDS = {
    "pair": "name at one address",
    "account": "name, any address",
    "source": "address, any name",
    "global": "whole server",
}
"""What each throttle key counts, as the administrators' view names it."""


def _key_parts(key: str) -> tuple[str, str | None, str | None]:
    """(kind, user name, address) of a throttle key (``throttle_keys``' format)."""
    kind, _, rest = key.partition(":")
    if kind == "pair":
        name, _, address = rest.rpartition("|")  # an address has no '|'; a typed name may
        return kind, name, address
    if kind == "account":
        return kind, rest, None
    if kind == "source":
        return kind, None, rest
    return kind, None, None


def throttle_status(session: Session, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every key with failures still counted, newest failure first, for the administrators' view
    (audit page): the key; its ``kind`` (``THROTTLE_KINDS``), ``username`` and ``source`` (None
    where the key does not count by it); ``failures`` still counted and ``free`` (the failures
    allowed before a wait); ``last_failed_at``; ``retry_after_s`` and ``locked_until`` (None when
    the next attempt is allowed now; UTC like every stored time)."""
    moment = now or utcnow()
    out = []
    for row in session.execute(select(SignInThrottle).where(col(SignInThrottle.failures) > 0).order_by(col(SignInThrottle.last_failed_at).desc())).scalars():
        kind, username, source = _key_parts(row.key)
        policy = THROTTLE.get(kind, THROTTLE["global"])
        counted, wait = _wait_s(policy, row.failures, row.last_failed_at, moment)
        if counted:
            out.append({
                "key": row.key, "kind": kind, "username": username, "source": source, "failures": counted, "free": policy.free,
                "last_failed_at": row.last_failed_at, "retry_after_s": round(wait, 1),
                "locked_until": moment + dt.timedelta(seconds=wait) if wait > 0 else None,
            })
    return out


def sign_in(
    engine: Engine, username: str, password: str, *, source: str | None = None, now: dt.datetime | None = None
) -> SignedIn:
    """Check a user name and password; audit the outcome. Raises SignInRefused.

    The attempt is counted (``_claim``) under every throttle key before the password is looked
    at, the same way whether or not the name has an account; a throttled attempt is refused
    without hashing, an allowed one is verified (against a dummy hash for an unknown name), so
    neither the answer nor its time tells whether the name exists. ``source``: the client's
    address. Its own transactions: a failed attempt stays counted and audited.
    """
    name = (username or "").strip()
    moment = now or utcnow()
    claimed: list[str] = []
    for key, policy in throttle_keys(name, source):
        wait = _claim(engine, key, policy, moment)
        if wait > 0:
            for done in claimed:
                _release(engine, done, reset=False)
            audit.record_separately(
                engine,
                username=name[:64] or None,
                action=audit.SIGN_IN_THROTTLED,
                entity="app_user",
                after={"throttled_by": key.split(":", 1)[0], "source": source, "retry_after_s": round(wait, 1)},
            )
            raise SignInRefused(f"too many failed attempts: try again in {max(1, round(wait))} s", wait)
        claimed.append(key)
    with Session(engine, expire_on_commit=False) as session:
        user = get_user(session, name) if name else None
        if not _argon2_slots.acquire(timeout=ARGON2_WAIT_S):
            for done in claimed:
                _release(engine, done, reset=False)
            raise SignInRefused(BUSY_FAILURE, 1.0)
        try:
            ok = verify_password(user.password_hash if user and user.password_hash else _dummy_hash(), password or "")
        finally:
            _argon2_slots.release()
        ok = ok and user is not None and user.password_hash is not None
        if user is None or not ok or user.disabled:
            if user is not None:
                # The account's own tally, for the administrators' list (users list); counted in SQL
                # so that two processes failing at once both count.
                session.execute(
                    update(User)
                    .where(col(User.id) == user.id)
                    .values(failed_attempts=User.failed_attempts + 1, last_failed_at=moment)
                )
            audit.record(
                session,
                username=name[:64] or None,
                action=audit.SIGN_IN_FAILED,
                entity="app_user",
                entity_id=user.id if user else None,
                after={"source": source},
                reason="unknown account" if user is None else ("account disabled" if user.disabled else "wrong password"),
            )
            session.commit()
            raise SignInRefused(GENERIC_FAILURE)
        assert user.id is not None and user.password_hash is not None
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.failed_attempts = 0
        user.last_failed_at = None
        session.add(user)
        audit.record(session, username=name, action=audit.SIGN_IN, entity="app_user", entity_id=user.id, after={"source": source})
        session.commit()
    # Right name, right password: this name at this address starts afresh; the looser counters
    # take back this attempt only.
    for key in claimed:
        _release(engine, key, reset=key.startswith(("pair:", "account:")))
    return signed_in_as(user)


def sign_in_external(engine: Engine, identity: str) -> SignedIn:
    """A user already authenticated by the hospital's identity provider (OIDC): map the identity
    (e-mail) to an account and its role. Unknown or disabled identities are refused and audited."""
    name = (identity or "").strip()
    with Session(engine, expire_on_commit=False) as session:
        user = get_user(session, name) if name else None
        if user is None or user.disabled:
            audit.record(
                session,
                username=name[:64] or None,
                action=audit.SIGN_IN_FAILED,
                entity="app_user",
                entity_id=user.id if user else None,
                reason="identity provider account has no account here" if user is None else "account disabled",
            )
            session.commit()
            raise SignInRefused("your sign-in worked, but this account has no access to DRESS monitor: ask an administrator")
        assert user.id is not None
        audit.record(session, username=name, action=audit.SIGN_IN, entity="app_user", entity_id=user.id, reason="OIDC")
        session.commit()
        return signed_in_as(user)


def current(engine: Engine, signed_in: SignedIn) -> SignedIn | None:
    """The session's user as the database has it now (role changes and disabling take effect at
    once), or None when the account was disabled or removed."""
    with Session(engine) as session:
        user = session.get(User, signed_in.user_id)
        if user is None or user.disabled or user.username != signed_in.username:
            return None
        return signed_in_as(user)


def record_sign_out(engine: Engine, signed_in: SignedIn) -> None:
    audit.record_separately(engine, username=signed_in.username, action=audit.SIGN_OUT, entity="app_user", entity_id=signed_in.user_id)


# --- account management (admins, and the command line) -------------------------------------


def _check_username(username: str) -> str:
    name = (username or "").strip()
    if not USERNAME_PATTERN.fullmatch(name):
        raise AccountError(
            f"user name {username!r} not allowed: 1-64 characters, letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r} unknown: one of {', '.join(ROLES)}")
    return role


def _existing(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise AccountError(f"no account named {username!r}")
    return user


def _check_display_name(value: str | None) -> str | None:
    try:
        return intake.display_name(value)
    except intake.FieldError as exc:
        raise AccountError(exc.message) from None


def _public(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "disabled": user.disabled,
        "oidc_only": user.password_hash is None,
    }


def create_user(
    session: Session, *, actor: str, username: str, role: str, password: str | None, display_name: str | None = None
) -> User:
    """A new account. ``password`` None makes an account that signs in only through the
    hospital's identity provider (OIDC); ``display_name`` is how reports name the person
    (``person_label``), checked by ``monitoring.intake.display_name``."""
    name = _check_username(username)
    _check_role(role)
    shown = _check_display_name(display_name)
    if password is not None:
        check_password_policy(password, name)
    if get_user(session, name) is not None:
        raise AccountError(f"an account named {name!r} exists already")
    user = User(
        username=name, role=role, display_name=shown, password_hash=hash_password(password) if password is not None else None
    )
    session.add(user)
    session.flush()
    audit.record(session, username=actor, action=audit.ACCOUNT_CREATE, entity="app_user", entity_id=user.id, after=_public(user))
    return user


def set_password(session: Session, *, actor: str, username: str, password: str) -> User:
    user = _existing(session, username)
    check_password_policy(password, user.username)
    user.password_hash = hash_password(password)
    # A new password lifts the slow-down: an admin reset is how a locked-out user gets back in.
    user.failed_attempts = 0
    user.last_failed_at = None
    table = table_of(SignInThrottle)
    session.execute(
        update(table)
        .where((table.c.key == f"account:{user.username}") | table.c.key.startswith(f"pair:{user.username}|", autoescape=True))
        .values(failures=0, last_failed_at=None)
    )
    session.add(user)
    audit.record(
        session, username=actor, action=audit.ACCOUNT_CHANGE, entity="app_user", entity_id=user.id, after={"password": "changed"}
    )
    return user


def _change(session: Session, *, actor: str, username: str, reason: str | None = None, **values: Any) -> User:
    user = _existing(session, username)
    before = {k: getattr(user, k) for k in values}
    if before == values:
        return user
    for k, v in values.items():
        setattr(user, k, v)
    session.add(user)
    audit.record(
        session,
        username=actor,
        action=audit.ACCOUNT_CHANGE,
        entity="app_user",
        entity_id=user.id,
        before=before,
        after=values,
        reason=reason,
    )
    return user


def disable_user(session: Session, *, actor: str, username: str, reason: str | None = None) -> User:
    """Accounts are disabled, never deleted: the audit trail keeps naming them."""
    return _change(session, actor=actor, username=username, reason=reason, disabled=True)


def enable_user(session: Session, *, actor: str, username: str, reason: str | None = None) -> User:
    return _change(session, actor=actor, username=username, reason=reason, disabled=False)


def set_role(session: Session, *, actor: str, username: str, role: str, reason: str | None = None) -> User:
    return _change(session, actor=actor, username=username, reason=reason, role=_check_role(role))


def set_display_name(session: Session, *, actor: str, username: str, display_name: str | None, reason: str | None = None) -> User:
    """Set (or, blank, clear) how reports and the dashboard name the account's person; audited
    with the name before and after."""
    return _change(session, actor=actor, username=username, reason=reason, display_name=_check_display_name(display_name))


def list_users(session: Session) -> list[User]:
    return list(session.execute(select(User).order_by(User.username)).scalars())


def ensure_demo_accounts(session: Session, accounts: Iterable[tuple[str, str]] = DEMO_ACCOUNTS) -> dict[str, tuple[str, str]]:
    """On a database without any account, create the demo accounts with random passwords.

    Returns {username: (role, password)} for the caller to show once; empty when accounts exist
    (nothing else ever has a default password).
    """
    if session.execute(select(col(User.id)).limit(1)).first() is not None:
        return {}
    created: dict[str, tuple[str, str]] = {}
    for name, role in accounts:
        password = generate_password()
        create_user(session, actor="setup", username=name, role=role, password=password)
        created[name] = (role, password)
    return created
