"""A SQL script read into table definitions and queries (sqlglot does the parsing).

Flink's streaming spellings that sqlglot's grammar does not know are rewritten
in place first, at the token level and keeping every other character where it
was, so sqlglot's line:column positions stay those of the user's file:

- ``CREATE SOURCE`` / ``CREATE SINK`` become ``CREATE TABLE`` with that role;
- ``WATERMARK FOR ts AS ts - INTERVAL '5' SECOND`` is taken out of the column
  list and kept as the table's watermark (column, delay);
- ``TUMBLE(TABLE bids, DESCRIPTOR(ts), ...)`` loses ``TABLE`` and ``DESCRIPTOR``,
  so both the Flink TVF form and ``TUMBLE(bids, ts, ...)`` read the same;
- ``EXECUTE STATEMENT SET BEGIN ... END;`` and ``BEGIN STATEMENT SET; ... END;`` lose
  their frame: every ``INSERT`` of a script runs in one job anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.parser import IsPredicatePrecedence
from sqlglot.parsers.base import BaseParser
from sqlglot.tokenizer_core import Token, TokenType
from sqlglot.tokens import Tokenizer

from reflow.table.expressions import SqlError, fail, interval_ms, position

__all__ = ["Script", "SqlColumn", "TableDef", "parse_script"]

WINDOW_FUNCTIONS = {"TUMBLE", "HOP", "SESSION", "CUMULATE"}


class _ReflowParser(BaseParser):
    # IS [NOT] NULL/TRUE/FALSE binds looser than comparisons, as in the SQL standard,
    # Calcite (Flink), PostgreSQL and DuckDB: `a > 3 IS TRUE` is `(a > 3) IS TRUE`
    # (the default grammar read `a > (3 IS TRUE)`).
    IS_PREDICATE_PRECEDENCE = IsPredicatePrecedence.LOW
    # TIMESTAMPDIFF(unit, start, end) as Flink writes it: the default grammar reads
    # (start, end, unit) and upper-cases a column in the unit's place.
    FUNCTIONS = {
        **BaseParser.FUNCTIONS,
        "TIMESTAMPDIFF": lambda args: exp.Anonymous(this="TIMESTAMPDIFF", expressions=args),
    }


class _ReflowTokenizer(Tokenizer):
    # Flink quotes identifiers with backticks (`timestamp`); double quotes work too.
    IDENTIFIERS = ['"', "`"]
    # EXECUTE starts Flink's EXECUTE STATEMENT SET BEGIN ... END, not a command whose
    # text is one token.
    COMMANDS = Tokenizer.COMMANDS - {TokenType.EXECUTE}


class _ReflowDialect(Dialect):
    """sqlglot's default grammar, read as Flink reads it where they differ: backtick
    identifiers, IS binding looser than comparisons, TIMESTAMPDIFF's arguments."""

    parser_class = _ReflowParser
    Tokenizer = _ReflowTokenizer  # the name sqlglot's dialects look up


@dataclass(frozen=True, slots=True)
class SqlColumn:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class TableDef:
    """``CREATE TABLE name (columns) WITH (options)``: a connector and its schema."""

    name: str
    columns: tuple[SqlColumn, ...]
    connector: str
    options: dict[str, Any]
    watermark: tuple[str, int] | None = None
    """(time column, allowed delay in ms) from ``WATERMARK FOR``."""
    role: Literal["table", "source", "sink"] = "table"
    line: int | None = None
    lookup: dict[str, Any] = field(default_factory=dict)
    """'lookup.*' options of a table read by lookup joins ('lookup.cache.ttl')."""


@dataclass(slots=True)
class Script:
    """The statements of a SQL file, in order."""

    tables: dict[str, TableDef] = field(default_factory=dict)
    inserts: list[tuple[str, exp.Query]] = field(default_factory=list)
    """(target table, query) of each ``INSERT INTO``."""
    queries: list[exp.Query] = field(default_factory=list)
    """Bare queries (``reflow sql`` prints their rows)."""
    settings: dict[str, tuple[str, exp.Expr]] = field(default_factory=dict)
    """``SET 'key' = 'value'``: the value and the statement (for its position)."""
    functions: dict[str, tuple[str, exp.Expr]] = field(default_factory=dict)
    """``CREATE FUNCTION name AS 'module:function'``, by upper-case name."""
    views: dict[str, exp.Query] = field(default_factory=dict)
    """``CREATE [TEMPORARY] VIEW name AS SELECT ...``: planned where it is read."""
    insert_columns: dict[int, tuple[list[str], exp.Expr]] = field(default_factory=dict)
    """``INSERT INTO t (a, b) SELECT ...``: the target columns of insert *i*, in order."""


