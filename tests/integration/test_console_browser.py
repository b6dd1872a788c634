"""The web console in a real browser (Debian's headless Chromium, driven by Playwright) against a
real `hatchway serve` with the examples loaded.

Screenshots of each page go to ``$HATCHWAY_SCREENSHOTS_DIR`` (default ``tests/artifacts/screenshots``;
``scripts/screenshots`` refreshes the README's copies in ``docs/screenshots``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ADMIN_TOKEN, REPO, LiveServer, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
if CHROMIUM is None:
    pytest.skip("browser tests need Debian's chromium (apt-get install chromium)", allow_module_level=True)

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SHOTS = Path(os.environ.get("HATCHWAY_SCREENSHOTS_DIR") or REPO / "tests" / "artifacts" / "screenshots")
SAMPLE_DB = str(REPO / "examples" / "db-extractor" / "sample.db")

#: prints a numbered line every 0.15 s, then a result: something to watch in the live log
COUNTER = {
    "name": "counter",
    "short_description": "Counts slowly, for watching a live log",
    "parameters": [
        {"name": "lines", "default": "8", "description": "how many lines to print"},
        {"name": "note", "default": "", "description": "anything (a long value shows how the page wraps it)"},
    ],
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": [
            "import json,os,sys,time\n"
            "d=os.environ['HATCHWAY_DATA_DIR']\n"
            "n=int(json.load(open(d+'/config.json'))['parameters']['lines'])\n"
            "for i in range(1, n+1):\n"
            "    print(f'line {i} of {n}', flush=True); time.sleep(0.15)\n"
            "json.dump({'counted': n}, open(d+'/out/result.json','w'))\n"
        ],
    },
    "tags": ["demo"],
}
#: runs until it is cancelled
SLEEPER = {
    "name": "sleeper",
    "short_description": "Sleeps until cancelled",
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": ["import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n"],
    },
    "tags": ["demo"],
}

#: fails with an application error (exit 3): something for the dashboard's failures
FAILER = {
    "name": "failer",
    "short_description": "Always fails",
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": ["import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n"],
    },
}


#: structured parameters (parameters_schema): the console builds its form from the schema, and a
#: sync action fills the choices of one field, as a Keboola form fills its table list
SCHEMA_ACTION = {
    "name": "shaped",
    "short_description": "Takes structured parameters",
    "parameters_schema": {
        "type": "object",
        # (the gateway validates sync calls against the schema too, so a field whose choices a sync
        # action loads cannot be required: the call that loads them has no value for it yet)
        "required": ["limits"],
        "properties": {
            "table": {
                "type": "string",
                "title": "Table",
                "options": {"async": {"action": "tables", "label": "Load tables"}},
            },
            "limits": {
                "type": "object",
                "title": "Limits",
                "required": ["rows"],
                "properties": {
                    "rows": {"type": "integer", "title": "Rows"},
                    "strict": {"type": "boolean", "title": "Strict"},
                },
            },
            "#token": {"type": "string", "title": "API token"},
        },
    },
    "sync_actions": ["tables"],
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": [
            "import json,os\n"
            "d=os.environ['HATCHWAY_DATA_DIR']\n"
            "c=json.load(open(d+'/config.json'))\n"
            "if c['action']=='tables':\n"
            "    print(json.dumps([{'value': 'orders', 'label': 'Orders'}, 'customers']))\n"
            "else:\n"
            "    p=c['parameters']\n"
            "    json.dump({'table': p['table'], 'rows': p['limits']['rows'], 'strict': p['limits']['strict'],\n"
            "               'token_length': len(p.get('#token', ''))}, open(d+'/out/result.json','w'))\n"
        ],
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("console"), "--examples", HATCHWAY_LEASE_SECONDS="3", HATCHWAY_HEARTBEAT_SECONDS="0.5"
    )
    live.start()
    with live.client() as hw:
        hw.register_action(COUNTER)
        hw.register_action(SLEEPER)
        hw.register_action(SCHEMA_ACTION)
        hw.register_action(FAILER)
    yield live
    live.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Console:
    """One browser tab on the console, failing the test on any script error or CSP violation."""

    def __init__(self, browser: Any, server: LiveServer, width: int = 1280, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height}, color_scheme="light")
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.server = server
        self.problems: list[str] = []
        self.urls: list[str] = []
        self.page.on("pageerror", lambda err: self.problems.append(f"script error: {err}"))
        self.page.on("console", self._console)
        self.page.on("request", lambda request: self.urls.append(request.url))

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.problems.append(f"CSP: {text}")

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.server.url}/ui/{fragment}")

    def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        self.open()
        self.page.get_by_label("Token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("heading", name="Dashboard", level=1).wait_for()

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def unlabelled_controls(self) -> list[str]:
        """Form controls a screen reader could not name."""
        result: list[str] = self.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
                .filter(el => el.type !== 'hidden' && !el.closest('[hidden]'))
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                              && !el.getAttribute('aria-labelledby') && !el.closest('label')
                              && !(el.tagName === 'BUTTON' && el.textContent.trim()))
                .map(el => el.outerHTML.slice(0, 120))"""
        )
        return result

    def close(self) -> None:
        self.context.close()
        assert self.problems == []


