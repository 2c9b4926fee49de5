"""Connecting to Snowflake as the ``snowflake`` target of ``profiles.yml`` does, for the
loader (reading the online tables) and :func:`featurestore.get_historical_features`
(training sets): :class:`SnowflakeSettings` and :func:`connect`.

Settings
    The same environment variables as the target and nothing else: ``SNOWFLAKE_ACCOUNT``,
    ``SNOWFLAKE_USER``, ``SNOWFLAKE_ROLE``, ``SNOWFLAKE_WAREHOUSE``, ``SNOWFLAKE_DATABASE``,
    ``SNOWFLAKE_SCHEMA`` (all required), and one way to log in:
    ``SNOWFLAKE_PRIVATE_KEY_PATH`` (+ ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE``) for key-pair
    login, else ``SNOWFLAKE_AUTHENTICATOR`` when it is not ``snowflake`` (``externalbrowser``,
    ``oauth``, ...; with ``SNOWFLAKE_PASSWORD`` if it needs one), else ``SNOWFLAKE_PASSWORD``.
    Empty values count as unset, as in the profile. Secrets are kept out of ``repr``,
    messages and logs (a connector message is scrubbed of them too).

Errors (:class:`SnowflakeConnectionError`, exit code 1)
    missing variables (every one named), the network or account unreachable (connector
    errno 250001...), the login refused (errno 390xxx, e.g. 390100 wrong password).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from featurestore.exit_codes import ExitCode

if TYPE_CHECKING:
    from snowflake.connector import SnowflakeConnection

__all__ = [
    "AUTH_ENV",
    "REQUIRED_ENV",
    "SnowflakeConnectionError",
    "SnowflakeSettings",
    "connect",
]

#: variables the ``snowflake`` target of profiles.yml requires (``env_var`` without default)
REQUIRED_ENV: Final = (
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_USER",
    "SNOWFLAKE_ROLE",
    "SNOWFLAKE_WAREHOUSE",
    "SNOWFLAKE_DATABASE",
    "SNOWFLAKE_SCHEMA",
)
#: the login variables of the profile (each optional; one way to log in is needed)
AUTH_ENV: Final = (
    "SNOWFLAKE_AUTHENTICATOR",
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_PRIVATE_KEY_PATH",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
)

#: Snowflake's own authentication errors are numbered 390000-390999
_LOGIN_ERRORS: Final = range(390000, 391000)


class SnowflakeConnectionError(RuntimeError):
    """The Snowflake settings are incomplete, or the account cannot be reached or refuses
    the login; the message is one line without a secret."""

    exit_code: int = ExitCode.ERROR


@dataclass(frozen=True)
class SnowflakeSettings:
    """How to connect: the ``snowflake`` target's fields, from the environment only."""

    account: str
    user: str
    role: str
    warehouse: str
    database: str
    schema: str
    authenticator: str = "snowflake"
    password: str | None = field(default=None, repr=False)
    private_key_path: str | None = None
    private_key_passphrase: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SnowflakeSettings:
        """Read the variables (``os.environ`` by default); raise SnowflakeConnectionError
        naming every missing one."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        missing = [name for name in REQUIRED_ENV if get(name) is None]
        authenticator = get("SNOWFLAKE_AUTHENTICATOR") or "snowflake"
        password = env.get("SNOWFLAKE_PASSWORD") or None
        key_path = get("SNOWFLAKE_PRIVATE_KEY_PATH")
        no_login = password is None and key_path is None and authenticator.lower() == "snowflake"
        if missing or no_login:
            needs = []
            if missing:
                needs.append(", ".join(missing))
            if no_login:
                needs.append(
                    "SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY_PATH, or "
                    "SNOWFLAKE_AUTHENTICATOR=externalbrowser|oauth|...)"
                )
            raise SnowflakeConnectionError(
                "the snowflake target reads its connection from the environment, as "
                f"profiles.yml does: set {' and '.join(needs)}"
            )
        return cls(
            account=str(get("SNOWFLAKE_ACCOUNT")),
            user=str(get("SNOWFLAKE_USER")),
            role=str(get("SNOWFLAKE_ROLE")),
            warehouse=str(get("SNOWFLAKE_WAREHOUSE")),
            database=str(get("SNOWFLAKE_DATABASE")),
            schema=str(get("SNOWFLAKE_SCHEMA")),
            authenticator=authenticator,
            password=password,
            private_key_path=key_path,
            private_key_passphrase=env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE") or None,
        )

    def connect_args(self, application: str = "featurestore-loader") -> dict[str, Any]:
        """Keyword arguments of ``snowflake.connector.connect`` (they hold the secrets)."""
        args: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "role": self.role,
            "warehouse": self.warehouse,
            "database": self.database,
            "schema": self.schema,
            "client_session_keep_alive": False,
            "application": application,
        }
        if self.private_key_path is not None:
            args["authenticator"] = "SNOWFLAKE_JWT"
            args["private_key_file"] = self.private_key_path
            if self.private_key_passphrase is not None:
                args["private_key_file_pwd"] = self.private_key_passphrase
        else:
            if self.authenticator.lower() != "snowflake":
                args["authenticator"] = self.authenticator
            if self.password is not None:
                args["password"] = self.password
        return args

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for secret in (self.password, self.private_key_passphrase):
            if secret:
                text = text.replace(secret, "***")
        return text

    def detail(self, exc: BaseException) -> str:
        """The first line of a connector error's message, scrubbed of secrets."""
        text = str(getattr(exc, "msg", None) or exc).strip()
        return self.scrub(text.splitlines()[0] if text else type(exc).__name__)


def connect(
    settings: SnowflakeSettings,
    *,
    application: str,
    options: Mapping[str, Any] | None = None,
) -> SnowflakeConnection:
    """A connection with ``settings`` (``options``: extra keyword arguments of
    ``snowflake.connector.connect``, e.g. ``login_timeout``, or the address of a proxy or an
    emulator; the login only ever comes from ``settings``). Raises SnowflakeConnectionError."""
    import snowflake.connector
    from snowflake.connector import errors

    args = {**settings.connect_args(application), **(options or {})}
    try:
        return snowflake.connector.connect(**args)
    except errors.Error as exc:
        raise SnowflakeConnectionError(_login_message(settings, exc)) from None
    except (OSError, ValueError, TypeError) as exc:  # e.g. an unreadable private key
        detail = settings.scrub(str(exc).splitlines()[0] if str(exc) else "")
        raise SnowflakeConnectionError(
            f"cannot connect to Snowflake account {settings.account!r} as "
            f"{settings.user!r}: {type(exc).__name__}: {detail}"
        ) from None


def _login_message(settings: SnowflakeSettings, exc: Any) -> str:
    from snowflake.connector import errors

    who = f"account {settings.account!r} as user {settings.user!r}"
    detail = settings.detail(exc)
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno in _LOGIN_ERRORS:
        return (
            f"Snowflake refused the login to {who}: {detail} (check SNOWFLAKE_USER, "
            "SNOWFLAKE_ROLE and SNOWFLAKE_PASSWORD / SNOWFLAKE_AUTHENTICATOR / "
            "SNOWFLAKE_PRIVATE_KEY_PATH)"
        )
    if isinstance(exc, errors.OperationalError) or (
        isinstance(errno, int) and 250000 <= errno < 260000
    ):
        return f"cannot reach Snowflake {who}: {detail} (check SNOWFLAKE_ACCOUNT and the network)"
    return f"cannot connect to Snowflake {who}: {detail}"
