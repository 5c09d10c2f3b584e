"""Auto-pipelining: commands issued in the same event-loop tick share one round trip.

redis-py sends one request per pooled connection and waits for its reply, so 50 tasks appending at once pay 50
round trips and 50 pool checkouts. :class:`AutoPipelineRedis` queues the commands its callers issue during one
loop iteration and, on the next one, writes them as one pipeline (no MULTI) on one pooled connection; each reply
(or error reply) is handed to its own caller as soon as it is read. While a batch is on the wire the next one
gathers, and at most ``IN_FLIGHT`` batches run at once, so a burst turns into a few large batches.

What holds (tests/test_autopipeline.py):

- replies never cross: replies are read in the order the commands were written, one future per command;
- an error reply (``HUDDLE ...``, NOSCRIPT, WRONGTYPE) reaches only the caller of that command;
- a caller cancelled before its batch is written is dropped from the batch (nothing is sent for it); one
  cancelled after leaves the others untouched (its reply is read and discarded);
- a connection error re-sends, with the client's own retry policy (attempts, backoff, retried errors), only
  the commands whose replies were not read, exactly as redis-py re-sends a single command; once the retries are
  spent, those callers (and only those) get the error, which huddle's boundary turns into
  ``RedisUnavailableError``. As with redis-py, a command whose reply was lost may have run: huddle's scripts
  take an idempotency token, so the re-sent (or retried) append writes nothing twice.

Blocking commands (``WAIT``, ``XREAD ... BLOCK``, ``BLPOP``...) and connection-state commands (``SELECT``,
``MULTI``, ``WATCH``...) bypass the queue, since they would stall or change the shared connection. Pipelines
and pub/sub are unchanged. Standalone and Sentinel clients batch (a lane reconnects through ``connect()``, so a
Sentinel-managed connection finds the new master after a failover); on Redis Cluster, script calls batch per
node (``huddle.backend.cluster_pipeline``) and every other command takes redis-py's cluster path. A batch's replies share one read deadline
(``socket_timeout``). ``RedisSettings.auto_pipeline=False`` (``HUDDLE_AUTO_PIPELINE=false``) turns it off.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # redis[hiredis] brings it; without it redis-py's packer is used
    _hiredis_pack = None
try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:  # another redis-py layout: every reply goes through Connection.read_response
    _AsyncHiredisParser = None
    _NOT_ENOUGH_DATA = object()

_UTF8 = frozenset({"utf-8", "utf8"})

IN_FLIGHT = 2
"""Batches on the wire at once (each on its own pooled connection): while the server runs one, the client reads
the replies of the other and gathers the next (50 agents, 50-event bursts: 1 lane 17.7k events/s, 2 lanes 27.2k,
4 lanes 27.4k on the 2-core test box)."""

MAX_BATCH = 512
"""Commands per batch at most (more wait for the next batch); bounds the buffers of one write."""

PARK_SECONDS = 0.25
"""An idle lane's connection is kept this long for the next lane (if the pool holds at least PARK_MIN_POOL)."""
PARK_MIN_POOL = 4

_BYPASS = frozenset(
    {
        # blocking: would hold every other command of the batch behind them
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT",
        "WAITAOF", "MONITOR", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "SYNC", "PSYNC", "DEBUG",
        # connection state: would change the shared connection for everyone after them
        "SELECT", "AUTH", "HELLO", "RESET", "QUIT", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
        "CLIENT", "READONLY", "READWRITE", "ASKING", "SHUTDOWN", "FAILOVER",
    }
)  # fmt: skip
_MAYBE_BLOCKING = frozenset({"XREAD", "XREADGROUP"})


_VERDICTS: dict[Any, int] = {}
"""Per command name as callers pass it: 0 bypass, 1 batch, 2 batch unless it has a BLOCK argument."""


def _verdict(name: Any) -> int:
    text = bytes(name).decode() if isinstance(name, bytes | bytearray | memoryview) else str(name)
    word = text.split(" ", 1)[0].upper()
    return 0 if word in _BYPASS else 2 if word in _MAYBE_BLOCKING else 1


def batchable(args: tuple[Any, ...]) -> bool:
    """True when the command may share a pipeline with other callers' commands."""
    name = args[0]
    verdict = _VERDICTS.get(name) if isinstance(name, str | bytes) else None
    if verdict is None:
        verdict = _verdict(name)
        if isinstance(name, str | bytes) and len(_VERDICTS) < 1024:
            _VERDICTS[name] = verdict
    if verdict == 2:
        return not any(
            isinstance(arg, str | bytes) and arg.upper() in ("BLOCK", b"BLOCK") for arg in args[1:]
        )
    return verdict == 1


