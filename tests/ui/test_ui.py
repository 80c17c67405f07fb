"""The web UI in a real headless Chromium (Debian's chromium, driven by Playwright),
against a real `reflow serve`. Screenshots of every page go to out/ui-screenshots/."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import start_serve

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "ui-screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "ui-token"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

BATCH_JOB = """job:
  id: ui-batch
  name: ui-batch
  parallelism: 1
  source: {connector: datagen, config: {number_of_rows: 2000}}
  operators:
    - {name: double, type: map, expression: "{'id': r['id'] * 2}"}
    - {name: by-id, type: key_by, key: id}
    - {name: even, type: filter, expression: "r['id'] % 4 == 0"}
  sink: {connector: file, config: {path: "FOLDER/ui-batch.jsonl"}}
"""
STREAM_JOB = """job:
  id: ui-stream
  name: ui-stream
  source: {connector: datagen, config: {rows_per_second: 100}}
  sink: {connector: file, config: {path: "FOLDER/ui-stream.jsonl"}}
"""


def _require_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    message = "Chromium is not installed (apt-get install chromium); scripts/check installs it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    _require_chromium()
    folder = tmp_path_factory.mktemp("ui")
    # The server's submission policy lets the UI's jobs write into this folder only.
    (folder / "system.yaml").write_text(
        f"system:\n  security:\n    path_roots: [{str(folder)!r}]\n"
    )
    proc, url = start_serve(
        folder, "--token", TOKEN, "--slots", "4", "--config", str(folder / "system.yaml")
    )
    try:
        yield url, folder
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: tuple[str, Path]) -> Iterator[Any]:
    url, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{url}/ui")
    page.evaluate(f"localStorage.setItem('reflowToken', '{TOKEN}')")
    page.goto(f"{url}/ui#/overview")
    page.reload()
    yield page
    context.close()


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_submit_a_job_and_watch_it_complete_with_its_jobgraph(
    page: Any, server: tuple[str, Path]
) -> None:
    _, folder = server
    page.goto(page.url.split("#")[0] + "#/submit")
    page.get_by_test_id("yaml").fill(BATCH_JOB.replace("FOLDER", str(folder)))
    page.get_by_test_id("validate").click()
    page.get_by_text("valid: job ui-batch, 1 vertex").wait_for()
    _shot(page, "submit")
    page.get_by_test_id("submit").click()
    link = page.get_by_test_id("submitted-link")
    try:
        link.wait_for(timeout=60_000)
    except Exception as exc:  # say what the page shows instead of the link
        shown = page.locator("#result").inner_text(), page.locator("#problems").inner_text()
        raise AssertionError(f"no link to the submitted job; the page shows {shown!r}") from exc
    link.click()
    page.locator("[data-testid=run-status] .COMPLETED").first.wait_for(timeout=20_000)
    # At parallelism 1 the keyed edge by-id is chained: one vertex, source to sink.
    assert page.get_by_test_id("vertex-count").inner_text() == "1 vertex"
    assert page.locator("[data-testid=jobgraph-node]").count() == 1
    assert page.locator("[data-testid=streamgraph-node]").count() == 4  # by-id is an edge
    page.get_by_text("out 1000").first.wait_for()  # live counts: 1,000 of 2,000 kept
    _shot(page, "job")
    page.goto(page.url.split("#")[0] + "#/overview")
    page.get_by_test_id("count-completed").wait_for()
    assert int(page.get_by_test_id("count-completed").inner_text()) >= 1
    _shot(page, "overview")


def test_cancel_a_running_streaming_job(page: Any, server: tuple[str, Path]) -> None:
    url, folder = server
    created = httpx.post(
        f"{url}/api/jobs",
        json={"yaml": STREAM_JOB.replace("FOLDER", str(folder))},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert created.status_code == 201
    page.goto(url + "/ui#/jobs/ui-stream")
    page.locator("[data-testid=run-status] .RUNNING").first.wait_for(timeout=20_000)
    page.get_by_test_id("cancel").click()
    page.locator("[data-testid=run-status] .CANCELLED").first.wait_for(timeout=20_000)
    page.locator("[data-testid=history]").get_by_text("CANCELLED").first.wait_for()
    # Every transition and every started run shows when (in the browser's time zone).
    times = page.locator("[data-testid=history-at]").all_inner_texts()
    assert times and all(any(c.isdigit() for c in t) and t != "-" for t in times), times
    started = page.locator("[data-testid=run-started]").first.inner_text()
    assert any(c.isdigit() for c in started), started


def test_a_broken_yaml_shows_its_error_with_the_line(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#/submit")
    page.get_by_test_id("yaml").fill("job:\n  name: broken\n  source: {connector: datagen\n")
    page.get_by_test_id("validate").click()
    problems = page.get_by_test_id("problems")
    problems.get_by_text("line 4").wait_for()
    assert "invalid YAML" in problems.inner_text()
    page.get_by_test_id("yaml").fill(
        "job:\n  name: typo\n  source: {connector: datagen}\n  sink: {connector: stdot}\n"
    )
    page.get_by_test_id("validate").click()
    problems.get_by_text("did you mean 'stdout'").wait_for()
    assert "line 4" in problems.inner_text()
    _shot(page, "submit-error")


def test_schedules_page_with_dependencies_and_events(page: Any, server: tuple[str, Path]) -> None:
    url, folder = server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for job_id, schedule in [
        (
            "ui-nightly",
            {"policy": "cron", "expression": "0 0 1 * * ?", "timezone": "Asia/Shanghai"},
        ),
        ("ui-after", {"policy": "depends_on", "upstream": ["ui-nightly"]}),
        ("ui-on-drop", {"policy": "on_event", "event": "file-dropped"}),
    ]:
        yaml = (BATCH_JOB.replace("FOLDER", str(folder))).replace("ui-batch", job_id)
        assert (
            httpx.post(
                f"{url}/api/jobs", json={"yaml": yaml, "schedule": schedule}, headers=headers
            ).status_code
            == 201
        )
    page.goto(url + "/ui#/schedules")
    page.get_by_test_id("schedules").get_by_role("link", name="ui-nightly").wait_for()
    assert "01:00:00+08:00" in page.get_by_test_id("schedules").inner_text()
    assert page.locator("[data-testid=dependencies-node]").count() >= 2
    page.get_by_test_id("event-name").fill("file-dropped")
    page.get_by_test_id("post-event").click()
    page.get_by_test_id("event-result").get_by_text("1 runs queued").wait_for()
    _shot(page, "schedules")


def test_the_ui_loads_without_missing_resources(browser: Any, server: tuple[str, Path]) -> None:
    url, _ = server
    context = browser.new_context()
    page = context.new_page()
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(f"{url}/ui")
    page.wait_for_load_state("networkidle")
    icon = page.request.get(f"{url}/favicon.ico")
    context.close()
    assert missing == []
    assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"


def test_leaving_the_submit_page_while_it_validates_throws_nothing(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#/submit")
    page.get_by_test_id("yaml").fill(
        "job:\n  name: leaving\n  source: {connector: datagen}\n  sink: {connector: stdout}\n"
    )
    page.evaluate("location.hash = '#/overview'")
    page.get_by_test_id("yaml").wait_for(state="detached")
    # The validation that typing scheduled runs after the user left the page: it
    # finds no form and does nothing (it threw "Cannot set properties of null").
    assert page.evaluate("validateYaml()") is False
    # One in flight when the user leaves answers into a page no longer shown.
    page.evaluate("location.hash = '#/submit'")
    page.get_by_test_id("yaml").wait_for()
    valid = page.evaluate(
        "(async () => { const answer = validateYaml(); location.hash = '#/overview';"
        " return await answer; })()"
    )
    assert valid is True
    page.get_by_test_id("yaml").wait_for(state="detached")  # the overview is shown
    assert "valid: job" not in page.inner_text("body")


SQL_JOB = """-- a streaming SQL script, told apart from a job file by its first word
SET 'job.id' = 'ui-sql';
CREATE TABLE gen (id BIGINT)
WITH ('connector' = 'datagen', 'number_of_rows' = '300', 'fields.id.kind' = 'sequence');
CREATE SINK evens (id BIGINT) WITH ('connector' = 'file', 'path' = 'FOLDER/ui-sql.jsonl');
INSERT INTO evens SELECT id, id * 10 AS tenfold FROM gen WHERE id % 2 = 0;
"""


def _shows(page: Any, text: str) -> None:
    """Wait (60 s) for ``text`` on the page; else fail with what the page shows."""
    try:
        page.get_by_text(text).wait_for(timeout=60_000)
    except Exception as exc:
        shown = page.locator("#problems").inner_text(), page.locator("#result").inner_text()
        raise AssertionError(f"waited for {text!r}; the page shows {shown!r}") from exc


def test_submit_a_sql_script(page: Any, server: tuple[str, Path]) -> None:
    _, folder = server
    page.goto(page.url.split("#")[0] + "#/submit")
    page.get_by_test_id("yaml").fill(
        SQL_JOB.replace("FOLDER", str(folder)).replace("id % 2", "idd % 2")
    )
    page.get_by_test_id("validate").click()
    # A loaded machine's server answers slowly (the job of the test before may still run).
    _shows(page, "no column idd in table gen")
    page.get_by_test_id("yaml").fill(SQL_JOB.replace("FOLDER", str(folder)))
    page.get_by_test_id("validate").click()
    _shows(page, "valid: job ui-sql, 1 vertex")
    page.get_by_test_id("submit").click()
    page.get_by_test_id("submitted-link").wait_for(timeout=60_000)
    page.get_by_test_id("submitted-link").click()
    page.locator("[data-testid=run-status] .COMPLETED").first.wait_for(timeout=60_000)
    _shot(page, "sql-job")
    rows = [
        orjson.loads(line)
        for f in folder.glob("ui-sql*.jsonl")
        for line in f.read_bytes().splitlines()
    ]
    assert sorted(r["id"] for r in rows) == list(range(0, 300, 2))
    assert all(r["tenfold"] == r["id"] * 10 for r in rows)


def test_a_slow_page_left_behind_does_not_repaint_over_the_next(
    page: Any, server: tuple[str, Path]
) -> None:
    """The overview's first answer comes after the user went on to the submit page:
    the overview must neither paint nor start refreshing over it."""
    released: list[Any] = []
    page.route("**/api/overview", lambda route: released.append(route))
    page.reload()  # on #/overview: its first render waits for the held-back answer
    for _ in range(600):
        if released:
            break
        page.wait_for_timeout(50)
    assert released, "the overview asked for nothing"
    page.goto(page.url.split("#")[0] + "#/submit")
    page.get_by_test_id("yaml").wait_for()
    with page.expect_response("**/api/overview"):
        released[0].continue_()
    page.unroute("**/api/overview")
    page.wait_for_timeout(2_500)  # two refresh intervals of the overview, had it kept one
    assert page.get_by_test_id("yaml").is_visible()
    assert page.locator("h1").inner_text() == "Submit a job"


QUALITY_JOB = """job:
  id: ui-quality
  name: ui-quality
  parallelism: 1
  source:
    connector: datagen
    config: {number_of_rows: 1000}
    quality:
      - {check: range, name: small-ids, field: id, max: 899, critical: true}
      - {check: not_null, field: id}
  sink: {connector: file, config: {path: "FOLDER/ui-quality.jsonl"}}
