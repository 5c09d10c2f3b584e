"""``create_app`` mounted inside another ASGI app (in process, real Redis): prefix, tokens, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from huddle import SessionManager
from huddle.api import Identity, TokenStore, create_app
from huddle.api.auth import TokenEntry, digest
from huddle.errors import ConfigError


async def test_the_api_mounted_under_a_prefix_in_a_host_app(manager: SessionManager) -> None:
    tokens = TokenStore([TokenEntry(digest("t-alice"), Identity("agent", "alice", "alice"))])
    api = create_app(manager, tokens=tokens, mcp=False, console=False)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with api.router.lifespan_context(api):
            yield

    host = Starlette(routes=[Mount("/huddle", app=api)], lifespan=lifespan)
    transport = httpx.ASGITransport(app=host)
    async with (
        lifespan(host),
        httpx.AsyncClient(transport=transport, base_url="http://host") as client,
    ):
        assert (
            await client.get("/huddle/v1/stats")
        ).status_code == 401  # protected below the mount point too
        headers = {"Authorization": "Bearer t-alice"}
        created = await client.post("/huddle/v1/sessions", json={"agent_id": "alice"}, headers=headers)
        assert created.status_code == 201
        session = created.json()["session_id"]
        written = await client.post(
            f"/huddle/v1/sessions/{session}/events",
            json={"type": "modified", "actor": "alice"},
            headers=headers,
        )
        assert written.json() == {"seq": 2}
        forged = await client.post(
            f"/huddle/v1/sessions/{session}/events",
            json={"type": "modified", "actor": "bob"},
            headers=headers,
        )
        assert forged.status_code == 403
        assert (await client.get("/huddle/openapi.json")).status_code == 200
    assert [e.seq for e in await manager.get_events(session)] == [1, 2]


def test_tokens_from_the_environment_and_a_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "tokens.toml"
    file.write_text(
        '[[tokens]]\nrole = "agent"\nagent_id = "bob"\nsha256 = "' + digest("t-bob").hex() + '"\n'
        '[[tokens]]\nrole = "observer"\nname = "dash"\ntoken = "t-dash"\n'
    )
    monkeypatch.setenv("HUDDLE_API_TOKENS", "admin:ops=t-ops, agent:carol=t-carol")
    store = TokenStore.from_env(file)
    assert store.identify("t-bob") == Identity("agent", "bob", "bob")
    assert store.identify("t-dash") == Identity("observer", None, "dash")
    assert store.identify("t-ops") == Identity("admin", None, "ops")
    assert store.identify("t-carol") == Identity("agent", "carol", "carol")
    assert store.identify("nope") is None
    for bad in ("agent=t", "boss:x=t", "observer"):
        with pytest.raises(ConfigError):
            TokenStore.parse_env(bad)