_Call = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]

_RESENT = ord("r")


class RetryMark(bytearray):
    """The retry mark of one command: ``b"f"`` until the command is packed for the wire, ``b"r"`` after.

    A command whose last argument is ``retry_mark()`` (a view of one of these) has its byte turned into ``r`` when
    an :class:`AutoPipeline` packs it, so every later send of the same command (a re-send after a cut, here or
    on redis-py's cluster path, which packs the same view) tells the server it may be a duplicate (emit.lua's
    modes 'f' and 'r')."""


def retry_mark() -> memoryview:
    """A fresh retry mark (``b"f"``) to pass as a command's last argument."""
    return memoryview(RetryMark(b"f"))


def marks_resends(client: Any) -> bool:
    """True when ``client`` sends batchable commands through an :class:`AutoPipeline` (standalone, Sentinel),
    whose packing flips retry marks; redis-py's own paths (and cluster clients) re-send identical bytes."""
    real = client if isinstance(client, aioredis.Redis) else getattr(client, "resolved", client)
    return getattr(real, "huddle_batcher", None) is not None and getattr(real, "connection", None) is None


def _pack(conn: Any, calls: list[_Call]) -> tuple[list[bytes], list[_Call]]:
    """The wire form of the calls' commands, and the calls that made it (a command that cannot be encoded fails
    its own caller only). hiredis' C packer when the connection encodes text as strict UTF-8 (redis-py's own
    packer costs ~13 µs for an emit's 25 arguments, hiredis ~2 µs); redis-py's otherwise, and for any argument
    type hiredis refuses (redis-py then raises its own error for it, e.g. ``DataError``)."""
    encoder = conn.encoder
    fast = (
        _hiredis_pack if encoder.encoding.lower() in _UTF8 and encoder.encoding_errors == "strict" else None
    )
    chunks: list[bytes] = []
    kept: list[_Call] = []
    for call in calls:
        args = call[0]
        try:
            if fast is not None:
                name = args[0]
                if isinstance(name, str) and " " in name:  # "SCRIPT LOAD": the server wants two arguments
                    args = (*name.split(), *args[1:])
                try:
                    chunks.append(fast(args))
                except (TypeError, ValueError):  # (UnicodeError is a ValueError) let redis-py decide
                    chunks.extend(conn.pack_command(*call[0]))
            else:
                chunks.extend(conn.pack_command(*args))
        except Exception as exc:
            if not call[2].done():
                call[2].set_exception(exc)
            continue
        kept.append(call)
        mark = args[-1]
        if mark.__class__ is memoryview and mark.obj.__class__ is RetryMark:
            mark[0] = _RESENT  # from now on, any send of this command (a re-send) says so
    return chunks, kept


async def _parsed(callback: Any, reply: Any, options: dict[str, Any]) -> Any:
    """What ``Redis.parse_response`` makes of a reply: the command's response callback, with its options."""
    extra = {k: v for k, v in options.items() if k not in (NEVER_DECODE, EMPTY_RESPONSE, "keys")}
    value = callback(reply, **extra)
    return await value if inspect.isawaitable(value) else value


def _hiredis_parser(conn: Any) -> Any | None:
    """The connection's hiredis parser when replies may be taken from its reader directly (RESP2), else None.

    redis-py's ``Connection.read_response`` wraps every reply in two coroutines, a host string formatted per call
    and state checks (13 % of the client's time with 50 agents); a batch's replies arrive back to back, so they
    are taken from the hiredis reader, and the socket read only when it runs dry. What the wrapper would do with
    a reply is done here too: error replies (hiredis hands them over as exceptions) raise, a socket error
    becomes redis-py's ``ConnectionError`` (so the retry policy sees it)."""
    parser = getattr(conn, "_parser", None)
    if (
        _AsyncHiredisParser is None
        or parser.__class__ is not _AsyncHiredisParser
        or getattr(conn, "protocol", 2) not in (2, "2", None)
        or not getattr(parser, "_connected", False)
        or getattr(parser, "_reader", None) is None
    ):
        return None
    return parser


async def _fill(parser: Any) -> None:
    """Read more bytes into the hiredis reader."""
    try:
        await parser.read_from_socket()
    except OSError as exc:  # as redis-py's read_response does: a connection error the retry policy knows
        raise RedisConnectionError(f"Error while reading from Redis: {exc.args}") from exc


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # its caller may have been cancelled meanwhile
        future.set_result(value)