"""


def test_the_quality_panel_shows_each_rules_counts(page: Any, server: tuple[str, Path]) -> None:
    url, folder = server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    yaml = QUALITY_JOB.replace("FOLDER", str(folder))
    created = httpx.post(f"{url}/api/jobs", json={"yaml": yaml}, headers=headers)
    assert created.status_code == 201, created.text
    page.goto(url + "/ui#/jobs/ui-quality")
    page.locator("[data-testid=run-status] .COMPLETED").first.wait_for(timeout=30_000)
    page.reload()
    table = page.get_by_test_id("quality")
    table.wait_for()
    rows = [r.inner_text().split("\t") for r in table.locator("[data-testid=quality-rule]").all()]
    by_rule = {r[1].strip(): r for r in rows}
    small = by_rule["small-ids (critical)"]
    assert small[2:5] == ["range", "900", "100"]  # ids 900..999 are over the maximum
    assert by_rule["not_null:id"][2:5] == ["not_null", "1000", "0"]
    _shot(page, "quality")


SCALED_JOB = """job:
  id: ui-scaled
  name: ui-scaled
  checkpoint: {path: "FOLDER/ui-scaled-checkpoints", interval: 500ms}
  source: {connector: datagen, parallelism: 1, config: {rows_per_second: 100}}
  operators:
    - {name: by-id, type: key_by, key: id}
    - {name: tagged, type: map, expression: "{'id': r['id'], 'tag': 'x'}"}
  sink: {connector: file, config: {path: "FOLDER/ui-scaled.jsonl"}}