@pytest.fixture
def console(browser: Any, server: LiveServer) -> Iterator[Console]:
    tab = Console(browser, server)
    yield tab
    tab.close()


def test_sign_in_with_the_keyboard_keeps_the_token_out_of_urls_and_cookies(console: Console) -> None:
    page = console.page
    # Given the sign-in page
    console.open()
    page.get_by_role("heading", name="Sign in to hatchway").wait_for()
    console.shot("signin")
    assert console.unlabelled_controls() == []
    # When a user tabs to the token field, types and presses Enter
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    # Then the dashboard opens with its heading focused
    page.get_by_role("heading", name="Dashboard", level=1).wait_for()
    assert page.evaluate("document.activeElement.tagName") == "H1"
    # and the token is in this tab's session storage only: never in a URL, never a cookie
    assert page.evaluate("Object.keys(localStorage).length") == 0
    assert ADMIN_TOKEN in page.evaluate("sessionStorage.getItem('hatchway.session')")
    assert console.context.cookies() == []
    assert not [url for url in console.urls if ADMIN_TOKEN in url]


def test_a_wrong_token_is_refused_with_a_message(console: Console) -> None:
    console.open()
    console.page.get_by_label("Token").fill("not-a-token")
    console.page.get_by_role("button", name="Sign in").click()
    alert = console.page.get_by_role("alert")
    alert.wait_for()
    assert "does not know this token" in alert.inner_text()


def test_run_from_the_generated_form_and_follow_its_live_log(console: Console) -> None:
    page = console.page
    console.sign_in()
    # Given the actions list, searched for the counter
    page.get_by_role("link", name="Actions", exact=True).click()
    page.get_by_label("Search actions").fill("count")
    page.get_by_role("link", name="counter").click()
    page.get_by_role("heading", name="Run counter").wait_for()
    assert console.unlabelled_controls() == []
    # When the generated form starts a run with a parameter
    page.get_by_label("lines").fill("10")
    page.get_by_role("button", name="Start run").click()
    # Then the run page follows the log line by line until the run is SUCCESSFUL
    page.get_by_role("heading", name="Run run_").wait_for()
    log = page.get_by_role("log", name="Run log")
    log.get_by_text("line 1 of 10").wait_for()
    page.get_by_text("Log complete: the run ended SUCCESSFUL.").wait_for(timeout=30_000)
    lines = [line for line in log.inner_text().splitlines() if "of 10" in line]
    assert len(lines) == 10
    assert page.get_by_role("status").filter(has_text="SUCCESSFUL").count() >= 1
    assert '"counted": 10' in page.get_by_label("Result").inner_text()
    console.shot("run")


