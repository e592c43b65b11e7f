"""HTTP from tests, over real sockets: urllib in a thread (the loop keeps serving)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import trio


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get(url: str, headers: dict[str, str]) -> Answer:
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=10) as resp:
            return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                          resp.read())
    except urllib.error.HTTPError as err:
        return Answer(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


async def get(url: str, **headers: str) -> Answer:
    return await trio.to_thread.run_sync(_get, url, headers)


def _events(url: str, n: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    found = []
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        while len(found) < n:
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                found.append(json.loads(line[6:]))
    return found


async def events(url: str, n: int, **headers: str) -> list[dict[str, Any]]:
    """The first ``n`` server-sent events of ``url``, decoded."""
    return await trio.to_thread.run_sync(_events, url, n, headers)
