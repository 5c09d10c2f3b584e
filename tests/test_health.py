"""SessionHealthCheck against real Redis: components, metrics from the manager, readiness, alerts, the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.connection import create_client
from huddle.errors import ShuttingDownError
from huddle.health import Alert, HealthConfig, SessionHealthCheck, Threshold

MakeManager = Callable[..., Awaitable[SessionManager]]


@pytest.fixture
async def health() -> AsyncIterator[SessionHealthCheck]:
    """A health check with a long interval: tests trigger checks themselves with ``check_now``."""
    async with SessionHealthCheck(HealthConfig(check_interval=300)) as checker:
        yield checker


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A private redis-server this test may stop, restart or reconfigure."""
    with EmbeddedRedis() as server:
        yield server


async def test_report_covers_every_component_and_marks_missing_ones_not_configured(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    report = await (await health.initialize(session_manager=manager)).get_health_status()
    assert report.overall == "healthy" and report.status == "pass" and report.http_status == 200
    assert {name: c.level for name, c in report.components.items()} == {
        "redis": "healthy",
        "pubsub": "healthy",
        "sessions": "healthy",
        "replay": "not_configured",
        "migration": "not_configured",
        "performance": "healthy",
        "process": "healthy",
    }
    redis = report.components["redis"]
    assert redis.details["version"] and redis.details["role"] == "master"
    assert redis.checks["redis:responseTime"].observed_unit == "ms"
    assert report.checks["pubsub:responseTime"][0].observed_value is not None


async def test_checks_serialize_with_ietf_field_names(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    await health.initialize(session_manager=manager)
    body = (await health.get_health_status()).model_dump(mode="json", by_alias=True)
    entry = body["checks"]["redis:responseTime"][0]
    assert {"componentId", "componentType", "observedValue", "observedUnit", "status", "time"} <= set(entry)
    assert body["status"] in ("pass", "warn", "fail")


async def test_health_of_a_bare_redis_client_without_manager(
    health: SessionHealthCheck, redis_server: EmbeddedRedis
) -> None:
    client = create_client(SessionManagerConfig(redis_url=redis_server.url))
    try:
        report = await health.initialize(redis=client)
        assert report is health
        status = await health.get_health_status()
        assert status.components["redis"].level == "healthy"
        assert status.components["sessions"].level == "not_configured"
    finally:
        await client.aclose()


async def test_session_figures_are_read_from_redis(
    health: SessionHealthCheck, make_manager: MakeManager
) -> None:
    manager = await make_manager(checkpoint_interval=100)
    healthy_sid = await manager.create_session("agent-a")
    broken_sid = await manager.create_session("agent-b")
    await manager.emit_event(
        broken_sid, {"type": "broke", "state_transition": {"from": "working", "to": "broken"}}, "agent-b"
    )
    await manager.checkpoint(healthy_sid)
    await health.initialize(session_manager=manager)
    sessions = (await health.check_now()).components["sessions"]
    assert sessions.checks["sessions:active"].observed_value == 2
    assert sessions.checks["sessions:broken"].observed_value == 1
    oldest_broken = sessions.checks["sessions:oldestBroken"].observed_value
    assert isinstance(oldest_broken, float) and oldest_broken >= 0
    assert sessions.details["uncheckpointed_sessions"] == 1  # the checkpointed one is fully covered
    assert sessions.checks["sessions:scriptsLoaded"].observed_value is True


async def test_manager_operations_are_recorded_automatically(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    await health.initialize(session_manager=manager)
    sid = await manager.create_session("agent-a")
    for i in range(25):
        await manager.emit_event(sid, {"type": "modified", "data": {"i": i}}, "agent-a")
    with pytest.raises(Exception):  # noqa: B017 - any failure counts; here: not a member
        await manager.emit_event(sid, {"type": "modified"}, "stranger")
    performance = health.metrics().performance
    emit = performance.operations["emit"]["1m"]
    assert emit.operations == 26 and emit.errors == 1
    assert emit.p50_ms is not None and emit.p99_ms is not None and emit.p50_ms <= emit.p99_ms
    assert performance.operations["create"]["5m"].operations == 1
    assert emit.throughput_per_second > 0


async def test_recorded_response_times_and_errors_show_in_metrics(health: SessionHealthCheck) -> None:
    await health.initialize()
    for ms in (10.0, 20.0, 30.0):
        health.record_response_time(ms)
    health.record_error()
    custom = health.metrics().performance.operations["custom"]["1m"]
    assert custom.operations == 4 and custom.errors == 1
    assert custom.average_response_time_ms == pytest.approx(20.0, rel=0.01)
    assert custom.max_ms == pytest.approx(30.0, rel=0.01)


async def test_readiness_fails_when_the_manager_drains(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    await health.initialize(session_manager=manager)
    assert (await health.check_readiness()).ready
    manager.begin_draining()
    readiness = await health.check_readiness()
    assert not readiness.ready and readiness.checks["accepting"] is False
    assert "draining" in readiness.reasons[0]


async def test_mark_not_ready_and_back(health: SessionHealthCheck, manager: SessionManager) -> None:
    await health.initialize(session_manager=manager)
    health.mark_not_ready("maintenance")
    assert (await health.check_readiness()).reasons == ["maintenance"]
    health.mark_ready()
    assert (await health.check_readiness()).ready


async def test_close_stops_every_task_and_is_idempotent(manager: SessionManager) -> None:
    before = {task for task in asyncio.all_tasks() if not task.done()}
    health = SessionHealthCheck(HealthConfig(check_interval=0.1, loop_lag_interval=0.05))
    await health.initialize(session_manager=manager)
    await asyncio.sleep(0.3)
    await health.close()
    await health.close()
    after = {task for task in asyncio.all_tasks() if not task.done()} - before - {asyncio.current_task()}
    assert after == set()
    assert not (await health.check_readiness()).ready
    with pytest.raises(ShuttingDownError):
        await health.initialize(session_manager=manager)


async def test_redis_outage_turns_down_and_recovers_without_restart(
    health: SessionHealthCheck, own_redis: EmbeddedRedis
) -> None:
    async with SessionManager(SessionManagerConfig(redis_url=own_redis.url, retry_attempts=1)) as manager:
        await health.initialize(session_manager=manager)
        own_redis.stop(cleanup=False)
        down = await health.check_now()
        assert down.overall == "down" and down.http_status == 503
        assert not (await health.check_readiness()).ready
        own_redis.start()
        back = await health.check_now()
        assert back.overall == "healthy"
        readiness = await health.check_readiness()
        assert readiness.ready and readiness.checks["scripts"] is True  # reloaded into the empty server


async def test_alert_fires_once_per_transition_for_a_tiny_latency_threshold(manager: SessionManager) -> None:
    fired: list[Alert] = []
    config = HealthConfig(check_interval=300, thresholds={"redis:responseTime": Threshold(warning=0.000001)})
    async with SessionHealthCheck(config, alert_callbacks=[fired.append]) as health:
        await health.initialize(session_manager=manager)
        await health.check_now()
        await health.check_now()
        report = await health.check_now()
    latency = [alert for alert in fired if alert.check == "redis:responseTime"]
    assert len(latency) == 1
    assert (
        latency[0].level == "warning"
        and latency[0].previous == "healthy"
        and latency[0].threshold == 0.000001
    )
    assert report.overall == "warning" and report.http_status == 200
    assert any(alert.check == "redis:responseTime" for alert in report.alerts)


async def test_memory_alerts_go_warning_then_critical_then_clear(own_redis: EmbeddedRedis) -> None:
    fired: list[Alert] = []

    async def on_alert(alert: Alert) -> None:  # async callbacks are awaited
        fired.append(alert)

    async with SessionManager(SessionManagerConfig(redis_url=own_redis.url)) as manager:
        client = manager.client
        used = int((await client.info("memory"))["used_memory"])
        limit = used + 8 * 1024 * 1024
        await client.config_set("maxmemory", limit)

        async def fill_to(ratio: float) -> None:
            n = await client.dbsize()
            while int((await client.info("memory"))["used_memory"]) < ratio * limit:
                async with client.pipeline(transaction=False) as pipe:
                    for i in range(5):  # 50 kB steps: stop well short of maxmemory (noeviction)
                        pipe.set(f"fill:{n + i}", "x" * 10_000)
                    await pipe.execute()
                n += 5

        async with SessionHealthCheck(HealthConfig(check_interval=300), alert_callbacks=[on_alert]) as health:
            await health.initialize(session_manager=manager)
            await fill_to(0.85)
            assert (await health.check_now()).components["redis"].level == "warning"
            await health.check_now()
            await fill_to(0.97)
            assert (await health.check_now()).overall == "critical"
            await client.flushdb()
            cleared = await health.check_now()
    memory = [(a.previous, a.level) for a in fired if a.check == "redis:memoryUtilization"]
    assert memory == [("healthy", "warning"), ("warning", "critical"), ("critical", "healthy")]
    assert fired[-1].resolved
    assert cleared.components["redis"].level == "healthy"


async def test_a_failing_alert_callback_does_not_break_the_check(manager: SessionManager) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("pager is down")

    config = HealthConfig(check_interval=300, thresholds={"redis:responseTime": Threshold(warning=0.000001)})
    async with SessionHealthCheck(config, alert_callbacks=[broken]) as health:
        await health.initialize(session_manager=manager)
        assert (await health.check_now()).overall == "warning"


async def test_prometheus_exposition_parses_and_holds_operation_metrics(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    await health.initialize(session_manager=manager)
    sid = await manager.create_session("agent-a")
    await manager.emit_event(sid, {"type": "modified"}, "agent-a")
    await health.check_now()
    families = {
        family.name: family for family in text_string_to_metric_families(health.prometheus().decode())
    }
    assert "huddle_operation_duration_seconds" in families
    counts = [s for s in families["huddle_operation_duration_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["operation"] == "emit" and s.value == 1 for s in counts)
    assert families["huddle_health_overall"].samples[0].value == 0
    assert "process_resident_memory_bytes" in families


async def test_replay_without_health_api_is_reported_as_unknown_not_as_error(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    await health.initialize(session_manager=manager, session_replay=object())
    replay = (await health.get_health_status()).components["replay"]
    assert replay.level == "warning" and "unknown" in (replay.output or "")


async def test_component_health_snapshot_figures_become_checks(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    class Migration:
        async def health_snapshot(self) -> dict[str, object]:
            return {"running_tasks": 2, "sync_lag_seconds": 45.0}

    await health.initialize(session_manager=manager, session_migration=Migration())
    migration = (await health.get_health_status()).components["migration"]
    assert migration.checks["migration:runningTasks"].observed_value == 2
    assert migration.checks["migration:syncLagSeconds"].level == "warning"  # default warning at 30 s


async def test_asgi_app_mounts_into_a_users_fastapi_app(manager: SessionManager) -> None:
    # Timing thresholds out of reach: this test is about mounting, not about how loaded the machine is.
    lenient = {
        name: {"warning": 60_000}
        for name in (
            "redis:responseTime",
            "pubsub:responseTime",
            "process:eventLoopLag",
            "performance:p99ResponseTime",
        )
    }
    health = SessionHealthCheck(HealthConfig(check_interval=300, thresholds=lenient))
    await health.initialize(session_manager=manager)
    try:
        await _mounted(health)
    finally:
        await health.close()


async def _mounted(health: SessionHealthCheck) -> None:
    app = FastAPI()
    app.mount("/ops", health.asgi_app())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/ops/health")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/health+json")
        assert response.json()["overall"] == "healthy"
        assert (await client.get("/ops/livez")).status_code == 200
    assert [e.path for e in health.get_health_check_endpoints()][:2] == ["/health", "/health/detailed"]


async def test_no_secret_appears_in_any_response() -> None:
    password = "s3cret-Pa55word"
    with EmbeddedRedis() as server:
        plain = create_client(SessionManagerConfig(redis_url=server.url))
        await plain.config_set("requirepass", password)  # set after start: the start-up probe has no password
        await plain.aclose()
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        config = HealthConfig(check_interval=300, auth_token="tok-abcdef-123456")
        async with (
            SessionManager(SessionManagerConfig(redis_url=url)) as manager,
            SessionHealthCheck(config) as health,
        ):
            await health.initialize(session_manager=manager)
            transport = httpx.ASGITransport(app=health.asgi_app())
            headers = {"Authorization": "Bearer tok-abcdef-123456"}
            async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
                for endpoint in health.get_health_check_endpoints():
                    response = await client.get(endpoint.path)
                    assert response.status_code == 200, endpoint.path
                    assert password not in response.text and "tok-abcdef-123456" not in response.text


async def test_responses_mask_url_credentials_and_known_secrets(manager: SessionManager) -> None:
    async with SessionHealthCheck(HealthConfig(check_interval=300, auth_token="tok-abcdef-123456")) as health:
        text = health.to_json(
            {"output": "cannot reach redis://user:hunter22@db:6379/0 with tok-abcdef-123456"}
        )
    assert "hunter22" not in text and "tok-abcdef-123456" not in text
    assert "redis://user:***@db:6379/0" in text


async def test_replay_recordings_in_progress_come_from_a_real_session_replay(
    health: SessionHealthCheck, manager: SessionManager
) -> None:
    from huddle import SessionReplay

    async with SessionReplay(manager) as replay:
        sid = await manager.create_session("agent-a")
        await replay.start_recording(sid)
        await health.initialize(session_manager=manager, session_replay=replay)
        component = (await health.check_now()).components["replay"]
        assert component.level == "healthy"
        assert component.checks["replay:recordingsInProgress"].observed_value == 1
        await replay.stop_recording(sid)
        after = (await health.check_now()).components["replay"]
        assert after.checks["replay:recordingsInProgress"].observed_value == 0


async def test_migration_sync_lag_is_measured_from_a_real_session_migration(
    health: SessionHealthCheck, manager: SessionManager, own_redis: EmbeddedRedis, redis_server: EmbeddedRedis
) -> None:
    from huddle import MigrationConfig, SessionMigration

    config = MigrationConfig(
        source_url=redis_server.url, target_url=own_redis.url, namespace=manager.config.namespace
    )
    async with SessionMigration(config) as migration:
        sid = await manager.create_session("agent-a")
        await migration.setup_cross_instance_sync(sid, "target", "manual")
        await migration.sync_session(sid)
        for _ in range(3):
            await manager.emit_event(sid, {"type": "modified"}, "agent-a")
        await health.initialize(session_manager=manager, session_migration=migration)
        behind = (await health.check_now()).components["migration"]
        assert behind.checks["migration:syncLinks"].observed_value == 1
        assert behind.checks["migration:syncLagEvents"].observed_value == 3
        assert behind.checks["migration:runningTasks"].observed_value == 0
        await migration.sync_session(sid)
        caught_up = (await health.check_now()).components["migration"]
        assert caught_up.checks["migration:syncLagEvents"].observed_value == 0


async def test_a_least_privilege_acl_user_gets_a_healthy_report(
    health: SessionHealthCheck, own_redis: EmbeddedRedis
) -> None:
    from huddle.backend.acl import create_acl_user

    admin = create_client(SessionManagerConfig(redis_url=own_redis.url))
    await create_acl_user(admin, "huddle-health", "acl-pass-1234", "acl")
    await admin.aclose()
    config = SessionManagerConfig(
        redis_url=own_redis.url, username="huddle-health", password="acl-pass-1234", namespace="acl"
    )
    async with SessionManager(config) as manager:
        await manager.create_session("agent-a")
        await health.initialize(session_manager=manager)
        report = await health.check_now()
        assert report.overall == "healthy", [c.output for c in report.components.values() if c.output]
        assert report.components["sessions"].checks["sessions:active"].observed_value == 1
        assert (await health.check_readiness()).ready


async def test_status_without_any_service_checks_only_this_process() -> None:
    async with SessionHealthCheck(HealthConfig(check_interval=300)) as health:
        report = await health.get_health_status()
    assert report.overall == "healthy"
    assert (
        report.components["redis"].level == "not_configured"
        and report.components["process"].level == "healthy"
    )
    assert (await health.get_health_status()) is report  # closed: the last report, no new I/O


async def test_evictions_since_the_last_check_warn_and_clear(
    health: SessionHealthCheck, own_redis: EmbeddedRedis
) -> None:
    async with SessionManager(SessionManagerConfig(redis_url=own_redis.url)) as manager:
        client = manager.client
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory-policy", "allkeys-random")
        await client.config_set("maxmemory", used + 2 * 1024 * 1024)
        await health.initialize(session_manager=manager)  # first check: the baseline
        first = (await health.check_now()).components["redis"].checks["redis:evictedKeys"]
        assert first.observed_value == 0
        async with client.pipeline(transaction=False) as pipe:
            for i in range(600):
                pipe.set(f"fill:{i}", "x" * 10_000)  # 6 MB into 2 MB of room: the server evicts
            await pipe.execute()
        evicted = (await health.check_now()).components["redis"].checks["redis:evictedKeys"]
        assert isinstance(evicted.observed_value, int) and evicted.observed_value > 0
        assert evicted.level == "warning"
        await client.config_set("maxmemory", 0)  # room again: nothing more is evicted
        await health.check_now()  # may still see evictions made while the previous check ran
        quiet = (await health.check_now()).components["redis"].checks["redis:evictedKeys"]
        assert quiet.observed_value == 0 and quiet.level == "healthy"