class AutoPipeline:
    """The queue and the lanes of one client (a client belongs to one event loop).

    A lane is a task holding one pooled connection: it takes what is queued, writes it, hands out the replies,
    then gives the callers it woke one loop iteration to queue their next commands, and goes on until a turn finds
    nothing. Up to ``in_flight`` lanes run at once; a lane keeps its connection checked out of the pool while it
    runs (no pool checkout per batch) and returns it when it ends."""

    def __init__(self, source: Any, *, in_flight: int = IN_FLIGHT, max_batch: int = MAX_BATCH) -> None:
        self.source = source
        """Where connections and reply callbacks come from: the client, or one cluster node (cluster_pipeline)."""
        self._in_flight_max = in_flight
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._starting = False  # a lane was created and has not taken its first batch yet
        self._waiting = 0  # lanes giving their callers a turn: they will take what is queued next
        self._lanes = 0
        # A connection the last idle lane kept for the next one (a pool checkout costs ~35 us: redis-py checks
        # the socket), given back to the pool after PARK_SECONDS without a lane.
        self._parked: Any | None = None
        self._unpark: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._callbacks: dict[Any, Any] = {}  # command name -> response callback (None: the reply as is)
        self.batches = 0
        """Batches sent so far (for tests and benchmarks: commands / batches = commands per round trip)."""
        self.commands = 0
        """Commands sent through batches so far."""

    def submit(self, args: tuple[Any, ...], options: dict[str, Any]) -> asyncio.Future[Any]:
        """Queue one command; the future gets its parsed reply (or its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, options, future))
        if not self._starting and not self._waiting and self._lanes < self._in_flight_max:
            # The lane's first step runs on the next loop iteration, after every task woken in this one queued.
            self._starting = True
            self._lanes += 1
            task = loop.create_task(self._lane())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    def _take(self) -> list[_Call]:
        while self._queue:
            batch = [call for call in self._queue[: self._max_batch] if not call[2].done()]
            del self._queue[: self._max_batch]
            if batch:
                return batch
        return []

    async def _lane(self) -> None:
        self._starting = False
        conn, self._parked = self._parked, None
        if self._unpark is not None:
            self._unpark.cancel()
            self._unpark = None
        try:
            while True:
                batch = self._take()
                if not batch:
                    self._waiting += 1
                    try:
                        await asyncio.sleep(0)  # the callers just answered queue their next commands now
                    finally:
                        self._waiting -= 1
                    batch = self._take()
                    if not batch:
                        return
                conn = await self._run(conn, batch)
        finally:
            self._lanes -= 1
            if conn is not None:
                await self._park_or_release(conn)

    async def _park_or_release(self, conn: Any) -> None:
        """Keep an idle lane's connection for the next lane (a caller that awaits one command at a time from
        outside the loop, like the blocking client, starts a lane per call), unless the pool is small: there an
        idle lane never holds a connection another user waits for."""
        pool = self.source.connection_pool
        if (
            self._parked is None
            and getattr(pool, "max_connections", 0) >= PARK_MIN_POOL
            and conn.is_connected
        ):
            self._parked = conn
            self._unpark = asyncio.get_running_loop().call_later(PARK_SECONDS, self._release_parked)
            return
        await pool.release(conn)

    def _release_parked(self) -> None:
        conn, self._parked, self._unpark = self._parked, None, None
        if conn is not None:
            task = asyncio.get_running_loop().create_task(self.source.connection_pool.release(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: Any | None, batch: list[_Call]) -> Any | None:
        """Send one batch (taking a connection first if the lane has none); every caller gets an outcome."""
        try:
            if conn is None:
                pool = self.source.connection_pool
                conn = await pool.get_connection()
            await self._send(conn, batch)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else RedisConnectionError("the batch was interrupted")
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        return conn

    async def _send(self, conn: Any, batch: list[_Call]) -> None:
        """Write the batch and hand out the replies; re-send (retry policy of the connection) what got none."""
        client = self.source
        callbacks = self._callbacks
        pending = batch  # the calls whose replies were not read yet

        async def attempt() -> None:
            nonlocal pending
            live = [call for call in pending if not call[2].done()]
            packed, live = _pack(conn, live)
            pending = live
            if not live:
                return
            if not conn.is_connected:
                # connect() as the pool does (a Sentinel-managed connection asks for the current master there;
                # send_packed_command's own reconnect would dial the old address again)
                await conn.connect()
            self.batches += 1
            self.commands += len(live)
            await conn.send_packed_command(packed, check_health=False)
            parser = _hiredis_parser(conn)
            reader = parser._reader if parser is not None else None
            read = 0
            try:
                # One deadline (socket_timeout) for the batch's replies, which the server writes back to back,
                # instead of a timeout context per reply (a tenth of the client's time per event).
                async with asyncio.timeout(conn.socket_timeout):
                    for args, options, future in live:
                        try:
                            if reader is None:
                                reply = await conn.read_response(
                                    disable_decoding=NEVER_DECODE in options, timeout=math.inf
                                )
                            else:
                                raw = NEVER_DECODE in options
                                reply = reader.gets(False) if raw else reader.gets()
                                while reply is _NOT_ENOUGH_DATA:
                                    await _fill(parser)
                                    reply = reader.gets(False) if raw else reader.gets()
                                if isinstance(reply, RedisError):  # an error reply (or LOADING...)
                                    raise reply
                                if (
                                    reply.__class__ is list
                                    and reply
                                    and isinstance(reply[0], RedisConnectionError)
                                ):
                                    raise reply[0]
                        except ResponseError as exc:  # an error reply: the connection is still in step
                            if EMPTY_RESPONSE in options:
                                _settle(future, options[EMPTY_RESPONSE])
                            elif not future.done():
                                future.set_exception(exc)
                        else:
                            name = args[0]
                            try:
                                callback = callbacks[name]
                            except KeyError:  # (redis-py's callbacks dict is case-insensitive: slow per call)
                                callback = callbacks[name] = client.response_callbacks.get(name)
                            if callback is None:
                                _settle(future, reply)
                            else:
                                try:
                                    _settle(future, await _parsed(callback, reply, options))
                                except Exception as exc:  # the reply was read: only its caller is concerned
                                    if not future.done():
                                        future.set_exception(exc)
                        read += 1
            except BaseException as exc:
                pending = live[read:]  # this reply and the ones after it were not read
                if isinstance(exc, TimeoutError) and not isinstance(exc, RedisTimeoutError):
                    await conn.disconnect(nowait=True)
                    raise RedisTimeoutError("Timeout reading from Redis (socket_timeout)") from None
                raise
            pending = []

        async def failed(error: Exception, failures: int) -> None:
            await conn.disconnect()  # the next attempt reconnects (with the connection's own retries)

        try:
            await conn.retry.call_with_retry(attempt, failed, with_failure_count=True)
        except BaseException:
            await conn.disconnect()  # replies may be left unread: never write on this connection as is
            raise


class AutoPipelineRedis(aioredis.Redis):  # type: ignore[misc]
    """``redis.asyncio.Redis`` whose commands issued in the same loop tick share one pipelined round trip.

    Pipelines, pub/sub and single-connection clients are unchanged; ``auto_pipeline=False`` in the settings
    builds a plain client instead. Like redis-py's, the client stays usable after ``aclose`` (its pool reconnects);
    a batch on the wire when the pool is closed reconnects and re-sends what got no reply, as a redis-py command
    in flight does."""

    huddle_batcher: AutoPipeline | None = None

    def enable_auto_pipeline(self, *, in_flight: int = IN_FLIGHT) -> None:
        """Route batchable commands through a tick-sharing queue from now on."""
        self.huddle_batcher = AutoPipeline(self, in_flight=in_flight)

    def execute_command(self, *args: Any, **options: Any) -> Awaitable[Any]:
        # A plain method returning the future: the command is queued when called (no coroutine per command).
        batcher = self.huddle_batcher
        if batcher is None:
            plain: Awaitable[Any] = super().execute_command(*args, **options)
            return plain
        if self.connection is not None or not batchable(args):
            return self._direct(*args, **options)
        return batcher.submit(args, options)

    async def _direct(self, *args: Any, **options: Any) -> Any:
        """redis-py's own path (blocking and connection-state commands), never losing a cancellation.

        redis-py writes with ``asyncio.wait_for``, which on Python 3.11 drops a cancellation that arrives as the
        write completes: the command then runs on (an ``XREAD BLOCK`` for its whole block time) and returns as if
        nothing happened, so a reader loop cancelled at that moment would never stop. A cancellation that
        arrived during the command and was not raised is raised here."""
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        reply = await aioredis.Redis.execute_command(self, *args, **options)
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError
        return reply


def batcher_of(client: Any) -> AutoPipeline | None:
    """The tick-sharing queue behind ``client`` (a built client, or an ``AutoClient`` once resolved)."""
    real = client if isinstance(client, aioredis.Redis) else getattr(client, "resolved", client)
    return getattr(real, "huddle_batcher", None)
