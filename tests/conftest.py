"""Shared fixtures: real database servers (skipped when absent, failing in CI)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import OwnedServer

IN_CI = os.environ.get("CI", "").lower() == "true"

# Checkpoints are signed with a key made on first use: the tests (and the
# processes they start, which inherit this) use one of their own.
if not os.environ.get("REFLOW_CHECKPOINT_KEY_FILE"):
    import tempfile

    os.environ["REFLOW_CHECKPOINT_KEY_FILE"] = os.path.join(
        tempfile.mkdtemp(prefix="reflow-key-"), "checkpoint.key"
    )

POSTGRES = ("127.0.0.1", 5432)
MARIADB = ("127.0.0.1", 3306)


def _reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, address: tuple[str, int]) -> None:
    """Skip (or, in CI, fail) when the server at ``address`` does not answer."""
    if _reachable(address):
        return
    message = f"{name} is not reachable on {address[0]}:{address[1]} (see ../shared/SERVICES.md)"
    if IN_CI:
        pytest.fail(f"{message}; CI needs every server running")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    require_server("PostgreSQL", POSTGRES)
    import sqlalchemy as sa

    name = f"reflow_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database, dropped afterwards."""
    require_server("MariaDB", MARIADB)
    import sqlalchemy as sa

    name = f"reflow_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite, PostgreSQL and MariaDB."""
    fixture = {"sqlite": "sqlite_url", "postgres": "postgres_url", "mariadb": "mariadb_url"}
    return str(request.getfixturevalue(fixture[request.param]))


def _free_port() -> int:
    """A free loopback port below the ephemeral range (see SERVICES.md)."""
    import random

    for _ in range(50):
        port = random.randint(20_000, 32_000)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto) on loopback, for the whole test session."""
    import shutil
    import subprocess
    import time

    # The test environment's own moto first: another one on PATH may be a version
    # whose multipart answers the AWS C++ SDK rejects (see pyproject.toml).
    own = __import__("pathlib").Path(__import__("sys").executable).parent / "moto_server"
    binary = str(own) if own.exists() else shutil.which("moto_server") or "moto_server"
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not _reachable(("127.0.0.1", port)):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the S3 test server (moto_server) did not start")
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the test S3 server; AWS_* settings point at it."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"reflow-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def start_serve(folder: object, *args: str, log: Any = None) -> tuple[Any, str]:
    """Start ``reflow serve`` on a free loopback port with ``args``; returns (process, URL)
    once ``/health/live`` answers. ``log``: a file for its stderr (the log lines).
    The caller terminates the process."""
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reflow",
            "serve",
            "--store",
            f"sqlite:///{folder}/jobs.db",
            "--port",
            str(port),
            *args,
        ],
        cwd=str(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if log is None else log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/health/live").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("reflow serve did not start")
        time.sleep(0.1)


REDIS = ("127.0.0.1", 6379)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the shared Redis server; its keys are deleted afterwards."""
    require_server("Redis", REDIS)
    import redis

    prefix = f"reflow-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis(host=REDIS[0], port=REDIS[1])
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _free_low_port() -> int:
    """A free loopback port below the ephemeral range (brokers advertise it)."""
    import random

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


KAFKA_DATA_DIRS: dict[str, str] = {}
"""bootstrap address -> data folder of the test run's broker (for outage tests)."""


