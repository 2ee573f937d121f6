"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium (with Debian's chromedriver),
against real ``serve`` and ``train --live`` processes. Screenshots of each page go to $TOWNLET_TEST_ARTIFACTS
(or a temp folder): never into the checkout."""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from typer.testing import CliRunner

from tests.helpers import free_port, v1_copy, wait_for
from townlet.telemetry.dto import DTO_BY_VERSION, FIELD_NAMES
from townlet.telemetry.live import WebSocketBroadcaster
from townlet_cli.app import app as cli

pytestmark = pytest.mark.slow
runner = CliRunner()
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: Counting the drawn pixels of every canvas on the page.
DRAWN_PIXELS = """
return Array.from(document.querySelectorAll('canvas')).map((c) => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let drawn = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i]) drawn++;
  return drawn;
});
"""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("TOWNLET_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists() and not shutil.which(Path(p).name)]
    if missing:
        pytest.fail(f"browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing): "
                    "apt-get install chromium chromium-driver (.ci/run does)")  # fmt: skip
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def own_console(browser) -> Iterator[None]:
    """Each test reads only its own pages' console: the browser is shared by the module, and a page left
    following a live stream goes on logging its reconnect attempts until it is navigated away."""
    browser.get("about:blank")
    browser.get_log("browser")
    yield
    browser.get("about:blank")


def live_trainer(db: Path, port: int, processes: list, *args: str) -> subprocess.Popen:
    """``train ARGS --db DB --live 127.0.0.1:PORT`` as a real process, stopped by the ``processes`` fixture."""
    trainer = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", *args, "--db", str(db), "--live", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(trainer)
    return trainer


def _serve(db: Path | str, processes: list, *extra: str) -> str:
    """A real ``serve`` process on a free port; its base URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "serve", "--db", str(db), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(proc)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/api/config", timeout=5) as response:
                return response.status == 200
        except OSError:
            return proc.poll() is None and False

    wait_for(answers, "serve answering", timeout=60)
    return base


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """Two real runs like `make demo` leaves: run 1 (8 episodes x 4 agents, the curriculum moving), run 2."""
    db = tmp_path_factory.mktemp("demo") / "townlet.db"
    config = db.parent / "fast.toml"
    config.write_text("[curriculum]\nwindow = 2\nadvance_threshold = 0.01\n")
    for episodes in ("8", "2"):
        result = runner.invoke(cli, ["train", "--episodes", episodes, "--agents", "4", "--device", "cpu",
                                     "--config", str(config), "--db", str(db)])  # fmt: skip
        assert result.exit_code == 0, result.output
    return db


@pytest.fixture(scope="module")
def site(demo) -> Iterator[str]:
    started: list[subprocess.Popen] = []
    yield _serve(demo, started)
    for proc in started:
        proc.kill()
        proc.communicate()


def cli_json(*args: str) -> dict:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def open_page(browser, url: str, ready: str) -> None:
    browser.get_log("browser")  # start each page with an empty console
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))


def console_errors(browser) -> list[dict]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def cells(table) -> list[list[str]]:
    return [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]


def headers(table) -> list[str]:
    return [th.text for th in table.find_elements(By.TAG_NAME, "th")]


def fields_of(table) -> list[str]:
    """The DTO field each column of a table shows (its heading is a readable word; the field is its title)."""
    return [th.get_attribute("data-field") for th in table.find_elements(By.TAG_NAME, "th")]


def same_number(shown: str, value) -> bool:
    if value is None:
        return shown == ""
    if isinstance(value, str):
        return shown == value
    return abs(float(shown) - value) <= 0.0005 * max(1.0, abs(value))


def test_the_runs_page_lists_every_run_newest_first(browser, site, artifacts):
    open_page(browser, f"{site}/", "main table")
    rows = cells(browser.find_element(By.CSS_SELECTOR, "main table"))
    assert [row[0] for row in rows] == ["run 2", "run 1"]
    assert rows[1][1:2] == ["finished"] and rows[1][4:6] == ["4", "8"]
    browser.save_screenshot(str(artifacts / "runs.png"))
    assert console_errors(browser) == []