def _blank(chars: list[str], start: int, end: int) -> None:
    for i in range(start, end + 1):
        if chars[i] != "\n":
            chars[i] = " "


def _words(tokens: list[Token], start: int, count: int) -> list[str]:
    return [t.text.upper() for t in tokens[start : start + count]]


def _rewrite(text: str) -> tuple[str, dict[int, tuple[str, str]], dict[int, str]]:
    """The text with the Flink spellings rewritten; the watermark clauses found, by the
    index of their CREATE statement: (column, delay expression text); and the role
    (source/sink) of each ``CREATE SOURCE/SINK`` by statement index."""
    try:
        tokens: list[Token] = _ReflowTokenizer().tokenize(text)
    except TokenError as exc:
        raise SqlError(f"cannot read the SQL: {exc}") from None
    chars = list(text)
    watermarks: dict[int, tuple[str, str]] = {}
    roles: dict[int, str] = {}
    statement = 0
    depth = 0
    in_create = False
    calls: list[str | None] = []  # the function each open parenthesis belongs to
    renamed: list[tuple[int, int]] = []  # SOURCE/SINK words to spell TABLE
    in_set = False  # inside Flink's statement set: its INSERTs run as one job, as all do
    i = 0
    while i < len(tokens):
        token = tokens[i]
        kind, word = token.token_type, token.text.upper()
        opening = _words(tokens, i, 4) == ["EXECUTE", "STATEMENT", "SET", "BEGIN"] or (
            _words(tokens, i, 4) == ["BEGIN", "STATEMENT", "SET", ";"]
        )
        if opening and not in_set:
            last = i + 3 if word == "EXECUTE" else i + 2  # the ';' after BEGIN ... SET stays
            _blank(chars, token.start, tokens[last].end)
            in_set = True
            i = last + 1
            continue
        if (
            in_set
            and kind is TokenType.END
            and (i == 0 or tokens[i - 1].token_type is TokenType.SEMICOLON)
        ):
            _blank(chars, token.start, token.end)
            in_set = False
        elif kind is TokenType.SEMICOLON:
            statement += 1
            in_create = False
            depth = 0
            calls.clear()
        elif kind is TokenType.CREATE:
            in_create = True
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is not None and nxt.text.upper() in {"SOURCE", "SINK"}:
                roles[statement] = nxt.text.lower()
                renamed.append((nxt.start, nxt.end))
        elif kind is TokenType.L_PAREN:
            prev = tokens[i - 1] if i else None
            calls.append(prev.text.upper() if prev is not None else None)
            depth += 1
        elif kind is TokenType.R_PAREN:
            if calls:
                calls.pop()
            depth -= 1
        elif (
            in_create
            and depth == 1
            and word == "WATERMARK"
            and i + 3 < len(tokens)
            and tokens[i + 1].token_type is TokenType.FOR
        ):
            column = tokens[i + 2].text
            j = i + 4  # past "AS"
            level = 0
            while j < len(tokens):
                t = tokens[j].token_type
                if t is TokenType.L_PAREN:
                    level += 1
                elif t is TokenType.R_PAREN:
                    if level == 0:
                        break
                    level -= 1
                elif t is TokenType.COMMA and level == 0:
                    break
                j += 1
            if j >= len(tokens) or i + 4 >= j:
                raise SqlError(
                    "WATERMARK FOR needs 'AS <column> - INTERVAL ...'",
                    line=token.line,
                    column=token.col,
                )
            watermarks[statement] = (column, text[tokens[i + 4].start : tokens[j - 1].end + 1])
            first = i
            if tokens[i - 1].token_type is TokenType.COMMA:
                first = i - 1
            elif tokens[j].token_type is TokenType.COMMA:  # first element: drop the comma after
                j += 1
            _blank(chars, tokens[first].start, tokens[j - 1].end)
            i = j
            continue
        elif kind is TokenType.TABLE and calls and calls[-1] in WINDOW_FUNCTIONS:
            _blank(chars, token.start, token.end)
        elif (
            word == "DESCRIPTOR"
            and calls
            and calls[-1] in WINDOW_FUNCTIONS
            and i + 3 < len(tokens)
            and tokens[i + 1].token_type is TokenType.L_PAREN
            and tokens[i + 3].token_type is TokenType.R_PAREN
        ):
            _blank(chars, token.start, tokens[i + 1].end)
            _blank(chars, tokens[i + 3].start, tokens[i + 3].end)
            i += 4
            continue
        i += 1
    for start, end in reversed(renamed):  # "SINK" -> "TABLE" lengthens the line by one
        chars[start : end + 1] = list("TABLE".ljust(end + 1 - start))
    return "".join(chars), watermarks, roles