"""


def test_rescale_a_running_job_from_its_page(page: Any, server: tuple[str, Path]) -> None:
    url, folder = server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    yaml = SCALED_JOB.replace("FOLDER", str(folder))
    created = httpx.post(f"{url}/api/jobs", json={"yaml": yaml}, headers=headers)
    assert created.status_code == 201, created.text
    page.goto(url + "/ui#/jobs/ui-scaled")
    page.locator("[data-testid=run-status] .RUNNING").first.wait_for(timeout=30_000)
    page.get_by_test_id("rescale-parallelism").fill("2")
    with page.expect_response("**/api/jobs/ui-scaled/rescale", timeout=60_000) as answer:
        page.get_by_test_id("rescale").click()
    assert answer.value.status == 200, answer.value.text()
    assert "tagged 1->2" in answer.value.json()[0]["detail"]
    page.reload()
    page.locator("[data-testid=history] .RESCALED").first.wait_for(timeout=20_000)
    page.get_by_text("\u00d72").first.wait_for()  # "vertex N x2"
    _shot(page, "rescaled")
    httpx.post(f"{url}/api/jobs/ui-scaled/cancel", headers={**headers, "X-Requested-With": "t"})


AUTOSCALED_JOB = """job:
  id: ui-autoscaled
  name: ui-autoscaled
  parallelism: 2
  checkpoint: {path: "FOLDER/ui-autoscaled-checkpoints", interval: 1s}
  autoscaler: {dry_run: true, window: 1s, interval: 250ms, cooldown: 0s}
  source: {connector: datagen, parallelism: 1, config: {rows_per_second: 50}}
  operators:
    - {name: by-id, type: key_by, key: id}
    - {name: idle, type: map, expression: "r"}
  sink: {connector: file, config: {path: "FOLDER/ui-autoscaled.jsonl"}}
