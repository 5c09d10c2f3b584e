"""Session lifetime is Redis TTL: refreshed by activity, grace period after the last leave, revived by a join."""

from __future__ import annotations

from huddle import SessionManager

EVENT = {"type": "modified"}


async def _pttls(manager: SessionManager, sid: str) -> list[int]:
    keys = manager.keys.session(sid)
    pttls = [await manager.client.pttl(key) for key in (keys.meta, keys.events, keys.agents, keys.idem)]
    assert pttls[0] > 0, "session is gone"
    return [pttl for pttl in pttls if pttl != -2]  # -2: key absent (an empty agents hash does not exist)


async def test_emit_refreshes_the_ttl_of_every_session_key(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    await manager.emit_event(sid, EVENT, "a1")
    for key in manager.keys.session(sid).all[:5]:
        await manager.client.pexpire(key, 5_000)
    await manager.emit_event(sid, EVENT, "a1")
    ttl_ms = manager.config.default_ttl * 1000
    assert all(ttl_ms - 5_000 < pttl <= ttl_ms for pttl in await _pttls(manager, sid))


async def test_emit_without_reset_ttl_keeps_the_remaining_lifetime(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    for key in manager.keys.session(sid).all[:5]:
        await manager.client.pexpire(key, 90_000)
    await manager.emit_event(sid, EVENT, "a1", reset_ttl=False)
    assert all(80_000 < pttl <= 90_000 for pttl in await _pttls(manager, sid))


async def test_last_leave_starts_the_grace_period_and_a_join_revives(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    await manager.join_session(sid, "a2")
    await manager.emit_event(sid, EVENT, "a1")
    await manager.leave_session(sid, "a1")
    document = await manager.get_session(sid)
    assert not document.in_grace and document.expires_in > manager.config.grace_ttl  # type: ignore[operator]

    await manager.leave_session(sid, "a2")
    grace_ms = manager.config.grace_ttl * 1000
    assert all(grace_ms - 5_000 < pttl <= grace_ms for pttl in await _pttls(manager, sid))
    assert (await manager.get_session(sid)).in_grace

    await manager.join_session(sid, "a3")
    document = await manager.get_session(sid)
    assert not document.in_grace and document.agents.keys() == {"a3"}
    assert document.expires_in > manager.config.default_ttl - 5  # type: ignore[operator]


async def test_a_custom_session_ttl_is_used_for_refreshes(manager: SessionManager) -> None:
    sid = await manager.create_session("a1", ttl=600)
    await manager.emit_event(sid, EVENT, "a1")
    assert all(595_000 < pttl <= 600_000 for pttl in await _pttls(manager, sid))


async def test_a_session_really_expires_when_its_ttl_runs_out(manager: SessionManager) -> None:
    from huddle import SessionExpiredError

    sid = await manager.create_session("a1")
    for key in manager.keys.session(sid).all:
        await manager.client.pexpire(key, 1)  # let Redis expire it rather than deleting it ourselves
    while await manager.client.exists(manager.keys.session(sid).meta):
        pass
    try:
        await manager.get_session(sid)
    except SessionExpiredError as exc:
        assert exc.code == "session_expired"
    else:
        raise AssertionError("expired session still readable")
    assert sid not in await manager.list_active_sessions()