def test_the_run_page_draws_its_charts_and_heat_map_without_console_errors(browser, site, artifacts):
    open_page(browser, f"{site}/runs/1", "canvas.heatmap")
    audits = ("every reward matches", "baseline flags (below 0.5 × baseline for 5 episodes)")
    WebDriverWait(browser, 60).until(lambda d: all(a in d.find_element(By.ID, "view").text for a in audits))
    drawn = browser.execute_script(DRAWN_PIXELS)
    assert len(drawn) == 5 and all(count > 100 for count in drawn), drawn  # 3 charts, the heat map and its key
    text = browser.find_element(By.ID, "view").text
    assert "8 episodes shown, the last 8" in text and "one cell per agent and episode" in text
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280  # usable at 1280x800
    browser.save_screenshot(str(artifacts / "run.png"))
    assert console_errors(browser) == []


def test_clicking_an_agent_opens_its_audit_numbers_and_back_returns(browser, site, demo, artifacts):
    open_page(browser, f"{site}/runs/1", "#agents-table a")
    browser.find_element(By.CSS_SELECTOR, "#agents-table a[href='/runs/1/agents/2']").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#agent-episodes table"))
    assert browser.current_url == f"{site}/runs/1/agents/2"
    audit = cli_json("audit", "baselines", "--run", "1", "--agent", "2", "--json", "--db", str(demo))["agents"][0]
    table = browser.find_element(By.CSS_SELECTOR, "#agent-episodes table")
    assert headers(table)[:6] == ["episode", "stage", "baseline", "survival", "reward", "entropy"]
    rows = cells(table)
    assert [int(r[0]) for r in rows] == audit["episodes"]
    columns = ("curriculum_stage", "baseline_survival_steps", "survival_steps", "action_entropy")
    for row, (stage, baseline, survival, entropy) in zip(
        rows, zip(*(audit[c] for c in columns), strict=True), strict=True
    ):
        assert int(row[1]) == stage and int(row[3]) == survival
        assert same_number(row[2], baseline) and same_number(row[5], entropy)
    assert len(browser.execute_script(DRAWN_PIXELS)) == 4
    browser.save_screenshot(str(artifacts / "agent.png"))
    assert console_errors(browser) == []
    browser.back()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Run 1")
    assert browser.current_url == f"{site}/runs/1"


def test_clicking_an_agents_row_in_the_heat_map_opens_that_agent_or_plays_a_recorded_episode(browser, site, demo):
    recorded = {r["episode"] for r in cli_json("recordings", "--run", "1", "--json", "--db", str(demo))["recordings"]}
    unrecorded = min(set(range(1, 9)) - recorded)
    open_page(browser, f"{site}/runs/1", "canvas.heatmap")
    canvas = browser.find_element(By.CSS_SELECTOR, "canvas.heatmap")
    width, height = canvas.size["width"], canvas.size["height"]

    def click(episode: int) -> None:  # eight episodes, eight columns; four agents, four rows: the last row
        x = int(width * ((episode - 0.5) / 8 - 0.5))
        ActionChains(browser).move_to_element_with_offset(canvas, x, int(height * 3 / 8)).click().perform()

    click(unrecorded)
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/runs/1/agents/3"))
    open_page(browser, f"{site}/runs/1", "canvas.heatmap")
    canvas = browser.find_element(By.CSS_SELECTOR, "canvas.heatmap")
    click(8)  # the session's last episode is recorded: the player opens there, following that agent
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/runs/1/episodes/8?agent=3&step=0"))
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "player-status"))
    assert browser.find_element(By.ID, "player-status").get_attribute("data-agent") == "3"


def test_the_episode_page_shows_what_replay_json_holds(browser, site, demo, artifacts):
    open_page(browser, f"{site}/runs/1/episodes/5", "#episode-agents table")
    envelope = cli_json("replay", "--run", "1", "--episode", "5", "--json", "--db", str(demo))
    table = browser.find_element(By.CSS_SELECTOR, "#episode-agents table")
    fields = fields_of(table)
    order = FIELD_NAMES[DTO_BY_VERSION[envelope["schema_version"]]]  # the DTO's order (the JSON's keys are sorted)
    assert fields == [k for k in order if k != "episode"]
    for row, agent in zip(cells(table), envelope["agents"], strict=True):
        for shown, field in zip(row, fields, strict=True):
            assert same_number(shown, agent[field]), (field, shown, agent[field])
    link = browser.find_element(By.LINK_TEXT, "the envelope as JSON")
    assert link.get_attribute("href") == f"{site}/api/runs/1/episodes/5"
    browser.save_screenshot(str(artifacts / "episode.png"))
    assert console_errors(browser) == []