def test_from_one_run_to_another_the_log_is_the_new_runs_then_run_again_and_download(
    console: Console, server: LiveServer
) -> None:
    page = console.page
    long_value = "https://example.com/" + "a-very-long-segment/" * 30
    with server.client() as hw:
        first = hw.wait(hw.start_run("counter", {"lines": "3"}).id, timeout=30)
        second = hw.wait(hw.start_run("counter", {"lines": "5", "note": long_value}).id, timeout=30)
    console.sign_in()
    log = page.get_by_role("log", name="Run log")
    # Given the first run's page with its whole log
    console.open(f"#/runs/{first.id}")
    page.get_by_text("Log complete: the run ended SUCCESSFUL.").wait_for(timeout=30_000)
    sync_api.expect(log).to_contain_text("line 3 of 3")
    # When the address changes to the second run (no reload)
    page.evaluate(f"location.hash = '#/runs/{second.id}'")
    page.get_by_role("heading", name=f"Run {second.id}").wait_for()
    page.get_by_text("Log complete: the run ended SUCCESSFUL.").wait_for(timeout=30_000)
    # Then the log shows the second run's lines, and none of the first's
    sync_api.expect(log).to_contain_text("line 5 of 5")
    assert "of 3" not in log.inner_text()
    assert len([line for line in log.inner_text().splitlines() if "of 5" in line]) == 5
    # and a long parameter value wraps inside the page instead of widening it
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # When the log is downloaded
    with page.expect_download() as download:
        page.get_by_role("button", name="Download log").click()
    assert download.value.suggested_filename == f"{second.id}.log"
    text = Path(download.value.path()).read_text()
    assert "line 1 of 5" in text and "line 5 of 5" in text and "of 3" not in text
    # When the run is started again with the same parameters
    page.get_by_role("button", name="Run again").click()
    page.get_by_role("heading", name=re.compile(r"^Run run_")).filter(has_not_text=second.id).wait_for()
    again = page.get_by_role("heading", name=re.compile(r"^Run run_")).inner_text().split()[-1]
    page.get_by_text("Log complete: the run ended SUCCESSFUL.").wait_for(timeout=30_000)
    # Then it is a new run of the same action with the same parameters
    with server.client() as hw:
        rerun = hw.get_run(again)
    assert rerun.id not in (first.id, second.id) and rerun.parameters == second.parameters
    assert len([line for line in log.inner_text().splitlines() if "of 5" in line]) == 5


def test_the_log_is_searched_shown_raw_and_timed_while_the_run_runs(console: Console, server: LiveServer) -> None:
    page = console.page
    with server.client() as hw:
        run = hw.start_run("counter", {"lines": "60"})  # 9 s of output
    console.sign_in()
    console.open(f"#/runs/{run.id}")
    # Given a run in progress: its elapsed time ticks
    elapsed = page.locator(".run-elapsed")
    sync_api.expect(elapsed).to_contain_text("running", timeout=20_000)
    ticking = elapsed.inner_text()
    sync_api.expect(elapsed).not_to_have_text(ticking, timeout=5_000)
    assert re.fullmatch(r"Elapsed \d+ s · running", elapsed.inner_text())
    # When the run has ended, it shows the run's final duration
    page.get_by_text("Log complete: the run ended SUCCESSFUL.").wait_for(timeout=30_000)
    with server.client() as hw:
        finished = hw.get_run(run.id)
    sync_api.expect(elapsed).not_to_contain_text("running")
    took = re.fullmatch(r"Took (\d+\.\d+) s", elapsed.inner_text())
    assert took and abs(float(took[1]) - finished.duration_ms / 1000) < 0.1, elapsed.inner_text()
    # When the log is searched, only matching lines remain, matches marked and counted
    log = page.get_by_role("log", name="Run log")
    page.get_by_label("Search the log").fill("LINE 1 ")
    sync_api.expect(page.locator(".log-count")).to_have_text(re.compile(r"^1 of \d+ lines match"))
    page.get_by_label("Search the log").fill("line 1")
    sync_api.expect(page.locator(".log-count")).to_have_text(re.compile(r"^11 of \d+ lines match “line 1”$"))
    shown = [line for line in log.inner_text().splitlines() if "of 60" in line]
    assert len(shown) == 11 and all("line 1" in line for line in shown)
    marks = log.locator("mark")
    assert marks.count() == 11 and set(marks.all_inner_texts()) == {"line 1"}
    console.shot("run-log-search")
    # When the search is cleared and the raw view chosen, the log is plain text, one message a line
    page.get_by_label("Search the log").fill("")
    page.get_by_label("Raw").check()
    raw = page.get_by_label("Run log, raw")
    text = raw.inner_text()
    assert [line for line in text.splitlines() if "of 60" in line] == [f"line {i} of 60" for i in range(1, 61)]
    assert raw.evaluate("el => el.tagName") == "PRE" and "<mark>" not in raw.inner_html()
    assert page.get_by_role("button", name="Copy the raw log").count() == 1
    # and searching filters the raw view too
    page.get_by_label("Search the log").fill("line 60")
    sync_api.expect(raw).to_have_text("line 60 of 60")