"""


def test_autoscaler_decisions_in_the_api_metrics_and_ui(
    page: Any, server: tuple[str, Path]
) -> None:
    """An idle step at parallelism 2: a dry-run autoscaler recommends 1 and changes
    nothing."""
    url, folder = server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    yaml = AUTOSCALED_JOB.replace("FOLDER", str(folder))
    created = httpx.post(f"{url}/api/jobs", json={"yaml": yaml}, headers=headers)
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 60
    while True:
        state = httpx.get(f"{url}/api/jobs/ui-autoscaled/autoscaler", headers=headers).json()
        actions = [d["action"] for d in state["decisions"]]
        if "scale_down" in actions:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    down = next(d for d in state["decisions"] if d["action"] == "scale_down")
    assert down["steps"] == ["idle", "sink"] and (down["parallelism"], down["recommended"]) == (
        2,
        1,
    )
    assert not down["applied"] and down["reason"].startswith("dry run")
    assert "fixed" in actions  # the source's vertex
    assert state["config"]["dry_run"] is True
    metrics = httpx.get(f"{url}/metrics").text
    assert "reflow_autoscaler_recommended_parallelism{" in metrics
    assert 'action="scale_down"' in metrics
    page.goto(url + "/ui#/jobs/ui-autoscaled")
    page.get_by_test_id("autoscaler-decision").first.wait_for(timeout=20_000)
    assert "scale_down 2 → 1" in page.get_by_test_id("autoscaler-decisions").inner_text()
    graph = httpx.get(f"{url}/api/jobs/ui-autoscaled/graph", headers=headers).json()
    assert max(v["parallelism"] for v in graph["vertices"]) == 2  # dry run: unchanged
    _shot(page, "autoscaler")
    httpx.post(f"{url}/api/jobs/ui-autoscaled/cancel", headers={**headers, "X-Requested-With": "t"})
