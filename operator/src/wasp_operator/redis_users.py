"""Each tenant's two Redis identities: the ACL users, their passwords and their Secrets.

Owns, from the admin credential (the Redis Secret the operator reads), the
tenant's session user (``contract.session_redis_user``) and API user
(``contract.api_redis_user``) with the rules of ``wasp.redis_acl``; their
passwords, generated here and kept in two Secrets owned by the resource
(``contract.session_redis_secret_name``, ``contract.api_redis_secret_name``);
and the URL in each Secret: the admin URL's scheme, host, port, database and
options, with that user's name and password instead of the admin's.

Level-based: ``RedisUsers.ensure`` is called every cycle and makes a user
again whenever it is missing (a restarted Redis has no runtime users), its
password is not its Secret's, or this operator has not made it since it
started (so a change of the rules applies after an upgrade). What a cycle
asks Redis is kept small, since it runs for every tenant every resync: a
user this operator made or checked with the Secret's password is looked for
in one ``ACL USERS`` list per Redis, shared by every tenant's cycle within
``USER_LIST_MAX_AGE_SECONDS``; it is read in full (``ACL GETUSER``: enabled,
that password) only every ``FULL_CHECK_SECONDS``, or when the password
differs from the one it last made or checked.

Never logs or raises a password, or a URL with its userinfo (``redacted``).
It decides nothing about ownership: callers make users for owners only.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.connection import parse_url as redis_parse_url
from redis.exceptions import RedisError

from wasp import contract, redis_acl
from wasp_operator.config import OperatorConfig
from wasp_operator.errors import OperatorError, RedisURLInvalidError, redis_failure
from wasp_operator.pods import labels_of, owner_reference
from wasp_operator.sessions import SecretRef, Session

PASSWORD_BYTES = 32
USER_LIST_MAX_AGE_SECONDS = 1.0  # one ACL USERS per Redis serves the cycles of this long
FULL_CHECK_SECONDS = 600.0  # a user is read in full (ACL GETUSER) at least this often
# Query options of a Redis URL that redis-py reads as credentials: an admin
# URL's must never reach a tenant's URL.
CREDENTIAL_OPTIONS = frozenset({"username", "password"})
DATABASE_SCHEMES = frozenset({"redis", "rediss"})  # the path is "/<db>"; unix:// has a socket


# -- the admin credential ---------------------------------------------------------------
def admin_secret_of(session: Session, config: OperatorConfig) -> tuple[str, SecretRef]:
    """Where the session's admin Redis URL is: (namespace, Secret key).

    ``spec.redis.secretRef`` names a Secret of the session's namespace; the
    operator's default Secret lives in ``config.redis_secret_namespace``
    (the operator's own namespace, in the chart), else in the session's.
    """
    if session.redis_secret is not None:
        return session.namespace, session.redis_secret
    namespace = config.redis_secret_namespace or session.namespace
    return namespace, SecretRef(config.redis_secret, config.redis_secret_key)


# -- URLs: pure ---------------------------------------------------------------------------
def user_url(admin_url: str, username: str, password: str) -> str:
    """The admin URL with ``username`` and ``password`` as its only credentials.

    Scheme (``rediss`` stays ``rediss``), host, port, database and every other
    option are kept as written; the admin's userinfo and any ``username`` or
    ``password`` query option are dropped.
    """
    parts = urlsplit(admin_url)
    if parts.scheme in DATABASE_SCHEMES and parts.path not in {"", "/"}:
        database = parts.path.removeprefix("/")
        if not database.isdigit():
            msg = "the Redis URL's path must be a database number, e.g. redis://host:6379/0"
            raise ValueError(msg)
    host_and_port = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
    return urlunsplit(
        (
            parts.scheme,
            f"{userinfo}@{host_and_port}",
            parts.path,
            _without_credentials(parts.query),
            parts.fragment,
        )
    )


def checked_admin_url(url: str, where: str) -> str:
    """``url`` if redis-py and ``user_url`` can both use it; else why not (never the URL)."""
    try:
        parse_url(url)
        user_url(url, "check", "check")
    except ValueError as error:
        msg = f"the Redis URL in {where} cannot be used: {error}"
        raise RedisURLInvalidError(msg) from None  # the cause may quote the URL
    return url


def redacted(url: str) -> str:
    """A Redis URL fit for a log line: no userinfo, no credential options."""
    parts = urlsplit(url)
    return urlunsplit(
        (
            parts.scheme,
            parts.netloc.rpartition("@")[2],
            parts.path,
            _without_credentials(parts.query),
            "",
        )
    )


def parse_url(url: str) -> dict[str, Any]:
    """What redis-py makes of a URL: its connection's keyword arguments."""
    parsed: dict[str, Any] = redis_parse_url(url)  # type: ignore[no-untyped-call]
    return parsed


def _without_credentials(query: str) -> str:
    kept = [
        option
        for option in query.split("&")
        if option and unquote(option.partition("=")[0]).lower() not in CREDENTIAL_OPTIONS
    ]
    return "&".join(kept)


def new_password() -> str:
    """A fresh random password: 32 bytes, URL-safe base64 (no whitespace, nothing to quote)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def _usable(password: str | None) -> bool:
    return bool(password) and not any(ch.isspace() for ch in password or "")


# -- the identities and their Secrets: pure -------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """One of a tenant's Redis users and the Secret that holds its credential."""

    username: str
    rules: tuple[str, ...]
    secret_name: str


def identities_of(session: Session) -> tuple[Identity, Identity]:
    """The session pod's identity and the tenant API's, in that order."""
    return (
        Identity(
            contract.session_redis_user(session.tenant),
            redis_acl.session_user_rules(session.tenant),
            contract.session_redis_secret_name(session.name),
        ),
        Identity(
            contract.api_redis_user(session.tenant),
            redis_acl.api_user_rules(session.tenant),
            contract.api_redis_secret_name(session.name),
        ),
    )


@dataclass(frozen=True, repr=False)
class Credential:
    """A user's name, password and URL, as its Secret holds them."""

    username: str
    password: str
    url: str

    def __repr__(self) -> str:
        """Never the password, never the URL's userinfo."""
        return f"Credential(username={self.username!r}, url={redacted(self.url)!r})"

    def data(self) -> dict[str, str]:
        """The Secret's data: url, username, password."""
        return {
            contract.REDIS_SECRET_URL_KEY: self.url,
            contract.REDIS_SECRET_USERNAME_KEY: self.username,
            contract.REDIS_SECRET_PASSWORD_KEY: self.password,
        }


def credential_for(
    identity: Identity, admin_url: str, stored: Mapping[str, str] | None
) -> tuple[Credential, bool]:
    """The identity's credential, and whether its Secret must be written.

    A stored password is kept (the Secret is its source of truth); a missing
    or unusable one is replaced by a new one. The URL always follows the
    admin URL, so a moved Redis moves every tenant's URL with it.
    """
    stored_password = (stored or {}).get(contract.REDIS_SECRET_PASSWORD_KEY)
    password = stored_password if stored_password and _usable(stored_password) else new_password()
    url = user_url(admin_url, identity.username, password)
    credential = Credential(identity.username, password, url)
    current = {key: (stored or {}).get(key) for key in credential.data()}
    return credential, current != credential.data()


def build_credential_secret(
    session: Session, identity: Identity, credential: Credential
) -> dict[str, Any]:
    """The Secret with one identity's credential, owned by the WhatsAppSession."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": identity.secret_name,
            "namespace": session.namespace,
            "labels": labels_of(session),
            "ownerReferences": [owner_reference(session)],
        },
        "stringData": credential.data(),
    }


def has_password(user: Mapping[str, Any] | None, password: str) -> bool:
    """Whether ``ACL GETUSER``'s answer is an enabled user with exactly this password."""
    if not user:
        return False
    digest = hashlib.sha256(password.encode()).hexdigest()
    return "on" in (user.get("flags") or ()) and list(user.get("passwords") or ()) == [digest]


# -- Redis: making and removing users ---------------------------------------------------------
class RedisUsers:
    """Makes and keeps the tenants' users on every Redis this operator serves."""

    def __init__(self) -> None:
        """Nothing is made yet: every user is made once more after a start."""
        # (admin URL, username) made since the start -> (its password's digest, when checked)
        self._made: dict[tuple[str, str], tuple[str, float]] = {}
        # admin URL -> (when asked, the ACL USERS read: shared by every cycle that asks meanwhile)
        self._names: dict[str, tuple[float, asyncio.Future[set[str]]]] = {}

    async def ensure(
        self, client: aioredis.Redis, url: str, identity: Identity, credential: Credential
    ) -> str | None:
        """Make the user unless it is as it should be; why it was made (None: it was)."""
        made_key = (url, identity.username)
        digest = hashlib.sha256(credential.password.encode()).hexdigest()
        made = self._made.get(made_key)
        if (
            made is not None
            and made[0] == digest
            and time.monotonic() - made[1] < FULL_CHECK_SECONDS
            and identity.username in await self._user_names(client, url)
        ):
            return None  # made or checked with this password, and still there
        why = await self._why_make(client, identity, credential, made_key)
        if why is not None:
            arguments = redis_acl.setuser_arguments(identity.rules, credential.password)
            try:
                await client.execute_command(  # type: ignore[no-untyped-call]
                    "ACL", "SETUSER", identity.username, *arguments
                )
            except (RedisError, OSError) as error:
                context = (
                    f"cannot make Redis user {identity.username} "
                    "(wasp needs Redis 7 or newer, and an admin credential allowed ACL SETUSER)"
                )
                raise redis_failure(context, error, secret=credential.password) from error
            listed = self._names.get(url)
            if listed is not None and _succeeded(listed[1]):
                listed[1].result().add(identity.username)
        self._made[made_key] = (digest, time.monotonic())
        return why

    async def _why_make(
        self,
        client: aioredis.Redis,
        identity: Identity,
        credential: Credential,
        made_key: tuple[str, str],
    ) -> str | None:
        """Read the user in full: why it must be made (None: it is as it should be)."""
        try:
            user = await client.acl_getuser(identity.username)
        except (RedisError, OSError) as error:
            context = f"cannot read Redis user {identity.username}"
            raise redis_failure(context, error) from error
        if user is None:
            return "missing"
        if not has_password(user, credential.password):
            return "changed"
        if made_key not in self._made:
            return "started"
        return None

    async def _user_names(self, client: aioredis.Redis, url: str) -> set[str]:
        """The users of the Redis at ``url`` (``ACL USERS``, at most as old as allowed).

        Cycles that ask while a read is under way wait for that read: at
        5,000 tenants the list has 10,000 names, and two hundred cycles a
        second each reading it was a quarter of the operator's CPU (py-spy).
        A failed read is not kept: the next cycle reads again.
        """
        now = time.monotonic()
        listed = self._names.get(url)
        if listed is None or now - listed[0] >= USER_LIST_MAX_AGE_SECONDS:
            listed = (now, asyncio.ensure_future(_list_users(client)))
            self._names[url] = listed
        try:
            return await asyncio.shield(listed[1])
        except (RedisError, OSError, OperatorError):
            if self._names.get(url) is listed:
                del self._names[url]
            raise

    def forget(self, url: str, usernames: tuple[str, ...]) -> None:
        """Forget that users were made (they were deleted)."""
        for name in usernames:
            self._made.pop((url, name), None)


async def _list_users(client: aioredis.Redis) -> set[str]:
    """``ACL USERS``: the names of every user of that Redis."""
    try:
        return {str(name) for name in await client.acl_users()}
    except (RedisError, OSError) as error:
        msg = "cannot list the Redis users"
        raise redis_failure(msg, error) from error


def _succeeded(read: asyncio.Future[set[str]]) -> bool:
    """Whether a shared ``ACL USERS`` read is over and gave a list."""
    return read.done() and not read.cancelled() and read.exception() is None
