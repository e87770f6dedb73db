"""HTTP Digest computed the way ODK Collect computes it, as a ``requests`` auth object.

Collect signs in with okhttp-digest behind a caching interceptor. What this client reproduces, because
the server has to cope with each of them:

- the first request goes out bare; the 401 challenge is answered once;
- the challenge is then cached and every later request carries a header *pre-emptively*, with the same
  nonce and the nonce count (``nc``) one higher each time;
- credentials are hashed as US-ASCII (a non-ASCII character becomes ``?``, as Java's ``getBytes`` does)
  unless the challenge says ``charset=UTF-8``;
- ``uri`` is the request's encoded path and query; only ``qop=auth`` with ``algorithm=MD5`` is used;
- a 401 with ``stale=true`` is answered again with the new nonce without asking the user; a refused
  pre-emptive header without ``stale`` drops the cached challenge and the request is sent again bare
  (then challenged and answered once more); a refused answer to a fresh challenge is final (wrong
  password);
- header values must be ASCII (OkHttp refuses anything else), so a non-ASCII username cannot be sent.

Drop-in for ``requests.auth.HTTPDigestAuth(username, password)``.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import Any

import requests
from requests.auth import AuthBase

_PARAM = re.compile(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]+)')


def parse_challenge(header: str) -> dict[str, str]:
    """The parameters of a ``Digest`` challenge (names lower-cased, quotes removed)."""
    if not header.lower().startswith("digest "):
        raise ValueError(f"not a Digest challenge: {header!r}")
    params = {}
    for name, value in _PARAM.findall(header[7:]):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name.lower()] = value
    return params


def _java_bytes(text: str, charset: str) -> bytes:
    """``String.getBytes(charset)``: unmappable characters become '?'."""
    return text.encode("utf-8" if charset.upper().replace("_", "-") == "UTF-8" else "ascii", "replace")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CollectDigestAuth(AuthBase):
    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._lock = threading.Lock()
        self._challenge: dict[str, str] | None = None
        self._last_nonce = ""
        self._nonce_count = 0
        self._cnonce = ""
        # What happened, for tests: every header sent, and how many challenges (401s) were answered.
        self.sent: list[str] = []
        self.challenges_answered = 0

    # ---- header -----------------------------------------------------------------------------------

    def header_for(self, method: str, uri: str, challenge: dict[str, str]) -> str:
        """The Authorization header for a request under ``challenge`` (advances the nonce count)."""
        qops = {q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()}
        if challenge.get("qop") is not None and "auth" not in qops:
            raise ValueError(f"no supported qop in {challenge.get('qop')!r}")
        algorithm = challenge.get("algorithm", "MD5")
        if algorithm.upper() != "MD5":
            raise ValueError(f"unsupported algorithm {algorithm!r}")
        charset = challenge.get("charset", "US-ASCII")
        realm, nonce = challenge["realm"], challenge["nonce"]
        with self._lock:
            if nonce == self._last_nonce:
                self._nonce_count += 1
            else:
                self._last_nonce, self._nonce_count, self._cnonce = nonce, 1, os.urandom(8).hex()
            nc, cnonce = f"{self._nonce_count:08x}", self._cnonce
        ha1 = _md5(_java_bytes(f"{self.username}:{realm}:{self.password}", charset))
        ha2 = _md5(_java_bytes(f"{method}:{uri}", charset))
        if qops:
            response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode("ascii"))
        else:
            response = _md5(f"{ha1}:{nonce}:{ha2}".encode("ascii"))
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(realm)}",
            f"nonce={_quote(nonce)}",
            f"uri={_quote(uri)}",
            f"response={_quote(response)}",
        ]
        if qops:
            parts += ["qop=auth", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
        parts.append(f"algorithm={algorithm}")
        if "opaque" in challenge:
            parts.append(f"opaque={_quote(challenge['opaque'])}")
        header = "Digest " + ", ".join(parts)
        header.encode("ascii")  # OkHttp refuses non-ASCII header values: so does this client
        self.sent.append(header)
        return header

    def _sign(self, request: requests.PreparedRequest, challenge: dict[str, str]) -> None:
        request.headers["Authorization"] = self.header_for(
            request.method or "GET", request.path_url, challenge
        )

    # ---- requests hooks ---------------------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            cached = self._challenge
        if cached is not None:
            self._sign(request, cached)
        body = request.body
        position = body.tell() if hasattr(body, "tell") else None
        state = {"bare_retry_done": False, "position": position}
        request.register_hook("response", lambda r, **kw: self._on_response(r, state, **kw))
        return request

    def _resend(
        self, response: requests.Response, challenge: dict[str, str] | None, state: dict[str, Any], **kw: Any
    ) -> requests.Response:
        body = response.request.body
        if state["position"] is not None and hasattr(body, "seek"):
            body.seek(state["position"])
        response.content  # noqa: B018 - read the 401 so the connection can be reused
        response.close()
        again = response.request.copy()
        again.headers.pop("Authorization", None)
        if challenge is not None:
            self._sign(again, challenge)
        sent = response.connection.send(again, **kw)
        sent.history = [*response.history, response]
        sent.request = again
        return sent

    def _on_response(
        self, response: requests.Response, state: dict[str, Any], **kw: Any
    ) -> requests.Response:
        if response.status_code != 401:
            return response
        header = response.headers.get("WWW-Authenticate", "")
        if not header.lower().startswith("digest "):
            return response
        challenge = parse_challenge(header)
        had_header = str(response.request.headers.get("Authorization", "")).startswith("Digest ")
        stale = challenge.get("stale", "").lower() == "true"
        with self._lock:
            if had_header and not stale:
                # The header was refused: forget the cached challenge.
                self._challenge = None
            else:
                self._challenge = challenge
        if not had_header or stale:
            self.challenges_answered += 1
            answered = self._resend(response, challenge, state, **kw)
            return self._on_response_final(answered, state, **kw)
        if not state["bare_retry_done"]:
            # A refused pre-emptive header: Collect sends the request again without credentials.
            state["bare_retry_done"] = True
            bare = self._resend(response, None, state, **kw)
            return self._on_response(bare, state, **kw)
        return response

    def _on_response_final(
        self, response: requests.Response, state: dict[str, Any], **kw: Any
    ) -> requests.Response:
        """After answering a challenge: only a stale nonce earns one more try."""
        if response.status_code == 401:
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", "Digest "))
            if challenge.get("stale", "").lower() == "true" and len(response.history) < 3:
                with self._lock:
                    self._challenge = challenge
                self.challenges_answered += 1
                return self._resend(response, challenge, state, **kw)
            with self._lock:
                self._challenge = None
        return response
