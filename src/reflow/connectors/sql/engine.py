"""SQLAlchemy engines for the sql connector: URL translation, connection, masking."""

from __future__ import annotations

import re
from typing import Any

from reflow.errors import ConnectorError
from reflow.masking import mask_credentials

__all__ = ["connect_engine", "masked_url", "normalize_url", "split_table_name", "with_driver"]

_JDBC = re.compile(r"^jdbc:(?P<kind>[a-z0-9]+):(?P<rest>.*)$")
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def normalize_url(url: str) -> str:
    """Translate ``jdbc:`` URLs and pick the drivers reflow ships with."""
    url = url.strip()
    match = _JDBC.match(url)
    if match:
        kind, rest = match.group("kind"), match.group("rest")
        if kind == "sqlite":
            return f"sqlite:///{rest.removeprefix('//')}"
        url = f"{kind}:{rest}"
    scheme, sep, rest = url.partition("://")
    if sep and scheme in _DRIVERS:
        return f"{_DRIVERS[scheme]}://{rest}"
    if not sep and not url.startswith("sqlite:"):
        raise ValueError(
            f"{url!r} is not a database URL; write e.g. sqlite:///data.db, "
            "postgresql://user@localhost/db or jdbc:mysql://localhost:3306/db"
        )
    return url


_JDBC_DRIVERS = {
    "com.mysql.cj.jdbc.Driver": ("mysql", "pymysql"),
    "com.mysql.jdbc.Driver": ("mysql", "pymysql"),
    "org.mariadb.jdbc.Driver": ("mysql", "pymysql"),
    "org.postgresql.Driver": ("postgresql", "psycopg"),
    "org.sqlite.JDBC": ("sqlite", ""),
}


def with_driver(url: str, driver: str) -> str:
    """``url`` using ``driver``: a DB-API module name (``pymysql``) or a JDBC driver
    class (``com.mysql.cj.jdbc.Driver`` -> PyMySQL), which must fit the URL's database."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = url.partition(":")[0], url.partition(":")[2].removeprefix("//")
    database = scheme.split("+")[0]
    if driver in _JDBC_DRIVERS:
        kind, module = _JDBC_DRIVERS[driver]
        if kind != database:
            raise ValueError(f"driver {driver} is for {kind}, but the URL is for {database}")
    elif driver.replace("_", "").isalnum():
        module = driver
    else:
        raise ValueError(
            f"driver {driver!r} is neither a Python DB-API module (pymysql, psycopg) nor a "
            f"known JDBC driver class ({', '.join(sorted(_JDBC_DRIVERS))})"
        )
    if not module:
        return url
    return f"{database}+{module}://{rest}"


def masked_url(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    return mask_credentials(url)


def split_table_name(name: str) -> tuple[str | None, str]:
    schema, dot, table = name.rpartition(".")
    return (schema or None) if dot else None, table


def connect_engine(options: Any) -> Any:
    """Create an engine and check it connects (blocking; run in the I/O pool).

    Raises:
        ConnectorError: the driver is missing or the server cannot be reached,
            naming the (masked) URL and what to check.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(options.url)
    if options.username is not None:
        url = url.set(username=options.username)
    if options.password is not None:
        url = url.set(password=options.password)
    shown = url.render_as_string(hide_password=True)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() != "sqlite":
        kwargs["pool_size"] = options.pool_size
        if options.pool_recycle is not None:
            kwargs["pool_recycle"] = options.pool_recycle
    try:
        engine = create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise ConnectorError(
            f"sql: the driver for {shown} is not installed ({exc.name}); "
            "pip install 'reflow[postgres]' or 'reflow[mysql]'"
        ) from exc
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConnectorError(
            f"sql: cannot connect to {shown}: {reason}. Check the URL, the credentials and "
            "that the database server is running and reachable"
        ) from exc
    return engine