def test_the_project_picker_lists_the_tokens_projects_and_survives_a_reload(
    console: Console, server: LiveServer
) -> None:
    page = console.page
    with server.client() as hw:
        other = hw.create_project(f"picker-{os.getpid()}-{time.time_ns() % 10**6}")
    console.sign_in()
    # Given the header's project picker, fed by GET /v1/projects
    picker = page.locator("header").get_by_label("Project", exact=True)
    sync_api.expect(picker.locator(f"option[value='{other.id}']")).to_have_count(1)
    assert picker.evaluate("el => el.tagName") == "SELECT"
    labels = picker.locator("option").all_inner_texts()
    assert f"{other.name} · {other.id}" in labels and any("proj_local" in label for label in labels)
    # When another project is picked, the console switches to it
    picker.select_option(other.id)
    sync_api.expect(page.locator("main p.muted").first).to_have_text(f"{other.id} · development")
    # Then it is still the project after a reload
    page.reload()
    page.get_by_role("heading", name="Dashboard", level=1).wait_for()
    sync_api.expect(page.locator("main p.muted").first).to_have_text(f"{other.id} · development")
    sync_api.expect(page.locator("header").get_by_label("Project", exact=True)).to_have_value(other.id)
    # and the token is still only in this tab's session storage
    assert page.evaluate("Object.keys(localStorage).length") == 0


def test_a_project_token_signs_in_without_typing_its_project_and_picks_only_its_own(
    console: Console, server: LiveServer
) -> None:
    page = console.page
    with server.client() as hw:
        team = hw.create_project(f"team-{time.time_ns() % 10**9}")
        token = hw.create_token(["runs:read", "actions:read"], project=team.id).token
    # Given the sign-in form with the project left empty
    console.open()
    page.get_by_label("Token").fill(token)
    page.get_by_label("Project").fill("")
    page.get_by_role("button", name="Sign in").click()
    # Then the console opens on the token's own project
    page.get_by_role("heading", name="Dashboard", level=1).wait_for()
    sync_api.expect(page.locator("main p.muted").first).to_have_text(f"{team.id} · development")
    # and the picker offers the token's projects only: its own
    picker = page.locator("header").get_by_label("Project", exact=True)
    sync_api.expect(picker.locator("option")).to_have_count(1)
    assert picker.locator("option").inner_text() == f"{team.name} · {team.id}"


def test_the_dashboard_shows_error_rates_and_links_recent_failures(console: Console, server: LiveServer) -> None:
    page = console.page
    with server.client() as hw:
        failed = hw.wait(hw.start_run("failer").id, timeout=30)
        hw.wait(hw.start_run("counter", {"lines": "1"}).id, timeout=30)
    assert failed.status == "FAILED"
    console.sign_in()
    # Given the dashboard: the failing action's error rate is 100%, worst first
    rates = page.get_by_role("table", name="Error rate per action")
    row = rates.get_by_role("row").filter(has=page.get_by_role("link", name="failer", exact=True))
    sync_api.expect(row).to_contain_text("100%")
    assert rates.get_by_role("row").nth(1).inner_text().startswith("failer")
    assert page.get_by_role("meter", name="Error rate of failer run").get_attribute("aria-valuenow") == "100"
    counter = rates.get_by_role("row").filter(has=page.get_by_role("link", name="counter", exact=True)).first
    sync_api.expect(counter).to_contain_text("0%")
    # and the newest failure is listed with its reason
    recent = page.get_by_role("list", name="Recent failures")
    sync_api.expect(recent.get_by_role("listitem").first).to_contain_text(failed.id)
    # When it is followed, the failed run's page opens
    recent.get_by_role("link", name=failed.id).click()
    page.get_by_role("heading", name=f"Run {failed.id}").wait_for()
    sync_api.expect(page.get_by_role("status").filter(has_text="Status")).to_contain_text("FAILED")


