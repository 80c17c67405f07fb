"""The ``http`` connector (aiohttp): a source polling a REST API and a sink
sending batches; and the ``webhook`` connector: an endpoint that receives records.

Polling source: each round requests the first page and follows the pagination
(``page`` numbers, ``offset``/``limit``, a ``cursor`` taken from the response, or
the ``Link: <...>; rel="next"`` header) until a page is empty or there is no next
page. ``records_path`` names where the records are in the JSON response
(``data.items``). ``rate_limit`` spaces requests; 429 and 5xx answers and
connection errors are retried with exponential backoff, honouring
``Retry-After``. Without ``interval`` the source reads one round and ends (a
bounded job); with it, it polls again every ``interval``. ``incremental_field``
makes later rounds incremental: the largest value of that field seen so far is
sent as the ``incremental_param`` query parameter and records at or below it are
skipped. The checkpoint position is the next request of the round and that
largest value, so a restore continues where the job was.

Sink: records are sent in batches (``body``: a JSON ``array``, JSON ``lines``,
or one ``record`` per request) with an ``Idempotency-Key`` header derived from
the job, the step and the body, so a retried request can be recognised by the
server. 429/5xx answers and connection errors are retried with backoff; a 4xx
answer splits the batch in halves until the records the server refuses are
found, and those go to the job's error policy (dead letter, skip or fail).

Webhook source: ``POST`` records (a JSON object, an array of objects, or JSON
lines) to ``http://host:port/path``. When ``max_pending`` records wait for the
job, the endpoint answers ``429 Too Many Requests`` with ``Retry-After``
(backpressure reaches the sender); while the job is stopping it answers 503.
A request is answered 200 once its records are in the job -- with checkpoints,
once the checkpoint after them completes -- so a sender that retries until it
gets 200 loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, model_validator

from reflow.connectors.base import (
    BufferedSinkWriter,
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)
from reflow.connectors.messaging import IdleClock, MessageSink, MessageSource, masked_url
from reflow.connectors.options import ConnectorOptions, Duration, OptionsConnector
from reflow.connectors.retry import retry
from reflow.errors import ConnectorError

__all__ = [
    "HttpConnector",
    "HttpSinkOptions",
    "HttpSourceOptions",
    "WebhookConnector",
    "WebhookSourceOptions",
]

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Reading a response in pieces of this size lets the body limit stop an endless one.
READ_CHUNK_BYTES = 64 * 1024


class _HttpOptions(ConnectorOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"auth_token", "password"})

    url: str = Field(description="the endpoint, http(s)://host[:port]/path")
    headers: dict[str, str] = Field(default_factory=dict, description="headers of every request")
    auth_token: str | None = Field(None, description="bearer token (use ${ENV})")
    username: str | None = Field(None, description="basic-auth user")
    password: str | None = Field(None, description="basic-auth password (use ${ENV})")
    timeout: Duration = Field(30.0, description="how long one request may take")
    max_retries: int = Field(
        5, ge=0, description="retries of a request on 429/5xx/connection errors"
    )
    retry_backoff: Duration = Field(0.5, description="first retry delay, doubled each retry")
    max_response_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="largest response body accepted (an endless or huge body fails the step)",
    )

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.auth_token:
            headers["Authorization"] = f"Bearer {self.auth_token}"
        return headers

    def basic_auth(self) -> Any:
        if self.username is None:
            return None
        import aiohttp

        return aiohttp.BasicAuth(self.username, self.password or "")


class HttpSourceOptions(_HttpOptions):
    method: Literal["GET", "POST"] = Field("GET", description="request method")
    params: dict[str, str | int | float] = Field(
        default_factory=dict, description="query parameters of every request"
    )
    records_path: str | None = Field(
        None,
        description="dotted path of the record list in the JSON response (default: the "
        "response itself, a list or one object)",
    )
    pagination: Literal["none", "page", "offset", "cursor", "link"] = Field(
        "none", description="how to get the next page"
    )
    page_param: str = Field("page", description="pagination page: the page-number parameter")
    first_page: int = Field(1, description="pagination page: the first page's number")
    page_size: int = Field(100, gt=0, description="records per page (page, offset)")
    page_size_param: str | None = Field(
        None, description="pagination page: parameter carrying page_size (e.g. per_page)"
    )
    offset_param: str = Field("offset", description="pagination offset: the offset parameter")
    limit_param: str = Field("limit", description="pagination offset: the limit parameter")
    cursor_param: str = Field("cursor", description="pagination cursor: the cursor parameter")
    next_cursor_path: str | None = Field(
        None, description="pagination cursor: dotted path of the next cursor in the response"
    )
    max_pages: int | None = Field(None, gt=0, description="pages per round at most")
    rate_limit: float | None = Field(None, gt=0, description="requests per second at most")
    interval: Duration | None = Field(
        None, description="poll again this long after a round ends (default: one round, bounded)"
    )
    incremental_field: str | None = Field(
        None, description="record field that grows; later rounds ask only for larger values"
    )
    incremental_param: str | None = Field(
        None, description="query parameter carrying the largest value seen (default: the field)"
    )
    stop_when_idle: Duration | None = Field(
        None, description="with interval: end after this long without new records"
    )

    @model_validator(mode="after")
    def _consistent(self) -> HttpSourceOptions:
        if self.pagination == "cursor" and not self.next_cursor_path:
            raise ValueError("pagination: cursor needs next_cursor_path (where the next cursor is)")
        if self.stop_when_idle is not None and self.interval is None:
            raise ValueError("stop_when_idle applies to polling; set interval too")
        return self


class HttpSinkOptions(_HttpOptions):
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="request method")
    body: Literal["array", "lines", "record"] = Field(
        "array",
        description="array: a JSON array per batch; lines: JSON lines per batch; "
        "record: one request per record",
    )
    batch_size: int = Field(500, gt=0, description="records per request (array, lines)")
    flush_interval: Duration | None = Field(1.0, description="send a partial batch after this long")
    concurrency: int = Field(8, gt=0, description="body record: requests in flight at most")
    idempotency_header: str | None = Field(
        "Idempotency-Key", description="header carrying a key derived from the body (None: off)"
    )


def get_path(document: Any, path: str | None) -> Any:
    """``document["a"]["b"]`` for ``"a.b"``; KeyError naming the missing part."""
    if not path:
        return document
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(f"{part!r} of {path!r} is not in the response")
    return node


class _Requester:
    """One aiohttp session with retries, backoff, Retry-After and a rate limit."""

    def __init__(self, options: _HttpOptions, ctx: ConnectorContext, role: str) -> None:
        self.options = options
        self.ctx = ctx
        self.role = role
        self.session: Any = None
        self.rate_limit: float | None = getattr(options, "rate_limit", None)
        self.next_slot = 0.0
        self.reachable: tuple[bool, str] | None = None  # the last request's outcome

    async def health(self) -> tuple[bool, str]:
        """The last request's outcome; before the first (or after a failure), a HEAD probe."""
        import aiohttp

        if self.reachable is not None and self.reachable[0]:
            return self.reachable
        url = self.options.url
        try:
            async with self.session.head(url, timeout=aiohttp.ClientTimeout(total=3)) as answer:
                self.reachable = (True, f"{masked_url(url)} answered {answer.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.reachable = (False, f"cannot reach {masked_url(url)}: {exc!r}")
        return self.reachable

    async def open(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            headers=self.options.request_headers(),
            auth=self.options.basic_auth(),
            timeout=aiohttp.ClientTimeout(total=self.options.timeout),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _pace(self) -> None:
        if self.rate_limit is None:
            return
        clock = self.ctx.clock
        now = clock.now_ms() / 1000
        wait = self.next_slot - now
        self.next_slot = max(now, self.next_slot) + 1.0 / self.rate_limit
        if wait > 0:
            await clock.sleep(wait)

    async def _read_body(self, response: Any, method: str, url: str) -> bytes:
        """The response body, refused once it is longer than ``max_response_bytes``."""
        limit = self.options.max_response_bytes
        declared = response.content_length
        chunks: list[bytes] = []
        size = 0
        if declared is None or declared <= limit:
            async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
        else:
            size = declared
        if size > limit:
            self.ctx.count("oversized")
            raise ConnectorError(
                f"http {self.role}: {method} {masked_url(url)} answered a body of more than "
                f"{limit} bytes; page the requests smaller or raise max_response_bytes"
            )
        return b"".join(chunks)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        first: bool = False,
    ) -> tuple[int, bytes, Any]:
        """(status, body, links) of a final answer (2xx or a non-retryable 4xx).

        Retries 429/5xx and connection errors; ConnectorError once retries are
        spent -- at once for a connection error on the very first request, so a
        server that is down at start is reported without waiting.
        """
        import aiohttp

        opts = self.options

        async def attempt() -> tuple[int, bytes, Any]:
            await self._pace()
            self.ctx.count("requests")
            try:
                async with self.session.request(
                    method, url, params=params, data=data, headers=headers
                ) as response:
                    body = await self._read_body(response, method, url)
                    status = response.status
                    answer = (status, body, response.links)
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.reachable = (False, f"{masked_url(url)}: {exc!r}")
                raise
            self.reachable = (True, f"{masked_url(url)} answered {status}")
            if status in RETRYABLE_STATUS:
                self.ctx.count(f"status_{status}")
                raise _RetryableAnswer(status, body, retry_after)
            return answer

        def retry_on(exc: BaseException) -> bool:
            # A connection error on the very first request fails at once: a server
            # that is down at start is reported without waiting.
            return isinstance(exc, _RetryableAnswer) or not first

        def give_up(exc: BaseException, retries: int) -> BaseException:
            after = f" after {retries} retries"
            if isinstance(exc, _RetryableAnswer):
                return ConnectorError(
                    f"http {self.role}: {method} {masked_url(url)} answered {exc.status} "
                    f"{_snippet(exc.body)}{after}"
                )
            if not isinstance(exc, (aiohttp.ClientError, TimeoutError)):
                return exc
            return ConnectorError(
                f"http {self.role}: cannot reach {masked_url(url)}: {exc!r}"
                + (after if retries else "")
                + ". Check the url and that the server is running"
            )

        return await retry(
            self.ctx,
            attempt,
            what=f"{self.role} {method} {masked_url(url)}",
            retries=opts.max_retries,
            first_delay=opts.retry_backoff,
            max_delay=float("inf"),
            retry_on=retry_on,
            delay_hint=_retry_after,
            give_up=give_up,
        )


class _RetryableAnswer(Exception):
    """A 429/5xx answer: retried."""

    def __init__(self, status: int, body: bytes, retry_after: str | None) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


def _retry_after(exc: BaseException) -> float | None:
    """The seconds a 429/503 answer's ``Retry-After`` asks to wait, if any."""
    if isinstance(exc, _RetryableAnswer) and exc.retry_after is not None:
        with contextlib.suppress(ValueError):
            return float(exc.retry_after)
    return None


def _snippet(body: bytes) -> str:
    text = body[:200].decode(errors="replace").strip()
    return f"({text!r})" if text else ""


class _HttpPollReader(SourceReader):
    def __init__(self, options: HttpSourceOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.http = _Requester(options, ctx, "source")
        self.next: dict[str, Any] | None = None  # the round's next request; None: between rounds
        self.high: Any = None  # the largest incremental_field value seen
        self.pages = 0
        self.rounds = 0
        self.wait_until = 0.0
        self.idle = IdleClock(options.stop_when_idle)
        self.started = False

    def snapshot(self) -> Any:
        return {"next": self.next, "high": self.high, "rounds": self.rounds}

    def restore(self, position: Any) -> None:
        self.next, self.high, self.rounds = position["next"], position["high"], position["rounds"]

    async def open(self) -> None:
        await self.http.open()

    async def close(self) -> None:
        await self.http.close()

    async def health(self) -> tuple[bool, str] | None:
        return await self.http.health()

    def _first_request(self) -> dict[str, Any]:
        opts = self.options
        params: dict[str, Any] = dict(opts.params)
        if opts.incremental_field and self.high is not None:
            params[opts.incremental_param or opts.incremental_field] = self.high
        if opts.pagination == "page":
            params[opts.page_param] = opts.first_page
            if opts.page_size_param:
                params[opts.page_size_param] = opts.page_size
        elif opts.pagination == "offset":
            params[opts.offset_param] = 0
            params[opts.limit_param] = opts.page_size
        return {"url": opts.url, "params": params}

    async def read_batch(self) -> list[Any] | None:
        opts = self.options
        if self.next is None:
            if self.rounds and opts.interval is None:
                return None
            now = self.ctx.clock.now_ms() / 1000
            if now < self.wait_until:
                await self.ctx.clock.sleep(min(self.wait_until - now, 0.2))
                return []
            self.next, self.pages = self._first_request(), 0
        request = self.next
        status, body, links = await self.http.request(
            opts.method, request["url"], params=request["params"], first=not self.started
        )
        self.started = True
        if status >= 400:
            raise ConnectorError(
                f"http source: {opts.method} {masked_url(request['url'])} answered {status} "
                f"{_snippet(body)}; check the url, parameters and credentials"
            )
        self.pages += 1
        try:
            document = orjson.loads(body) if body else None
            found = get_path(document, opts.records_path)
        except (orjson.JSONDecodeError, KeyError) as exc:
            self.ctx.reject(
                body, ValueError(f"http source: page from {masked_url(request['url'])}: {exc}")
            )
            self._end_round()
            return []
        records = found if isinstance(found, list) else [] if found is None else [found]
        received = len(records)
        if opts.incremental_field:
            records = self._newer(records)
        self.next = self._next_request(request, document, links, received)
        if self.next is None or (opts.max_pages is not None and self.pages >= opts.max_pages):
            self._end_round()
        if records:
            self.idle.busy()
        elif self.next is None and self.idle.expired():
            return None
        return records

    def _newer(self, records: list[Any]) -> list[Any]:
        field, high = self.options.incremental_field, self.high
        kept = []
        for record in records:
            try:
                value = record[field]
            except (KeyError, TypeError) as exc:
                self.ctx.reject(record, KeyError(f"incremental_field {field!r} missing: {exc}"))
                continue
            if high is None or value > high:
                kept.append(record)
        for record in kept:
            value = record[field]
            if self.high is None or value > self.high:
                self.high = value
        return kept

    def _end_round(self) -> None:
        self.next = None
        self.rounds += 1
        if self.options.interval is not None:
            self.wait_until = self.ctx.clock.now_ms() / 1000 + self.options.interval

    def _next_request(
        self, request: dict[str, Any], document: Any, links: Any, received: int
    ) -> dict[str, Any] | None:
        opts = self.options
        params = dict(request["params"])
        if opts.pagination == "page":
            if received == 0 or (opts.page_size_param and received < opts.page_size):
                return None
            params[opts.page_param] = int(params[opts.page_param]) + 1
        elif opts.pagination == "offset":
            if received < opts.page_size:
                return None
            params[opts.offset_param] = int(params[opts.offset_param]) + received
        elif opts.pagination == "cursor":
            try:
                cursor = get_path(document, opts.next_cursor_path)
            except KeyError:
                cursor = None
            if cursor in (None, "") or received == 0:
                return None
            params[opts.cursor_param] = cursor
        elif opts.pagination == "link":
            nxt = links.get("next") if links else None
            if nxt is None:
                return None
            return {"url": str(nxt["url"]), "params": {}}
        else:
            return None
        return {"url": request["url"], "params": params}


class _HttpWriter(BufferedSinkWriter):
    def __init__(self, options: HttpSinkOptions, ctx: ConnectorContext) -> None:
        super().__init__(options.batch_size, options.flush_interval)
        self.options = options
        self.ctx = ctx
        self.http = _Requester(options, ctx, "sink")
        self.started = False
        self.content_type = (
            "application/x-ndjson" if options.body == "lines" else "application/json"
        )

    async def open(self) -> None:
        await self.http.open()
        await super().open()

    async def close(self) -> None:
        await super().close()
        await self.http.close()

    async def health(self) -> tuple[bool, str] | None:
        return await self.http.health()

    def _encode(self, records: list[Any]) -> bytes:
        if self.options.body == "lines":
            return b"".join(orjson.dumps(r, default=str) + b"\n" for r in records)
        if self.options.body == "record":
            return orjson.dumps(records[0], default=str)
        return orjson.dumps(records, default=str)

    async def _send(self, records: list[Any]) -> None:
        """Send ``records`` in one request; on a 4xx, halve until the refused ones are found."""
        opts = self.options
        try:
            body = self._encode(records)
        except TypeError as exc:
            if len(records) == 1:
                self.ctx.reject(records[0], exc)
                return
            half = len(records) // 2
            await self._send(records[:half])
            await self._send(records[half:])
            return
        headers = {"Content-Type": self.content_type}
        if opts.idempotency_header:
            digest = hashlib.sha256(
                f"{self.ctx.job_id}/{self.ctx.step_id}/".encode() + body
            ).hexdigest()
            headers[opts.idempotency_header] = digest[:40]
        status, answer, _ = await self.http.request(
            opts.method, opts.url, data=body, headers=headers, first=not self.started
        )
        self.started = True
        self.ctx.count("bytes_sent", len(body))
        if status < 400:
            return
        if len(records) > 1:
            half = len(records) // 2
            await self._send(records[:half])
            await self._send(records[half:])
            return
        self.ctx.count("refused")
        self.ctx.reject(
            records[0],
            ConnectorError(
                f"http sink: {opts.method} {masked_url(opts.url)} refused the record with "
                f"{status} {_snippet(answer)}"
            ),
        )

    async def write_records(self, records: list[Any]) -> None:
        if self.options.body != "record":
            await self._send(records)
            return
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(record: Any) -> None:
            async with gate:
                await self._send([record])

        await asyncio.gather(*(one(r) for r in records))


class WebhookSourceOptions(ConnectorOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"auth_token"})

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(description="port to listen on", ge=1, le=65535)
    path: str = Field("/", description="the endpoint's path")
    auth_token: str | None = Field(
        None, description="require 'Authorization: Bearer <token>' (use ${ENV})"
    )
    max_pending: int = Field(
        10_000, gt=0, description="records waiting for the job before requests get 429"
    )
    retry_after: int = Field(1, ge=0, description="seconds in the Retry-After of a 429 answer")
    stop_when_idle: Duration | None = Field(
        None, description="end the source after this long without a request (a bounded read)"
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="largest request body accepted (larger: 413)"
    )


class _Delivery:
    """One accepted request: its records, and the answer its sender waits for."""

    __slots__ = ("answer", "records")

    def __init__(self, records: list[Any], answer: asyncio.Future[int]) -> None:
        self.records = records
        self.answer = answer


class _WebhookReader(SourceReader):
    def __init__(self, options: WebhookSourceOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.runner: Any = None
        self.queue: deque[_Delivery] = deque()
        self.pending_records = 0
        self.arrived = asyncio.Event()
        self.returned: list[_Delivery] = []
        self.unanswered: dict[int, list[_Delivery]] = {}
        self.idle = IdleClock(options.stop_when_idle)
        self.closing = False

    @property
    def address(self) -> str:
        opts = self.options
        return f"http://{opts.host}:{opts.port}{opts.path}"

    async def open(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=self.options.max_body_bytes)
        app.router.add_post(self.options.path, self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.options.host, self.options.port)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise ConnectorError(
                f"webhook source: cannot listen on {self.options.host}:{self.options.port}: "
                f"{exc}. Choose a free port"
            ) from exc

    async def _receive(self, request: Any) -> Any:
        from aiohttp import web

        opts = self.options
        if self.closing:
            return web.Response(status=503, text="the job is stopping; send again later")
        if opts.auth_token and request.headers.get("Authorization") != f"Bearer {opts.auth_token}":
            self.ctx.count("unauthorized")
            return web.Response(status=401, text="missing or wrong bearer token")
        body = await request.read()
        try:
            records = _parse_webhook_body(body)
        except ValueError as exc:
            self.ctx.count("bad_requests")
            return web.Response(status=400, text=f"not JSON, a JSON array or JSON lines: {exc}")
        if self.pending_records + len(records) > opts.max_pending and self.pending_records:
            self.ctx.count("throttled")
            return web.Response(
                status=429,
                text="the job is behind; send again later",
                headers={"Retry-After": str(opts.retry_after)},
            )
        delivery = _Delivery(records, asyncio.get_running_loop().create_future())
        self.queue.append(delivery)
        self.pending_records += len(records)
        self.arrived.set()
        status = await delivery.answer
        if status != 200:
            return web.Response(status=status, text="the job stopped before your records were safe")
        return web.Response(status=200, text="ok")

    async def read_batch(self) -> list[Any] | None:
        if not self.queue:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.2)
            except TimeoutError:
                if self.idle.expired():
                    return None
                return []
        self.idle.busy()
        out: list[Any] = []
        limit = self.ctx.batch_size
        while self.queue and len(out) < limit:
            delivery = self.queue.popleft()
            self.pending_records -= len(delivery.records)
            out.extend(delivery.records)
            if self.ctx.checkpointing:
                self.returned.append(delivery)
            else:
                _answer(delivery, 200)
        return out

    def on_checkpoint(self, checkpoint_id: int) -> None:
        self.unanswered[checkpoint_id], self.returned = self.returned, []

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        for done in sorted(c for c in self.unanswered if c <= checkpoint_id):
            for delivery in self.unanswered.pop(done):
                _answer(delivery, 200)

    async def health(self) -> tuple[bool, str] | None:
        if self.runner is None or self.closing:
            return False, f"not listening on {self.address}"
        return True, f"listening on {self.address}"

    async def close(self) -> None:
        # What was not answered 200 is answered 503: the sender keeps it and sends it
        # again (with checkpoints, records after the last completed checkpoint may
        # then arrive twice: at-least-once).
        self.closing = True
        leftovers = [*self.queue, *self.returned]
        for deliveries in self.unanswered.values():
            leftovers.extend(deliveries)
        for delivery in leftovers:
            _answer(delivery, 503)
        if self.runner is not None:
            await asyncio.sleep(0)  # let the handlers write their answers
            await self.runner.cleanup()


def _answer(delivery: _Delivery, status: int) -> None:
    if not delivery.answer.done():
        delivery.answer.set_result(status)


def _parse_webhook_body(body: bytes) -> list[Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        lines = [line for line in body.splitlines() if line.strip()]
        if len(lines) < 2:
            raise
        return [orjson.loads(line) for line in lines]
    return document if isinstance(document, list) else [document]


class HttpConnector(OptionsConnector):
    type = "http"
    description = (
        "HTTP APIs (aiohttp): a source polling a REST API with pagination, rate limit and "
        "incremental reads; a sink sending batches with retries and idempotency keys."
    )
    source_options = HttpSourceOptions
    sink_options = HttpSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        opts = self.parse(options, "source", HttpSourceOptions)
        bounded = opts.interval is None or opts.stop_when_idle is not None
        return MessageSource("http", opts, _HttpPollReader, bounded=bounded, parallel=False)

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return MessageSink("http", self.parse(options, "sink", HttpSinkOptions), _http_writer)


def _http_writer(options: HttpSinkOptions, ctx: ConnectorContext) -> SinkWriter:
    return _HttpWriter(options, ctx)


def _webhook_reader(options: WebhookSourceOptions, ctx: ConnectorContext) -> SourceReader:
    return _WebhookReader(options, ctx)


class WebhookConnector(OptionsConnector):
    type = "webhook"
    description = (
        "An HTTP endpoint receiving records (POST JSON, arrays or JSON lines); answers 429 "
        "under backpressure and 200 once the records are safe in the job."
    )
    source_options = WebhookSourceOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        opts = self.parse(options, "source", WebhookSourceOptions)
        return MessageSource(
            "webhook",
            opts,
            _webhook_reader,
            bounded=opts.stop_when_idle is not None,
            parallel=False,
        )

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        self._model("sink")  # raises: the webhook connector has no sink
        raise AssertionError("unreachable")
