"""Streaming SQL: a SQL script parsed by sqlglot and planned onto reflow's operators
(docs/sql.md). ``reflow.sql(text)`` returns the Job; ``reflow sql FILE.sql`` runs it."""

from reflow.table.expressions import SqlError
from reflow.table.parser import Script, TableDef, parse_script
from reflow.table.planner import load_sql_file, plan_script, sql_job, vectorized

__all__ = [
    "Script",
    "SqlError",
    "TableDef",
    "load_sql_file",
    "parse_script",
    "plan_script",
    "sql_job",
    "vectorized",
]