def test_call_a_sync_action_and_see_its_answer(console: Console) -> None:
    page = console.page
    console.sign_in()
    console.open("#/actions/db-extractor")
    page.get_by_role("heading", name="Run db-extractor").wait_for()
    # (its action.json's timeout, 30, is minutes: the page says so, and the run form's is seconds)
    sync_api.expect(page.locator(".facts")).to_contain_text("30 min (1800 s)")
    sync_api.expect(page.get_by_text("Timeout (seconds)")).to_have_count(1)
    # Given the database path typed into the generated form, and a secret typed as a password
    page.get_by_label("database").fill(SAMPLE_DB)
    secret = page.get_by_label("#password")
    assert secret.get_attribute("type") == "password"
    secret.fill("hunter2")
    # When the sync action is called
    page.get_by_role("button", name="Call list-tables").click()
    # Then its JSON answer is shown
    answer = page.get_by_label("Answer of list-tables").last
    answer.wait_for()
    assert '"customers"' in answer.inner_text()
    assert "hunter2" not in page.content()
    console.shot("action")
    # and a failing call shows the API's error with its run
    page.get_by_label("database").fill("/no/such.db")
    page.get_by_role("button", name="Call test-connection").click()
    error = page.get_by_role("alert").filter(has_text="400 User error")
    error.wait_for()
    assert "does not exist" in error.inner_text()


def test_a_form_from_parameters_schema_with_choices_from_a_sync_action(console: Console) -> None:
    page = console.page
    console.sign_in()
    console.open("#/actions/shaped")
    page.get_by_role("heading", name="Run shaped").wait_for()
    assert console.unlabelled_controls() == []
    # Given typed fields from the schema: a nested integer, a checkbox, a secret as a password
    assert page.get_by_label("Rows").get_attribute("type") == "number"
    assert page.get_by_label("API token").get_attribute("type") == "password"
    # When the table choices are loaded from the sync action and the form is filled
    page.get_by_label("Rows").fill("7")
    page.get_by_role("button", name="Load tables").click()
    page.get_by_label("Table").select_option("orders")
    page.get_by_label("Strict").check()
    page.get_by_label("API token").fill("abc123")
    console.shot("schema-form")
    page.get_by_role("button", name="Start run").click()
    # Then the run got typed, nested parameters, and the secret is hidden on the run page
    page.get_by_text("Log complete: the run ended SUCCESSFUL.").wait_for(timeout=30_000)
    result = page.get_by_label("Result").inner_text()
    assert '"rows": 7' in result and '"strict": true' in result and '"table": "orders"' in result
    assert '"token_length": 6' in result
    assert "abc123" not in page.content()


def test_cancel_a_run(console: Console) -> None:
    page = console.page
    console.sign_in()
    console.open("#/actions/sleeper")
    page.get_by_role("button", name="Start run").click()
    page.get_by_role("log", name="Run log").get_by_text("sleeping").wait_for()
    # When the user cancels, and confirms
    page.get_by_role("button", name="Cancel run").click()
    # (the confirmation takes the focus, so a keyboard user confirms with Enter)
    sync_api.expect(page.get_by_role("button", name="Yes, cancel it")).to_be_focused()
    page.keyboard.press("Enter")
    # Then the run ends TERMINATED and the cancel button is gone
    page.get_by_text("Log complete: the run ended TERMINATED.").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Cancel run").count() == 0


def test_runs_list_filters_and_dashboard_charts(console: Console, server: LiveServer) -> None:
    page = console.page
    with server.client() as hw:
        for lines in ("1", "2"):
            hw.wait(hw.start_run("counter", {"lines": lines})["id"], timeout=30)
        hw.call_sync("db-extractor", "test-connection", {"database": SAMPLE_DB})
    console.sign_in()
    # Given runs of several actions, the runs list filtered to one action
    page.get_by_role("link", name="Runs", exact=True).click()
    # (exact: the dashboard, still on screen a moment, has a panel "Error rate per action")
    page.get_by_label("Action", exact=True).select_option("counter")
    page.get_by_role("button", name="Apply").click()
    # (Playwright's wait_for_function would eval() in the page, which the console's CSP forbids)
    sync_api.expect(page).to_have_url(re.compile(r"#/runs\?action=counter$"))
    rows = page.locator("table.runs tbody tr")
    rows.first.wait_for()
    # (the list asked for before the filter may still be on screen a moment: wait for the filtered one)
    sync_api.expect(rows.filter(has_not_text="counter")).to_have_count(0)
    assert all("counter" in row for row in rows.all_inner_texts())
    console.shot("runs")
    # When the dashboard opens
    page.get_by_role("link", name="Dashboard").click()
    chart = page.get_by_role("img", name="Stacked bar chart of runs per status")
    chart.wait_for()
    # Then the charts are drawn, and their numbers are there as text too
    assert "SUCCESSFUL" in chart.get_attribute("aria-label")
    assert page.get_by_role("img", name="Bar chart of durations").get_attribute("aria-label").count("p95") >= 2

    def painted() -> list[int]:  # the pixels drawn on each canvas
        return list(
            page.evaluate(
                """() => [...document.querySelectorAll('canvas')].map(c => {
                      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })"""
            )
        )

    # (a chart is painted a frame after its label is set: a loaded machine showed one still blank)
    drawn: list[int] = []

    def all_drawn() -> bool:
        drawn[:] = painted()
        return len(drawn) == 3 and min(drawn) > 500

    wait_until(all_drawn, 10, 0.1, "three charts drawn")
    assert len(drawn) == 3 and min(drawn) > 500
    # and the queue and the workers are charted as sampled at each refresh
    load = page.get_by_role("img", name=re.compile("^Bar chart of the queue and the workers"))
    assert re.search(r"now \d+ runs waiting, \d+ of \d+ workers busy", load.get_attribute("aria-label"))
    console.shot("dashboard")


