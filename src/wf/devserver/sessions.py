"""The dashboard's sign-in sessions on ``wf serve``: a signed cookie, nothing stored.

A session is the cookie ``wf_session=<issued>.<nonce>.<mac>``: when it was issued (unix seconds),
16 random bytes, and HMAC-SHA256 of both under a key derived from the API token's sha256. So
every node that knows the token (or, in a cluster, only its hash) accepts it, a restart keeps it,
and a new token (``--rotate-token``, a new ``WF_API_TOKEN``) signs everyone out: the key changes.
A session lasts 12 hours from sign-in.

Each session has its CSRF token, HMAC of the session's id under the same key: a form can carry
it, a page on another site cannot know it.

Signing out drops the cookie in the browser and revokes the session's id on this node (and, in a
cluster, on the nodes that hear the message) until it would have expired. ``wf serve`` also keeps
the list in its database (``wf.server.dashboard``), so a restarted or new node refuses it too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from wf.devserver.state import ServerState

COOKIE = "wf_session"
CSRF_HEADER = "X-WF-CSRF"  # a script's API write carries the session's CSRF token here
CSRF_FIELD = "csrf"  # ... and a form, in this field
LIFETIME = 12 * 3600
# A cookie that a node whose clock runs ahead issued is still good (up to this far ahead).
CLOCK_SKEW = 300
NONCE_BYTES = 16
KEY_LABEL = b"wf dashboard sessions v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def expires_at(session_id: str) -> int | None:
    """When a session ends (unix seconds), read from its id; None for an id of no session."""
    issued_text = session_id.partition(".")[0]
    if not (issued_text.isascii() and issued_text.isdigit() and len(issued_text) <= 12):
        return None
    return int(issued_text) + LIFETIME


class Sessions:
    """Issues and checks session cookies and their CSRF tokens.

    ``token_digest`` returns the sha256 of the current API token (read at each check, so a
    rotation takes effect at once)."""

    def __init__(
        self, token_digest: Callable[[], bytes], clock: Callable[[], float] = time.time
    ) -> None:
        self._token_digest = token_digest
        self._clock = clock
        self._revoked: dict[str, float] = {}  # session id → when it would have expired
        # Tells the other nodes of a sign-out, and keeps it (wf.server.dashboard).
        self.on_sign_out: Callable[[str], Awaitable[None]] | None = None

    @classmethod
    def for_state(cls, state: ServerState) -> Sessions:
        """Sessions signed with the token ``state`` checks requests against."""
        token, check = state.token, state.token_check
        if check is not None:
            return cls(lambda: bytes.fromhex(check.digest))
        if token:
            digest = hashlib.sha256(token.encode("utf-8")).digest()
            return cls(lambda: digest)
        raise ValueError("sessions need an API token")

    def _key(self) -> bytes:
        return hmac.new(self._token_digest(), KEY_LABEL, hashlib.sha256).digest()

    def _mac(self, kind: str, text: str) -> str:
        return _b64(hmac.new(self._key(), f"{kind}|{text}".encode(), hashlib.sha256).digest())

    def issue(self) -> str:
        """A new session's cookie value."""
        session_id = f"{int(self._clock())}.{_b64(secrets.token_bytes(NONCE_BYTES))}"
        return f"{session_id}.{self._mac('session', session_id)}"

    def check(self, cookie: str | None) -> str | None:
        """The session's id when ``cookie`` is a live session of the current token, else None."""
        if not cookie or len(cookie) > 200:
            return None
        session_id, _, mac = cookie.rpartition(".")
        nonce = session_id.partition(".")[2]
        until = expires_at(session_id)
        if until is None:
            return None
        if not nonce or not hmac.compare_digest(mac, self._mac("session", session_id)):
            return None
        now = self._clock()
        if not until - LIFETIME - CLOCK_SKEW <= now < until:
            return None
        if session_id in self._revoked:
            return None
        return session_id

    def csrf(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def csrf_ok(self, session_id: str, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given, self.csrf(session_id))

    async def sign_out(self, session_id: str) -> None:
        """Refuse this session from now on, here and (through ``on_sign_out``) everywhere."""
        if self.revoke(session_id) and self.on_sign_out is not None:
            await self.on_sign_out(session_id)

    def revoke(self, session_id: str) -> bool:
        """Refuse this session from now on, on this node; False if it was refused already, or
        over anyway."""
        now = self._clock()
        for old, ends in list(self._revoked.items()):
            if ends <= now:
                del self._revoked[old]
        until = expires_at(session_id)
        if until is None or until <= now or session_id in self._revoked:
            return False
        self._revoked[session_id] = until
        return True


SESSIONS_KEY = web.AppKey("wf_sessions", Sessions)


def session_of(request: web.Request) -> str | None:
    """The id of the request's live session, if the app has sessions and it sent one."""
    sessions = request.app.get(SESSIONS_KEY)
    if sessions is None:
        return None
    return sessions.check(request.cookies.get(COOKIE))
