"""Scripts are called by SHA and loaded again when the server has forgotten them (NOSCRIPT)."""

from __future__ import annotations

import pytest

from huddle import NotAMemberError, SessionManager


async def test_emit_loads_the_script_again_after_the_server_flushed_its_script_cache(
    manager: SessionManager,
) -> None:
    sid = await manager.create_session("a1")
    assert await manager.emit_event(sid, {"type": "modified"}, "a1") == 2
    await manager.client.script_flush()
    assert not await manager.store.scripts_loaded()

    assert await manager.emit_event(sid, {"type": "modified"}, "a1") == 3
    assert [event.seq for event in await manager.get_events(sid)] == [1, 2, 3]


async def test_a_script_error_after_a_reload_is_still_its_typed_error(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    await manager.client.script_flush()

    with pytest.raises(NotAMemberError):
        await manager.emit_event(sid, {"type": "modified"}, "stranger")
    assert [event.seq for event in await manager.get_events(sid)] == [1]