def test_an_unknown_run_is_a_friendly_page(browser, site):
    open_page(browser, f"{site}/runs/99", "main h1")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "no run 99" in browser.find_element(By.ID, "view").text


def test_a_v1_database_renders_its_v1_episodes(browser, tmp_path, processes):
    db = v1_copy(tmp_path)
    assert runner.invoke(cli, ["db", "upgrade", "--db", str(db), "--no-backup"]).exit_code == 0
    base = _serve(db, processes)
    open_page(browser, f"{base}/runs/1/episodes/1", "#episode-agents table")
    assert "schema version 1" in browser.find_element(By.ID, "view").text
    fields = fields_of(browser.find_element(By.CSS_SELECTOR, "#episode-agents table"))
    assert "survival_steps" in fields and "visits_bed" not in fields and "action_entropy" not in fields
    open_page(browser, f"{base}/runs/1", "canvas.heatmap")
    assert all(count > 100 for count in browser.execute_script(DRAWN_PIXELS))
    assert console_errors(browser) == []


def test_live_mode_appends_episodes_from_a_real_trainer_without_a_reload(browser, tmp_path, processes, artifacts):
    db, live_port = tmp_path / "live.db", free_port()
    trainer = live_trainer(db, live_port, processes, "--episodes", "100000", "--agents", "4", "--device", "cpu")

    def stored() -> int:
        if not db.exists():
            return 0
        result = runner.invoke(cli, ["runs", "--json", "--db", str(db)])
        return (
            json.loads(result.stdout)[0]["episodes"] if result.exit_code == 0 and result.stdout.strip() != "[]" else 0
        )

    wait_for(lambda: stored() >= 1, "the trainer's first episode")
    base = _serve(db, processes, "--live", f"ws://127.0.0.1:{live_port}")
    open_page(browser, f"{base}/runs/1", "#episode-count")
    WebDriverWait(browser, 30).until(lambda d: "(connected)" in d.find_element(By.ID, "live-status").text)

    def shown() -> int:
        return int(browser.find_element(By.ID, "episode-count").text.split()[0])

    first = shown()
    WebDriverWait(browser, 60).until(lambda d: shown() >= first + 2)  # new episodes, no reload
    assert browser.find_element(By.ID, "live-status").text.startswith("live: run 1")
    browser.save_screenshot(str(artifacts / "live.png"))
    trainer.send_signal(signal.SIGINT)
    trainer.communicate(timeout=60)
    WebDriverWait(browser, 30).until(lambda d: "run 1 interrupted" in d.find_element(By.ID, "live-status").text)
    before_restart = shown()
    # The trainer comes back on the same address: the page follows it again.
    resumed = live_trainer(db, live_port, processes, "--episodes", "100000", "--device", "cpu", "--resume", "1")
    WebDriverWait(browser, 60).until(lambda d: "(connected)" in d.find_element(By.ID, "live-status").text)
    WebDriverWait(browser, 60).until(lambda d: shown() >= before_restart + 2)
    resumed.send_signal(signal.SIGINT)
    resumed.communicate(timeout=60)
    assert not [e for e in console_errors(browser) if "ws://" not in e["message"]]  # the lost socket may log


def test_the_live_page_never_shows_an_episode_twice_when_a_resume_trains_episodes_again(browser, tmp_path, processes):
    """A run killed after its checkpoint: the resume trains episodes 5-6 again and streams them; the page,
    which already shows them, must not append them a second time (its count stays equal to its last)."""
    db, live_port = tmp_path / "live.db", free_port()
    settings = tmp_path / "often.toml"
    settings.write_text("[training]\ncheckpoint_every = 4\n")
    args = ["--episodes", "6", "--agents", "4", "--device", "cpu", "--db", str(db), "--config", str(settings)]
    first = runner.invoke(cli, ["train", *args])
    assert first.exit_code == 0, first.output
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("DELETE FROM checkpoints WHERE episode = 6")  # as if killed after episode 6
    base = _serve(db, processes, "--live", f"ws://127.0.0.1:{live_port}")
    open_page(browser, f"{base}/runs/1", "#episode-count")
    assert browser.find_element(By.ID, "episode-count").text == "6 episodes shown, the last 6"
    resumed = live_trainer(db, live_port, processes, "--episodes", "100000", "--device", "cpu", "--resume", "1")

    def shown() -> tuple[int, int]:
        words = browser.find_element(By.ID, "episode-count").text.split()  # "N episodes shown, the last E"
        return int(words[0]), int(words[-1])

    WebDriverWait(browser, 90).until(lambda d: shown()[1] >= 9)  # episodes 5 and 6 again, then 7, 8, 9 ...
    count, last = shown()
    assert count == last, f"{count} episodes shown up to episode {last}: some were shown twice"
    resumed.send_signal(signal.SIGINT)
    resumed.communicate(timeout=60)