def test_narrow_screen_has_no_sideways_scrolling(browser: Any, server: LiveServer) -> None:
    tab = Console(browser, server, width=390, height=844)
    try:
        tab.sign_in()
        for fragment, name in (
            ("#/", "narrow-dashboard"),
            ("#/actions/db-extractor", "narrow-action"),
            ("#/runs", "narrow-runs"),
        ):
            tab.open(fragment)
            tab.page.locator("h1").first.wait_for()
            tab.page.wait_for_load_state("networkidle")
            assert tab.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
            tab.shot(name)
    finally:
        tab.close()


def test_on_a_phone_the_header_folds_into_a_menu(browser: Any, server: LiveServer, console: Console) -> None:
    # On a wide screen there is no menu button: everything is in the header
    console.sign_in()
    assert console.page.get_by_role("button", name="Menu").count() == 0
    sync_api.expect(console.page.get_by_role("link", name="Runs", exact=True)).to_be_visible()
    with server.client() as hw:  # a long project name in the picker must not widen the page
        hw.create_project(f"a-project-with-a-rather-long-name-{time.time_ns() % 10**9}")
    tab = Console(browser, server, width=360, height=740)
    page = tab.page
    try:
        tab.sign_in()
        # Given a phone: the header is the brand and a Menu button; navigation and switcher folded
        menu = page.get_by_role("button", name="Menu")
        assert menu.get_attribute("aria-expanded") == "false"
        sync_api.expect(page.get_by_role("link", name="Runs", exact=True)).to_be_hidden()
        sync_api.expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        header_height = page.locator("header").bounding_box()["height"]
        assert header_height < 70, header_height
        # When the menu opens
        menu.click()
        close = page.get_by_role("button", name="Close menu")
        assert close.get_attribute("aria-expanded") == "true"
        sync_api.expect(page.get_by_role("link", name="Runs", exact=True)).to_be_visible()
        sync_api.expect(page.locator("header").get_by_label("Project", exact=True)).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        tab.shot("narrow-menu")
        # (Escape folds it and gives the focus back to its button, as a keyboard user expects)
        page.get_by_role("link", name="Actions", exact=True).focus()
        page.keyboard.press("Escape")
        sync_api.expect(page.get_by_role("button", name="Menu")).to_be_focused()
        sync_api.expect(page.get_by_role("link", name="Runs", exact=True)).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        # Then choosing a page goes there and folds the menu again
        page.get_by_role("link", name="Runs", exact=True).click()
        page.get_by_role("heading", name="Runs", level=1).wait_for()
        sync_api.expect(page.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")
        sync_api.expect(page.get_by_role("link", name="Runs", exact=True)).to_be_hidden()
    finally:
        tab.close()


#: a pipeline with an approval gate and a step that runs when an execution is terminated
RELEASE = {
    "variables": [{"key": "TARGET", "value": "eu", "settable": True}],
    "steps": [
        {"name": "build", "action": "counter", "parameters": {"lines": "2"}, "timeout": 300},
        {"name": "gate", "type": "WAIT_FOR_APPROVE"},
        {"name": "ship", "action": "counter", "parameters": {"lines": "1"}},
        {"name": "clean-up", "action": "counter", "parameters": {"lines": "1"}, "trigger_time": "ON_TERMINATE"},
    ],
}


def test_a_gated_pipeline_is_approved_and_terminated_in_the_browser(console: Console, server: LiveServer) -> None:
    page = console.page
    with server.client() as hw:
        hw.put_pipeline("release", RELEASE)
    console.sign_in()
    # Given the pipeline's page, reached from the pipelines list
    page.get_by_role("link", name="Pipelines").click()
    page.get_by_role("link", name="release").click()
    page.get_by_role("heading", name="Pipeline release").wait_for()
    assert console.unlabelled_controls() == []
    # the approval gate is labelled as one (not as a container)
    sync_api.expect(page.locator("ol.steps li").filter(has_text="gate")).to_contain_text("approval")
    # and a step's timeout says its unit (seconds in a pipeline, where action.json's are minutes)
    sync_api.expect(page.locator("ol.steps li").filter(has_text="build")).to_contain_text("timeout 300 s")
    # When an execution is started and reaches its gate
    page.get_by_role("button", name="Start execution").click()
    page.get_by_role("heading", name=re.compile(r"^Execution pex_")).wait_for()
    status = page.get_by_role("status").filter(has_text="Status")
    sync_api.expect(status).to_contain_text("WAITING_FOR_APPROVE", timeout=30_000)
    timeline = page.get_by_role("list", name="Steps of this execution")
    sync_api.expect(timeline.get_by_role("listitem").filter(has_text="build")).to_contain_text("SUCCESSFUL")
    # Then approving it lets the execution finish
    page.get_by_role("button", name="Approve").click()
    sync_api.expect(status).to_contain_text("SUCCESSFUL", timeout=30_000)
    rows = timeline.get_by_role("listitem")
    sync_api.expect(rows.filter(has_text="ship")).to_contain_text("SUCCESSFUL")
    sync_api.expect(rows.filter(has_text="clean-up")).to_contain_text("NOT_EXECUTED")
    assert page.get_by_role("button", name="Terminate").count() == 0
    assert page.locator(".timeline-bar").count() >= 2  # the steps that ran are drawn as bars
    # the gate says who approved it and when
    sync_api.expect(rows.filter(has_text="gate")).to_contain_text(re.compile(r"approved by admin at \S"))
    # and a step's own log opens in place: the log of the run it started
    build = rows.filter(has_text="build")
    build.get_by_text("Log of build").click()
    step_log = page.get_by_role("log", name="Log of step build")
    sync_api.expect(step_log).to_contain_text("line 2 of 2")
    assert "line 1 of 1" not in step_log.inner_text()  # not ship's lines
    console.shot("pipeline-execution")
    approved_id = page.get_by_role("heading", name=re.compile(r"^Execution pex_")).inner_text().split()[-1]

    # When a second execution is terminated at its gate
    page.get_by_role("link", name="Pipeline release").click()
    page.get_by_role("button", name="Start execution").click()
    sync_api.expect(page.get_by_role("heading", name=re.compile(r"^Execution pex_"))).not_to_have_text(
        f"Execution {approved_id}"
    )
    status = page.get_by_role("status").filter(has_text="Status")
    sync_api.expect(status).to_contain_text("WAITING_FOR_APPROVE", timeout=30_000)
    page.get_by_role("button", name="Terminate").click()
    # Then it ends TERMINATED after running its ON_TERMINATE step, and the gateway agrees
    sync_api.expect(status).to_contain_text("TERMINATED", timeout=30_000)
    rows = page.get_by_role("list", name="Steps of this execution").get_by_role("listitem")
    sync_api.expect(rows.filter(has_text="clean-up")).to_contain_text("SUCCESSFUL")
    sync_api.expect(rows.filter(has_text="ship")).to_contain_text("NOT_EXECUTED")
    terminated_id = page.get_by_role("heading", name=re.compile(r"^Execution pex_")).inner_text().split()[-1]
    with server.client() as hw:
        assert hw.get_execution("release", approved_id)["status"] == "SUCCESSFUL"
        final = hw.get_execution("release", terminated_id)
    assert final["status"] == "TERMINATED"
    assert {s["name"]: s["status"] for s in final["steps"]}["gate"] == "TERMINATED"
    console.shot("pipeline-terminated")


def test_offline_gateway_shows_a_banner(browser: Any, tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "gone").start()
    tab = Console(browser, live)
    try:
        tab.sign_in()
        # When the gateway goes away
        live.kill()
        # Then the console says so instead of failing silently
        tab.page.get_by_role("status").filter(has_text="the console keeps trying").wait_for(timeout=20_000)
    finally:
        tab.problems = [p for p in tab.problems if "CSP" in p]
        tab.close()
