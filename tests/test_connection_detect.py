"""Cluster auto-detection (``cluster`` unset) never blocks the event loop and explicit modes never probe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.autodetect import AutoClient
from huddle.backend.connection import create_client, is_cluster, ready, topology
from huddle.backend.topology import EmbeddedCluster
from huddle.errors import RedisUnavailableError


class SilentServer:
    """A TCP server in the test's own event loop that records what it receives and never answers."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.got_bytes = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while chunk := await reader.read(4096):
            self.received.extend(chunk)
            self.got_bytes.set()

    async def __aenter__(self) -> SilentServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"


def config(url: str, **overrides: object) -> SessionManagerConfig:
    return SessionManagerConfig(redis_url=url, namespace=f"t{uuid.uuid4().hex[:8]}", **overrides)  # type: ignore[arg-type]


async def test_building_a_manager_with_cluster_unset_contacts_no_server() -> None:
    async with SilentServer() as silent:
        manager = SessionManager(config(silent.url, connect_timeout=1, socket_timeout=1))
        await asyncio.sleep(0.05)  # give a (wrongly) started connection time to arrive
        assert silent.connections == 0 and isinstance(manager.client, AutoClient)
        await manager.close()


async def test_detection_is_awaited_so_the_loop_serves_other_tasks_meanwhile() -> None:
    """The silent server runs in this loop: it reads the probe's first bytes while the detection is still
    pending, which a blocking probe (done, or failed, before the loop could run again) cannot allow."""
    async with SilentServer() as silent:
        manager = SessionManager(config(silent.url, connect_timeout=5, socket_timeout=5, retry_attempts=0))
        connecting = asyncio.create_task(manager.connect())
        async with asyncio.timeout(10):
            await silent.got_bytes.wait()
        assert isinstance(manager.client, AutoClient) and manager.client.resolved is None
        assert not connecting.done()
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        await manager.close()


async def test_explicit_cluster_false_builds_a_plain_client_without_any_probe() -> None:
    async with SilentServer() as silent:
        client = create_client(config(silent.url, cluster=False))
        assert isinstance(client, aioredis.Redis) and not isinstance(client, AutoClient)
        await asyncio.sleep(0.05)
        assert silent.connections == 0
        await client.aclose()


async def test_an_unreachable_server_at_detection_is_unavailable_and_nothing_is_remembered() -> None:
    async with SilentServer() as silent:
        url = silent.url
    manager = SessionManager(config(url, connect_timeout=1, socket_timeout=1, retry_attempts=0))
    with pytest.raises(RedisUnavailableError):
        await manager.connect()
    assert isinstance(manager.client, AutoClient) and manager.client.resolved is None
    await manager.close()


async def test_a_detected_answer_is_shared_while_the_client_that_got_it_is_open(
    redis_server: EmbeddedRedis,
) -> None:
    cfg = config(redis_server.url)
    async with SessionManager(cfg) as manager:
        sid = await manager.create_session("alpha")
        first = await manager.emit_event(sid, {"type": "modified"}, "alpha")
        assert await manager.emit_event(sid, {"type": "modified"}, "alpha") == first + 1
        assert topology(manager.client) == "standalone"
        again = create_client(cfg)  # e.g. the replay or health client of this manager
        assert isinstance(again, aioredis.Redis)  # the answer was remembered: no proxy, no probe
        await again.aclose()
    later = create_client(cfg)  # every client that asked is closed: the next one asks again
    assert isinstance(later, AutoClient)
    await later.aclose()


async def test_scripts_registered_before_detection_have_the_real_sha_and_run(
    redis_server: EmbeddedRedis,
) -> None:
    fresh = EmbeddedRedis().start()  # a server nobody asked yet
    try:
        client = create_client(config(fresh.url))
        assert isinstance(client, AutoClient)
        script = client.register_script("return ARGV[1]")
        plain = aioredis.Redis.from_url(fresh.url, decode_responses=True)
        assert script.sha == plain.register_script("return ARGV[1]").sha
        assert await script(args=["hi"]) == "hi"
        await plain.aclose()
        await client.aclose()
    finally:
        fresh.stop()


async def test_a_synchronous_method_used_first_still_works_through_the_fallback() -> None:
    fresh = EmbeddedRedis().start()
    try:
        client = create_client(config(fresh.url))
        async with client.pipeline(
            transaction=False
        ) as pipe:  # pipeline() cannot await: short blocking probe
            pipe.set("k", "v").get("k")
            assert await pipe.execute() == [True, "v"]
        assert not is_cluster(client)
        await client.aclose()
    finally:
        fresh.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=0) as local:
        yield local


@pytest.fixture
async def node_url_manager(cluster: EmbeddedCluster) -> AsyncIterator[SessionManager]:
    """A manager given a plain node URL of the cluster (no ``cluster`` option)."""
    async with SessionManager(config(f"redis://127.0.0.1:{cluster.ports[1]}/0")) as manager:
        yield manager


@pytest.mark.cluster
async def test_a_cluster_node_url_is_detected_asynchronously_and_every_slot_works(
    cluster: EmbeddedCluster, node_url_manager: SessionManager
) -> None:
    manager = node_url_manager
    assert isinstance(await ready(manager.client), RedisCluster)
    sids = cluster.ids_on_every_master(lambda sid: manager.keys.session(sid).meta, per_master=1)
    for sid in sids:
        await manager.create_session("alpha", session_id=sid)
        first = await manager.emit_event(sid, {"type": "modified"}, "alpha")
        assert await manager.emit_event(sid, {"type": "modified"}, "alpha") == first + 1
    assert await manager.store.publish_command() in ("SPUBLISH", "PUBLISH")
    assert topology(manager.client) == "cluster"


async def test_the_health_redactor_reads_an_undetected_clients_password_without_contacting_it() -> None:
    from huddle.health.redact import secrets_of_client

    async with SilentServer() as silent:
        client = create_client(config(silent.url, password="s3cret-pass"))
        assert secrets_of_client(client) == ["s3cret-pass"]
        await asyncio.sleep(0.05)
        assert silent.connections == 0 and isinstance(client, AutoClient) and client.resolved is None
        await client.aclose()