def test_an_unknown_schema_version_on_the_live_stream_shows_a_banner(browser, demo, processes):
    hello = {"kind": "hello", "schema_version": 99, "run_id": "future", "run": 1, "num_agents": 4}
    stream = WebSocketBroadcaster("127.0.0.1", 0, hello=hello).start()
    try:
        base = _serve(demo, processes, "--live", stream.url)
        open_page(browser, f"{base}/runs/1", "canvas.heatmap")
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "banner").is_displayed())
        text = browser.find_element(By.ID, "banner").text
        assert "schema version 99" in text and "upgrade townlet" in text
        assert len(browser.execute_script(DRAWN_PIXELS)) == 5  # the page still works
    finally:
        stream.close(drain_timeout=0.2)


def test_on_a_big_run_the_flags_show_at_once_and_the_reward_audit_runs_when_asked(browser, demo, processes):
    base = _serve(demo, processes, "--audits-above", "10")  # run 1 has 32 agent rows: "big" here
    open_page(browser, f"{base}/runs/1", "#run-audits")
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "flag-summary"))  # from the kept flags
    assert "reward audit: checking" not in browser.find_element(By.ID, "view").text
    browser.find_element(By.ID, "run-audits").click()
    WebDriverWait(browser, 60).until(lambda d: "every reward matches" in d.find_element(By.ID, "view").text)
    assert console_errors(browser) == []


