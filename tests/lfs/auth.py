"""The test LFS server's auth provider (giftless 0.6.2, see README.md).

Grants read and write on every repository and object to a request that carries the test
token, `KALANDRA_LFS_TOKEN` in the server's environment, as the HTTP basic password (any user
name, as GitLab and GitHub take a token) or as a Bearer token. Anything else gets no identity,
so giftless answers 401.

giftless' own `allow_anon:read_write` cannot serve here: its identity allows the wildcard
(None, None, None) entry, and `DefaultIdentity.is_authorized` looks a per-object check up
under `[None][None][oid]`, which finds nothing, so every upload and download of an object is
refused. This identity answers every check itself instead.
"""

import hmac
import os

from flask import Request
from werkzeug.datastructures import Authorization

from giftless.auth.identity import DefaultIdentity, Permission


class TokenHolder(DefaultIdentity):
    """Whoever showed the test token: may do anything anywhere."""

    def __init__(self) -> None:
        super().__init__(name="kalandra-test", id="kalandra-test")

    def is_authorized(
        self,
        organization: str,
        repo: str,
        permission: Permission,
        oid: str | None = None,
    ) -> bool:
        return permission in Permission.all()


def _presented(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, rest = header.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    if scheme.lower() == "basic":
        parsed = Authorization.from_header(header)
        if parsed is not None and parsed.password:
            return str(parsed.password)
    return None


def token(request: Request) -> TokenHolder | None:
    """The AUTH_PROVIDERS entry: `auth:token`."""
    expected = os.environ.get("KALANDRA_LFS_TOKEN", "")
    presented = _presented(request)
    if not expected or presented is None:
        return None
    if hmac.compare_digest(presented.encode(), expected.encode()):
        return TokenHolder()
    return None