def kafka_outage(bootstrap: str, seconds: float) -> None:
    """Stop the test run's Kafka broker, wait, and start it again (its data is kept)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    binary = str(Path(sys.executable).parent / "noida-db")
    folder = KAFKA_DATA_DIRS[bootstrap]
    subprocess.run([binary, "stop", "kafka", "--data-dir", folder], check=True, capture_output=True)
    time.sleep(seconds)
    subprocess.run(
        [binary, "start", "kafka", "--data-dir", folder], check=True, capture_output=True
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker (noida-db, from the dev install) owned by this test run."""
    import shutil
    import subprocess
    import sys
    import time
    from pathlib import Path

    binary = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
    if not Path(binary).exists():
        message = "the Kafka-protocol broker noida-db is not installed (pip install -e '.[dev]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = _free_low_port()
    data = tmp_path_factory.mktemp("kafka")
    log = open(data / "broker.log", "wb")  # noqa: SIM115 -- closed after the broker stops
    proc = subprocess.Popen(
        [
            binary,
            "start",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while not _reachable(("127.0.0.1", port)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            message = f"Kafka broker (noida-db) did not start: {(data / 'broker.log').read_text()}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        time.sleep(0.05)
    KAFKA_DATA_DIRS[f"127.0.0.1:{port}"] = str(data)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        # The server outlives a terminated `start` process: stop it by its data folder.
        subprocess.run(
            [binary, "down", "--data-dir", str(data)], capture_output=True, check=False, timeout=30
        )
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


RABBITMQ = ("127.0.0.1", 5672)
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
def rabbitmq_queue() -> Iterator[str]:
    """A fresh queue name on the shared RabbitMQ server; the queue is deleted afterwards."""
    require_server("RabbitMQ", RABBITMQ)
    import asyncio

    name = f"reflow-test-{uuid.uuid4().hex[:12]}"
    yield name

    async def delete() -> None:
        import aio_pika

        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name)

    asyncio.run(delete())


NATS = ("127.0.0.1", 4222)


@pytest.fixture
def nats_stream() -> Iterator[str]:
    """A fresh JetStream stream name on the shared NATS server; deleted afterwards."""
    require_server("NATS", NATS)
    import asyncio

    name = f"reflow_test_{uuid.uuid4().hex[:12]}"
    yield name

    async def delete() -> None:
        import nats

        client = await nats.connect("nats://127.0.0.1:4222")
        with contextlib.suppress(Exception):  # the test may not have created it
            await client.jetstream().delete_stream(name)
        await client.close()

    asyncio.run(delete())


MOSQUITTO = ("127.0.0.1", 1883)


@pytest.fixture
def mqtt_topic() -> str:
    """A fresh topic on the shared Mosquitto server (MQTT topics need no cleanup)."""
    require_server("Mosquitto (MQTT)", MOSQUITTO)
    return f"reflow-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def mosquitto_unlimited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Mosquitto broker of this test run configured for high volume: no in-flight
    window and no queue limit (the shared one keeps Mosquitto's defaults of 20 and
    1000, which drop QoS 1 messages for a subscriber 1,020 messages behind)."""
    import shutil
    import subprocess
    import time

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        message = "the Mosquitto broker binary is not installed (Debian package mosquitto)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = _free_low_port()
    folder = tmp_path_factory.mktemp("mosquitto")
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\n"
    )
    log = open(folder / "broker.log", "wb")  # noqa: SIM115 -- closed after the broker stops
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not _reachable(("127.0.0.1", port)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            message = f"Mosquitto did not start: {(folder / 'broker.log').read_text()}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def source_blocked(executor: Any, job_id: str) -> None:
    """Until a subtask of the job running on the LocalExecutor ``executor`` waits on
    a full channel (its source is backpressured)."""
    while not executor.is_running(job_id) or not any(
        s.blocked_since_ns for s in executor.execution(job_id).subtasks
    ):
        await asyncio.sleep(0.01)


def _unavailable(message: str) -> None:
    """Skip the test, or fail it in CI (where every server must be there)."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _mongodb_answers(port: int) -> bool:
    import pymongo

    client: Any = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=200
    )
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def mongodb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedServer]:
    """A MongoDB wire-protocol server owned by this test run: SecantusDB (from the dev
    install; a single-node replica set with change streams and transactions), its data
    on disk so that ``stop()``/``start()`` is an outage that keeps it."""
    import shutil
    import sys
    from pathlib import Path

    from tests.servers import ServerDidNotStart

    binary = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    if not Path(binary).exists():
        _unavailable(
            "the MongoDB wire-protocol server SecantusDB is not installed (pip install -e '.[dev]')"
        )
    port = _free_low_port()
    folder = tmp_path_factory.mktemp("mongodb")
    server = OwnedServer(
        "MongoDB (SecantusDB)",
        [binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(folder / "db")],
        port,
        folder,
        ready=lambda: _reachable(("127.0.0.1", port)) and _mongodb_answers(port),
        url=f"mongodb://127.0.0.1:{port}/?directConnection=true",
    )
    try:
        server.start()
    except ServerDidNotStart as exc:
        _unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mongodb_url(mongodb_server: OwnedServer) -> str:
    return mongodb_server.url


