"""The documentation's examples run: Python blocks execute, YAML blocks validate."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from reflow.config import load_job_text, load_system_config_text

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(python|yaml|sql)\n(.*?)```", re.DOTALL)


def _blocks(kind: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for index, (lang, code) in enumerate(BLOCK.findall(page.read_text())):
            if lang == kind:
                found.append((f"{page.name}#{index}", code))
    return found


def test_every_capability_has_a_page() -> None:
    names = {p.name for p in PAGES}
    assert {
        "concepts.md",
        "yaml.md",
        "connectors.md",
        "operations.md",
        "event-time.md",
        "checkpoints.md",
        "distributed.md",
        "security.md",
        "sql.md",
    } <= names


@pytest.mark.parametrize("name,code", _blocks("python"), ids=lambda v: v if "#" in str(v) else "")
def test_python_examples_run(name: str, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # An example that runs a job says what it expects: it asserts, or runs it with
    # reflow.run / Flow.run, which raise when the job fails.
    if "run_job(" in code:
        assert "assert " in code, f"{name} runs a job with run_job but asserts nothing"
    monkeypatch.chdir(ROOT)
    os.makedirs("out/docs", exist_ok=True)
    exec(compile(code, name, "exec"), {"__name__": "docs_example"})


@pytest.mark.parametrize("name,text", _blocks("yaml"), ids=lambda v: v if "#" in str(v) else "")
def test_yaml_examples_validate(name: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    for variable in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text):  # secrets a reader exports
        monkeypatch.setenv(variable, f"example-{variable.lower()}")
    if text.lstrip().startswith("system:"):
        load_system_config_text(text, name)
    elif text.lstrip().startswith(("job:", "connectors:")):
        load_job_text(text, name)
    else:
        pytest.skip("a fragment, not a whole file")


@pytest.mark.parametrize("name,text", _blocks("sql"), ids=lambda v: v if "#" in str(v) else "")
def test_sql_examples_plan(name: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQL example parses and plans into a job whose connector options are valid."""
    from reflow.table import sql_job

    monkeypatch.chdir(ROOT)
    job = sql_job(text, file=name)
    assert job.job_graph.vertices
