"""Performance recommendations, each with its reason; measured from stored sessions where possible."""

from __future__ import annotations

import importlib
import statistics

from redis.exceptions import RedisError

from ..backend.connection import RedisClient
from ..config import SessionManagerConfig
from ..core.keys import KeySpace
from .findings import Findings
from .models import ServerFacts

SAMPLE_PER_SHARD = 10
FAST_CHECKPOINTS_S = 1.0
SLOW_CHECKPOINTS_S = 600.0


def hiredis_available() -> bool:
    """True when the hiredis reply parser can be imported."""
    try:
        importlib.import_module("hiredis")
    except ImportError:
        return False
    return True


def check_static(config: SessionManagerConfig, findings: Findings, expected_concurrency: int | None) -> None:
    """Recommendations the settings alone justify."""
    if hiredis_available():
        findings.check("hiredis", "pass", "the C reply parser is installed")
    else:
        findings.check("hiredis", "warn", "hiredis is not installed")
        findings.recommend(
            "install_hiredis", "performance", "pip install 'redis[hiredis]'",
            "redis-py then parses replies in C instead of Python, which matters for XRANGE/XREAD batches", "high",
        )  # fmt: skip
    if config.enable_auto_checkpoint and config.checkpoint_interval == 1:
        findings.recommend(
            "checkpoint_every_event", "performance", "raise checkpoint_interval above 1",
            "a checkpoint after every event doubles the writes of each append",
        )  # fmt: skip
    if not config.enable_auto_checkpoint:
        findings.recommend(
            "auto_checkpoint_off", "performance", "enable auto checkpoints (enable_auto_checkpoint=true)",
            "without them the last checkpoint of a busy session can be arbitrarily old", "low",
        )  # fmt: skip
    if config.index_refresh_ms == 0:
        findings.recommend(
            "index_refresh_every_event", "performance", "set index_refresh_ms to ~1000",
            "0 updates the activity index on every event: one more write per append for a listing that rarely "
            "needs millisecond freshness", "low",
        )  # fmt: skip
    if expected_concurrency is not None and expected_concurrency > config.max_connections:
        findings.warning(
            "pool_smaller_than_concurrency", "performance",
            f"{expected_concurrency} concurrent operations share max_connections={config.max_connections}: the "
            f"rest wait up to pool_timeout={config.pool_timeout:g}s for a connection, then fail",
            "max_connections",
        )  # fmt: skip
    if config.socket_timeout < 0.5:
        findings.warning(
            "socket_timeout_short", "performance",
            f"socket_timeout {config.socket_timeout:g}s: a busy server or a slow network makes calls time out "
            "and retry", "socket_timeout",
        )  # fmt: skip


def check_server_capacity(config: SessionManagerConfig, facts: ServerFacts, findings: Findings) -> None:
    """Pool size against the server's client limit and current load."""
    if facts.maxclients is None:
        findings.check(
            "client capacity",
            "unknown",
            f"could not check: {facts.unknown.get('maxclients', 'not reported')}",
        )
        return
    if config.max_connections > facts.maxclients:
        findings.warning(
            "pool_exceeds_maxclients", "performance",
            f"max_connections={config.max_connections} per client exceeds the server's maxclients "
            f"({facts.maxclients})", "max_connections",
        )  # fmt: skip
    used = facts.connected_clients or 0
    share = used / facts.maxclients
    findings.check(
        "client capacity",
        "warn" if share >= 0.8 else "pass",
        f"{used} of {facts.maxclients} client connections in use",
    )
    if share >= 0.8:
        findings.recommend(
            "maxclients_nearly_used", "performance", "raise maxclients or lower max_connections per process",
            f"{used}/{facts.maxclients} connections are in use; new clients are refused at the limit", "high",
        )  # fmt: skip


async def check_event_rate(client: RedisClient, config: SessionManagerConfig, findings: Findings) -> None:
    """Checkpoint interval against the measured event rate of the most recently active sessions."""
    keys = KeySpace(config.namespace, config.index_shards)
    try:
        sampled: list[str] = []
        for index in keys.active_indexes():
            sampled.extend(await client.zrevrange(index, 0, SAMPLE_PER_SHARD - 1))
        rates = []
        for sid in sampled:
            seq, created, updated = await client.hmget(keys.session(sid).meta, ["seq", "created", "updated"])
            if seq is None or created is None or updated is None:
                continue
            age = (int(updated) - int(created)) / 1000
            if int(seq) >= 2 and age > 0:
                rates.append(int(seq) / age)
    except RedisError as exc:
        findings.check("event rate", "unknown", f"could not measure: {exc}")
        return
    if not rates:
        findings.check(
            "event rate", "skipped", f"no active session in namespace {config.namespace!r} to measure"
        )
        return
    rate = statistics.median(rates)
    every = config.checkpoint_interval / rate
    detail = f"median {rate:.2f} events/s over {len(rates)} session(s): a checkpoint every {every:.1f}s"
    findings.check("event rate", "pass", detail)
    if config.enable_auto_checkpoint and every < FAST_CHECKPOINTS_S:
        findings.recommend(
            "checkpoints_too_frequent", "performance",
            f"raise checkpoint_interval to about {max(int(rate * 5), config.checkpoint_interval + 1)}",
            f"{detail}; each checkpoint is an extra write of the session state", "medium",
        )  # fmt: skip
    elif config.enable_auto_checkpoint and every > SLOW_CHECKPOINTS_S:
        findings.recommend(
            "checkpoints_too_rare", "performance",
            f"lower checkpoint_interval to about {max(int(rate * 60), 1)}",
            f"{detail}; state since the last checkpoint must be rebuilt from the log after a failure", "low",
        )  # fmt: skip