def _legend_values(browser) -> list[list[str]]:
    """Each chart's legend values as shown (the first, the x value, left out)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('.u-legend')).map((l) => "
        "Array.from(l.querySelectorAll('.u-value')).slice(1).map((v) => v.textContent));"
    )


def test_chart_legends_show_the_last_episodes_numbers_without_hovering(browser, site, demo):
    open_page(browser, f"{site}/runs/1", "canvas.heatmap")
    episodes = cli_json("episodes", "--run", "1", "--json", "--db", str(demo))
    legends = _legend_values(browser)
    assert len(legends) == 3
    survival, reward, epsilon = legends
    last = episodes[-1]
    rolling = sum(e["survival_mean"] for e in episodes[-10:]) / len(episodes[-10:])
    assert [float(v) for v in survival] == pytest.approx(  # 3 decimals shown: half a unit, and float error
        [rolling, last["survival_mean"], last["survival_max"], last["survival_min"], last["baseline_mean"]], abs=5.01e-4
    )
    assert float(reward[1]) == pytest.approx(last["reward_mean"], abs=5.01e-4)
    assert float(epsilon[0]) == pytest.approx(last["epsilon_mean"], abs=5.01e-4)
    titles = browser.execute_script("return current.plots.map((p) => p.axes.map((a) => a.label));")  # drawn on canvas
    assert titles == [
        ["episode", "steps survived"],
        ["episode", "reward (survival − baseline)"],
        ["episode", "epsilon (probability)"],
    ]


def test_every_series_of_a_chart_has_its_own_colour_apart_from_the_stage_marks(browser, site):
    open_page(browser, f"{site}/runs/1/agents/0", "#agent-episodes table")
    colours = browser.execute_script(
        "return Array.from(document.querySelectorAll('.u-legend')).map((l) => "
        "Array.from(l.querySelectorAll('.u-series:not(:first-child) .u-marker')).map((m) => m.style.borderColor));"
    )
    visits = colours[-1]
    assert len(visits) == 4 and len(set(visits)) == 4, visits  # bed, shower, fridge, job
    for chart in colours:
        assert len(set(chart)) == len(chart) and "rgb(87, 96, 106)" not in chart  # never the stage marks' grey


def test_the_heat_map_has_axes_and_a_colour_key_fitted_to_the_data(browser, site, demo):
    open_page(browser, f"{site}/runs/1", "#heat-key")
    grid = cli_json("episodes", "--run", "1", "--json", "--db", str(demo))
    key = browser.find_element(By.ID, "heat-key").text
    assert key.startswith("mean survival (steps):")
    low, high = (float(v) for v in key.removeprefix("mean survival (steps):").split())
    survivals = [
        a["survival_steps"]
        for e in range(1, len(grid) + 1)
        for a in cli_json("replay", "--run", "1", "--episode", str(e), "--json", "--db", str(demo))["agents"]
    ]
    assert (low, high) == (min(survivals), max(survivals))  # one cell per agent and episode here
    heat = browser.find_element(By.CSS_SELECTOR, ".heat").text
    assert "agent" in heat and "episode" in heat
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280


def test_the_agents_table_is_worst_first_sortable_and_filterable(browser, site):
    open_page(browser, f"{site}/runs/1", "#agents-table table")
    answer = json.loads(urllib.request.urlopen(f"{site}/api/runs/1/agents", timeout=10).read())
    rows = cells(browser.find_element(By.CSS_SELECTOR, "#agents-table table"))
    assert [int(r[0]) for r in rows] == [a["agent_idx"] for a in answer["agents"]]
    ratios = [float(r[3]) for r in rows]
    assert ratios == sorted(ratios)
    browser.find_element(By.XPATH, "//div[@id='agents-table']//th[starts-with(., 'agent')]").click()
    assert [int(r[0]) for r in cells(browser.find_element(By.CSS_SELECTOR, "#agents-table table"))] == [0, 1, 2, 3]
    browser.find_element(By.XPATH, "//div[@id='agents-table']//th[starts-with(., 'agent')]").click()
    assert [int(r[0]) for r in cells(browser.find_element(By.CSS_SELECTOR, "#agents-table table"))] == [3, 2, 1, 0]
    browser.find_element(By.ID, "agent-filter").send_keys("1-2")
    assert sorted(int(r[0]) for r in cells(browser.find_element(By.CSS_SELECTOR, "#agents-table table"))) == [1, 2]
    assert 'matching "1-2"' in browser.find_element(By.ID, "agents-note").text


def test_the_runs_page_shows_duration_last_survival_and_the_run_page_its_config(browser, site, demo):
    open_page(browser, f"{site}/", "main table")
    overview = json.loads(urllib.request.urlopen(f"{site}/api/overview", timeout=10).read())
    table = browser.find_element(By.CSS_SELECTOR, "main table")
    assert headers(table)[3] == "duration" and headers(table)[6] == "last mean survival"
    for row, run in zip(cells(table), overview, strict=True):
        assert abs(float(row[6]) - run["last_survival_mean"]) <= 0.05
        assert row[3].endswith(" s")
    open_page(browser, f"{site}/runs/1", "#run-config table")
    settings = dict(cells(browser.find_element(By.CSS_SELECTOR, "#run-config table")))
    assert settings["training.agents"] == "4" and settings["curriculum.window"] == "2"


def test_the_episode_page_steps_to_the_previous_and_next_episodes(browser, site):
    open_page(browser, f"{site}/runs/1/episodes/5", "#episode-agents table")
    assert headers(browser.find_element(By.CSS_SELECTOR, "#episode-agents table"))[:3] == [
        "agent",
        "survival",
        "baseline",
    ]
    browser.find_element(By.LINK_TEXT, "episode 6 →").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Run 1, episode 6")
    browser.find_element(By.LINK_TEXT, "← episode 5").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Run 1, episode 5")
    open_page(browser, f"{site}/runs/1/episodes/8", "#episode-agents table")
    assert "last episode" in browser.find_element(By.CSS_SELECTOR, ".pager").text
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280


def test_live_the_header_follows_the_chart_and_a_finished_run_says_so(browser, tmp_path, processes):
    db, live_port = tmp_path / "live.db", free_port()
    seed = runner.invoke(cli, ["train", "--episodes", "1", "--agents", "4", "--device", "cpu", "--db", str(db)])
    assert seed.exit_code == 0, seed.output  # run 1, so the page has a run to open before the trainer starts
    base = _serve(db, processes, "--live", f"ws://127.0.0.1:{live_port}")
    open_page(browser, f"{base}/", "#runs-table table")
    trainer = live_trainer(db, live_port, processes, "--resume", "1", "--episodes", "40", "--device", "cpu")

    def row() -> list[str]:  # read in one go: the table is redrawn with every live episode
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('#runs-table tbody tr:first-child td'))"
            ".map((td) => td.textContent);"
        )

    WebDriverWait(browser, 90).until(lambda d: int(row()[5]) >= 3)  # the runs page follows the run's row
    assert row()[1] == "running"
    browser.execute_script("document.querySelector(\"#runs-table a[href='/runs/1']\").click();")  # redrawn often
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "episode-count"))

    def shown() -> int:
        return int(browser.find_element(By.ID, "episode-count").text.split()[0])

    start = shown()
    WebDriverWait(browser, 90).until(lambda d: shown() >= start + 2)  # live episodes on the run page
    header, count = browser.execute_script(  # read together: an episode may arrive between two reads
        "return ['run-header', 'episode-count'].map((id) => document.getElementById(id).textContent);"
    )
    assert f"· {count.split()[0]} episodes (the last {count.split()[-1]})" in header
    assert "as of episode" in browser.find_element(By.ID, "as-of").text
    assert browser.find_element(By.ID, "refresh").is_displayed()
    assert trainer.wait(timeout=120) == 0
    WebDriverWait(browser, 30).until(lambda d: "run 1 finished" in d.find_element(By.ID, "live-status").text)
    assert "lost" not in browser.find_element(By.ID, "live-status").get_attribute("class")
    assert shown() == 41
    assert browser.find_element(By.LINK_TEXT, "episode 41").get_attribute("href").endswith("/runs/1/episodes/41")
    browser.find_element(By.ID, "refresh").click()  # the page reads everything again: nothing is out of date
    redrawn = (
        "const a = document.getElementById('as-of'), c = document.getElementById('episode-count');"
        "return a !== null && a.hidden && c !== null && c.textContent.startsWith('41 episodes');"
    )
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(redrawn))


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Path:
    """One run of 700 episodes x 2 agents, written through the store (training that many would take minutes)."""
    from datetime import UTC, datetime

    from townlet.persistence.store import EpisodeMeta, TelemetryStore
    from townlet.telemetry.dto import CURRENT_DTO

    db = tmp_path_factory.mktemp("long") / "long.db"
    now = datetime.now(UTC)
    with TelemetryStore.open(str(db), write=True) as store:
        run = store.create_run(run_uuid="d" * 32, seed=0, device="cpu", num_agents=2, config={})
        for episode in range(1, 701):
            survival = [50 + episode % 97, 60 + episode % 89]
            columns = {
                "agent_idx": range(2), "survival_steps": survival, "baseline_survival_steps": [100.0, 100.0],
                "episode_reward": [s - 100.0 for s in survival], "epsilon": [0.5, 0.5], "curriculum_stage": [1, 1],
                "death_cause": ["energy", "timeout"], "meter_energy": [0.0, 0.5], "meter_hygiene": [0.5, 0.5],
                "meter_satiation": [0.5, 0.5], "meter_money": [0.5, 0.5], "visits_bed": [1, 2], "visits_shower": [0, 1],
                "visits_fridge": [1, 1], "visits_job": [0, 0], "action_entropy": [1.0, 1.2],
            }  # fmt: skip
            agents = CURRENT_DTO.check_columns(columns, {"episode": episode})
            store.write_episode(run, EpisodeMeta(episode, max(survival), 1, 0.01, now, now), agents)
        store.set_run_status(run, "finished")
    return db


def test_a_long_run_is_charted_within_the_point_budget_and_every_episode_is_one_click_away(
    browser, long_run, processes
):
    base = _serve(long_run, processes)
    open_page(browser, f"{base}/runs/1", "#every-episode")
    count = browser.find_element(By.ID, "episode-count").text
    points = int(count.split(" in ")[1].split()[0])
    assert count.startswith("700 episodes shown in ") and points <= 600 and "the last 700" in count
    assert "· 700 episodes (the last 700)" in browser.find_element(By.ID, "run-header").text
    with urllib.request.urlopen(f"{base}/api/runs/1?points={points}", timeout=30) as response:
        body = json.loads(response.read())
    assert len(body["episodes"]) == points and sum(p["episodes"] for p in body["episodes"]) == 700
    browser.find_element(By.ID, "every-episode").click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "episode-count").text == "700 episodes shown, the last 700"
    )
    assert not browser.find_elements(By.ID, "every-episode")
    assert console_errors(browser) == []