def _option_value(node: exp.Expr) -> Any:
    if isinstance(node, exp.Literal):
        return node.this
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    return node.sql()


def _nested(options: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested options, as Flink spells them: 'fields.id.kind' =
    'sequence' is {"fields": {"id": {"kind": "sequence"}}}."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        *parents, last = key.split(".")
        target = out
        for part in parents:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise SqlError(f"option {key!r}: {part!r} is given both as a value and as a group")
            target = nested
        target[last] = value
    return out


def _table(create: exp.Create, watermark: tuple[str, str] | None, role: str | None) -> TableDef:
    schema = create.this
    if not isinstance(schema, exp.Schema) or not isinstance(schema.this, exp.Table):
        raise fail(create, "CREATE TABLE needs a name and a column list: CREATE TABLE t (a BIGINT)")
    name = schema.this.name
    columns = []
    for column in schema.expressions:
        if not isinstance(column, exp.ColumnDef):
            raise fail(column, f"table {name}: {column.sql()} is not a column definition")
        if column.find(exp.ComputedColumnConstraint) is not None:
            raise fail(
                column,
                f"table {name}: computed column {column.sql()} is not supported: declare the "
                "columns the records hold, and event time on one of them (WATERMARK FOR "
                "dateTime AS dateTime - INTERVAL '1' SECOND; epoch milliseconds or ISO-8601 "
                "text), and compute other values in the query",
            )
        kind = column.args.get("kind")
        columns.append(SqlColumn(column.name, kind.sql() if kind is not None else "STRING"))
    options: dict[str, Any] = {}
    properties = create.args.get("properties")
    for prop in properties.expressions if properties is not None else []:
        if isinstance(prop, exp.FileFormatProperty):  # format = 'json', unquoted
            options["format"] = _option_value(prop.this)
            continue
        if type(prop) is not exp.Property:  # a word the SQL dialect reads as its own
            raise fail(
                prop,
                f"table {name}: option {prop.sql()}: write options as quoted names and "
                "values, 'name' = 'value'",
            )
        key = prop.this.name if isinstance(prop.this, exp.Expr) else str(prop.this)
        value = prop.args.get("value")
        options[key] = _option_value(value) if isinstance(value, exp.Expr) else value
    options = _nested(options)
    lookup = options.pop("lookup", {})
    if not isinstance(lookup, dict):
        raise fail(create, f"table {name}: 'lookup' takes 'lookup.cache.ttl' = '...'")
    connector = options.pop("connector", None)
    if not connector:
        raise fail(
            create,
            f"table {name}: WITH ('connector' = '...') is missing: name the connector and "
            "its options as in a YAML job, e.g. WITH ('connector' = 'file', 'path' = 'in.jsonl')",
        )
    known = {c.name for c in columns}
    mark: tuple[str, int] | None = None
    if watermark is not None:
        column, text = watermark
        if column not in known:
            raise fail(create, f"table {name}: WATERMARK FOR {column}: no such column")
        delay = 0
        try:
            parsed = sqlglot.parse_one(text, read=_ReflowDialect)
        except ParseError as exc:
            raise fail(create, f"table {name}: WATERMARK expression {text!r}: {exc}") from None
        if isinstance(parsed, exp.Sub) and isinstance(parsed.this, exp.Column):
            delay = interval_ms(parsed.expression)
        elif not isinstance(parsed, exp.Column):
            raise fail(
                create,
                f"table {name}: WATERMARK FOR {column} AS {text}: write "
                f"'{column} - INTERVAL '5' SECOND' (or just '{column}')",
            )
        mark = (column, delay)
    line, _ = position(schema.this)
    return TableDef(
        name,
        tuple(columns),
        str(connector),
        options,
        mark,
        role if role in {"source", "sink"} else "table",  # type: ignore[arg-type]
        line,
        lookup,
    )


def parse_script(text: str, file: str | None = None) -> Script:
    """Read every statement of ``text``; SqlError names the line:column of a problem."""
    try:
        rewritten, watermarks, roles = _rewrite(text)
        try:
            statements = sqlglot.parse(rewritten, read=_ReflowDialect)
        except ParseError as exc:
            first = exc.errors[0] if exc.errors else {}
            message = str(first.get("description") or exc).split("\n")[0]
            raise SqlError(
                f"cannot parse the SQL: {message}",
                line=first.get("line"),
                column=first.get("col", 0),
            ) from None
        script = Script()
        for index, statement in enumerate(statements):
            if statement is None or isinstance(statement, exp.Semicolon):
                continue  # nothing, or only a comment, after the last statement
            if isinstance(statement, exp.Create) and statement.kind == "TABLE":
                table = _table(statement, watermarks.get(index), roles.get(index))
                if table.name in script.tables or table.name in script.views:
                    raise fail(statement, f"table {table.name} is defined twice")
                script.tables[table.name] = table
            elif isinstance(statement, exp.Create) and statement.kind == "VIEW":
                name = statement.this.name
                query = statement.expression
                if not isinstance(query, exp.Query):
                    raise fail(statement, f"CREATE VIEW {name} needs AS SELECT ...")
                if name in script.tables or name in script.views:
                    raise fail(statement, f"CREATE VIEW {name}: the name is already taken")
                script.views[name] = query
            elif isinstance(statement, exp.Create) and statement.kind == "FUNCTION":
                name = statement.this.name.upper()
                target = statement.args.get("expression")
                if not isinstance(target, exp.Literal) or not target.is_string:
                    raise fail(
                        statement,
                        f"CREATE FUNCTION {statement.this.name} AS 'module:function' names "
                        "the Python function to call",
                    )
                language = next((p for p in statement.find_all(exp.LanguageProperty)), None)
                if language is not None and language.name.upper() != "PYTHON":
                    raise fail(statement, "only LANGUAGE PYTHON functions can be created")
                script.functions[name] = (target.this, statement)
            elif isinstance(statement, exp.Set):
                for item in statement.expressions:
                    pair = item.this if isinstance(item, exp.SetItem) else item
                    if not isinstance(pair, exp.EQ):
                        raise fail(statement, "write SET 'key' = 'value'")
                    key, value = pair.this, pair.expression
                    script.settings[key.name] = (
                        value.name if isinstance(value, exp.Literal) else value.sql(),
                        statement,
                    )
            elif isinstance(statement, exp.Insert):
                if statement.args.get("overwrite"):
                    raise fail(
                        statement,
                        "INSERT OVERWRITE is not supported on streams (as in Flink): write "
                        "INSERT INTO",
                    )
                target = statement.this
                if isinstance(target, exp.Schema):
                    names = [c.name for c in target.expressions]
                    script.insert_columns[len(script.inserts)] = (names, target)
                    target = target.this
                query = statement.expression
                if not isinstance(query, exp.Query):
                    raise fail(statement, "INSERT INTO needs a SELECT")
                script.inserts.append((target.name, query))
            elif isinstance(statement, exp.Query):
                script.queries.append(statement)
            else:
                raise fail(
                    statement,
                    f"{statement.key.upper()} statements are not supported: write CREATE TABLE, "
                    "CREATE VIEW, CREATE FUNCTION, SET, INSERT INTO ... SELECT, or SELECT",
                )
        return script
    except SqlError as exc:
        raise exc.located(file) if file is not None else exc from None