@pytest.fixture
def mongodb_database(mongodb_url: str) -> Iterator[str]:
    """A fresh database name on the test run's MongoDB server, dropped afterwards."""
    import pymongo

    name = f"reflow_{uuid.uuid4().hex[:10]}"
    yield name
    client: Any = pymongo.MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    with contextlib.suppress(pymongo.errors.PyMongoError):
        client.drop_database(name)
    client.close()


CLICKHOUSE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), ".venv", "clickhouse")


def _clickhouse_answers(port: int) -> bool:
    from clickhouse_driver import Client

    client = Client(host="127.0.0.1", port=port, connect_timeout=0.5)
    try:
        client.execute("SELECT 1")
        return True
    except Exception:
        return False
    finally:
        client.disconnect()


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedServer]:
    """Debian's ClickHouse server (18.16, unpacked by scripts/clickhouse-server) owned
    by this test run, on its own ports; ``stop()``/``start()`` keep its data."""
    import re
    from pathlib import Path

    from tests.servers import ServerDidNotStart

    root = Path(CLICKHOUSE_DIR)
    binary = root / "usr/sbin/clickhouse-server"
    if not binary.exists():
        _unavailable(
            "the ClickHouse server is not unpacked (run scripts/clickhouse-server; it needs "
            "root and apt-get)"
        )
    port, http, interserver = _free_low_port(), _free_low_port(), _free_low_port()
    folder = tmp_path_factory.mktemp("clickhouse")
    config = (root / "etc/clickhouse-server/config.xml").read_text()
    config = config.replace("/var/log/clickhouse-server", str(folder / "log"))
    config = config.replace("/var/lib/clickhouse", str(folder / "data"))
    config = re.sub(r"<tcp_port>\d+</tcp_port>", f"<tcp_port>{port}</tcp_port>", config)
    config = re.sub(r"<http_port>\d+</http_port>", f"<http_port>{http}</http_port>", config)
    config = re.sub(
        r"<interserver_http_port>\d+</interserver_http_port>",
        f"<interserver_http_port>{interserver}</interserver_http_port>",
        config,
    )
    config = config.replace("<listen_host>::1</listen_host>", "")
    (folder / "config.xml").write_text(config)
    (folder / "users.xml").write_text((root / "etc/clickhouse-server/users.xml").read_text())
    libs = str(root / "usr/lib/x86_64-linux-gnu")
    server = OwnedServer(
        "ClickHouse 18.16",
        [str(binary), f"--config-file={folder / 'config.xml'}"],
        port,
        folder,
        ready=lambda: _reachable(("127.0.0.1", port)) and _clickhouse_answers(port),
        env={**os.environ, "LD_LIBRARY_PATH": libs},
        url=f"clickhouse://default@127.0.0.1:{port}",
        stop_timeout=2.0,  # it waits ~15 s for running queries on SIGTERM; then SIGKILL
    )
    try:
        server.start()
    except ServerDidNotStart as exc:
        _unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clickhouse_database(clickhouse_server: OwnedServer) -> Iterator[str]:
    """A fresh database on the test run's ClickHouse server, dropped afterwards."""
    from clickhouse_driver import Client

    name = f"reflow_{uuid.uuid4().hex[:10]}"
    client = Client(host="127.0.0.1", port=clickhouse_server.port)
    client.execute(f"CREATE DATABASE {name}")
    yield name
    client.execute(f"DROP DATABASE IF EXISTS {name}")
    client.disconnect()


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The in-process ClickHouse engine's folder for this test run (chdb hosts one
    folder per process: every test shares it, each in a database of its own)."""
    try:
        import chdb  # noqa: F401
    except ImportError:
        _unavailable("chdb (the in-process ClickHouse engine) is not installed (.[dev])")
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def chdb_database(chdb_url: str) -> Iterator[str]:
    import chdb

    conn = chdb.connect(chdb_url.removeprefix("chdb://"))  # type: ignore[no-untyped-call]
    name = f"reflow_{uuid.uuid4().hex[:10]}"
    conn.query(f"CREATE DATABASE {name}")
    yield name
    conn.query(f"DROP DATABASE IF EXISTS {name}")
    conn.close()
