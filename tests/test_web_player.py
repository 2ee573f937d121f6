# ruff: noqa: F811 - the browser fixtures imported from test_web_browser are used as test arguments
"""The episode player in a real Chromium (Selenium + Debian's chromium-driver) against a real ``serve``: the drawn
agent position equals the recording's at every step it is moved to (scrubber, keyboard, play, the URL), and an
unrecorded episode shows the one-line notice. Screenshots go to $TOWNLET_TEST_ARTIFACTS (or a temp folder)."""

import json
import signal

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from typer.testing import CliRunner

from tests.helpers import free_port, wait_for
from tests.test_web_browser import (  # noqa: F401 - the browser tests' fixtures, shared
    _serve,
    artifacts,
    browser,
    cli_json,
    console_errors,
    demo,
    live_trainer,
    open_page,
    own_console,
    site,
)
from townlet_cli.app import app as cli

pytestmark = pytest.mark.slow


def steps_of(demo, episode: int, agent: int) -> list[dict]:
    out = CliRunner().invoke(cli, ["replay", "--run", "1", "-e", str(episode), "--steps", "--agent", str(agent),
                                   "--json", "--db", str(demo)])  # fmt: skip
    assert out.exit_code == 0, out.output
    return [json.loads(line) for line in out.stdout.splitlines()]


def shown(browser) -> dict:
    status = browser.find_element(By.ID, "player-status")
    return {k: int(status.get_attribute(f"data-{k}")) for k in ("step", "agent", "row", "col")} | {"text": status.text}


def wait_step(browser, step: int) -> dict:
    WebDriverWait(browser, 10).until(lambda d: shown(d)["step"] == step)
    return shown(browser)


def expected_cell(steps: list[dict], step: int) -> tuple[int, int]:
    return steps[min(step, len(steps)) - 1]["row"], steps[min(step, len(steps)) - 1]["col"]


def test_the_player_draws_the_recorded_position_at_every_step_it_is_moved_to(browser, site, demo, artifacts):
    recordings = cli_json("recordings", "--run", "1", "--json", "--db", str(demo))["recordings"]
    episode = recordings[-1]["episode"]
    steps = steps_of(demo, episode, 2)
    open_page(browser, f"{site}/runs/1/episodes/{episode}?agent=2&step=5", "#player-status")
    now = shown(browser)
    assert (now["step"], now["agent"]) == (5, 2) and (now["row"], now["col"]) == expected_cell(steps, 5)
    assert f"agent 2 at row {now['row']}, col {now['col']}" in now["text"] and steps[4]["action"] in now["text"]
    grid = browser.find_element(By.ID, "player-grid")
    assert int(grid.get_attribute("width")) % 8 == 0  # the recording's 8x8 grid, whole cells
    browser.save_screenshot(str(artifacts / "player-step5.png"))

    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)  # keyboard: one step on
    now = wait_step(browser, 6)
    assert (now["row"], now["col"]) == expected_cell(steps, 6)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    now = wait_step(browser, 4)
    assert (now["row"], now["col"]) == expected_cell(steps, 4)

    target = min(len(steps), 60)  # the scrubber, as a user drags it
    browser.execute_script(
        "const s = document.getElementById('player-scrub'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input', {bubbles: true}));", target)  # fmt: skip
    now = wait_step(browser, target)
    assert (now["row"], now["col"]) == expected_cell(steps, target)
    assert browser.current_url.endswith(f"?agent=2&step={target}")  # shareable: the URL holds agent and step
    meters = {m.get_attribute("data-meter"): float(m.get_attribute("data-value"))
              for m in browser.find_elements(By.CSS_SELECTOR, ".player-meter")}  # fmt: skip
    assert meters["energy"] == steps[target - 1]["meter_energy"]
    marks = browser.find_elements(By.CSS_SELECTOR, "#player-marks .mark")
    uses = [s["step"] for s in steps if s["affordance"] is not None]
    assert sorted(int(m.get_attribute("data-step")) for m in marks if "use" in m.get_attribute("class")) == uses
    browser.save_screenshot(str(artifacts / "player-scrubbed.png"))

    browser.find_element(By.ID, "player-play").click()  # play: the steps advance on their own
    WebDriverWait(browser, 15).until(lambda d: shown(d)["step"] > target + 3 or shown(d)["step"] == len(steps))
    button = browser.find_element(By.ID, "player-play")
    if button.text == "pause":  # still playing (at the episode's end it stops by itself)
        button.click()
    now = shown(browser)
    assert now["step"] > target
    assert (now["row"], now["col"]) == expected_cell(steps, now["step"])
    assert console_errors(browser) == []


def test_an_unrecorded_episode_says_which_were_recorded(browser, site, demo, artifacts):
    recorded = {r["episode"] for r in cli_json("recordings", "--run", "1", "--json", "--db", str(demo))["recordings"]}
    episode = min(set(range(1, 9)) - recorded)
    open_page(browser, f"{site}/runs/1/episodes/{episode}", "#player-notice")
    notice = browser.find_element(By.ID, "player-notice").text
    listed = ", ".join(map(str, sorted(recorded)))
    assert notice == f"episode {episode} was not recorded; recorded episodes of run 1: {listed} " \
                     "(townlet-telemetry recordings --run 1)"  # fmt: skip
    assert browser.find_elements(By.ID, "episode-agents")  # the episode's agents still show
    browser.save_screenshot(str(artifacts / "player-unrecorded.png"))


def test_the_run_and_agent_pages_link_the_recorded_episodes_to_the_player(browser, site, demo):
    recorded = [r["episode"] for r in cli_json("recordings", "--run", "1", "--json", "--db", str(demo))["recordings"]]
    open_page(browser, f"{site}/runs/1", "#recordings a")
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#recordings a")]
    assert [int(h.rsplit("/", 1)[1]) for h in links] == recorded
    open_page(browser, f"{site}/runs/1/agents/3", "#agent-recordings a")
    first = browser.find_elements(By.CSS_SELECTOR, "#agent-recordings a")[0]
    first.click()
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "player-status"))
    assert shown(browser)["agent"] == 3 and shown(browser)["step"] == 0


def test_the_live_grid_advances_during_a_real_train_live(browser, tmp_path, processes, artifacts):
    db, port = tmp_path / "live.db", free_port()
    trainer = live_trainer(db, port, processes, "--episodes", "100000", "--agents", "4", "--device", "cpu")
    wait_for(lambda: db.exists() and "1" in CliRunner().invoke(cli, ["runs", "--json", "--db", str(db)]).stdout,
             "the trainer's run")  # fmt: skip
    base = _serve(db, processes, "--live", f"ws://127.0.0.1:{port}")
    open_page(browser, f"{base}/runs/1", "#live-grid-status")
    status = lambda: browser.find_element(By.ID, "live-grid-status")  # noqa: E731
    WebDriverWait(browser, 60).until(lambda d: status().get_attribute("data-frame"))
    first = (int(status().get_attribute("data-episode")), int(status().get_attribute("data-step")))
    WebDriverWait(browser, 60).until(
        lambda d: (int(status().get_attribute("data-episode")), int(status().get_attribute("data-step"))) != first
    )
    assert int(status().get_attribute("data-shown")) >= 2
    assert 0 <= int(status().get_attribute("data-row")) < 8 and "missed" in status().text
    browser.execute_script("document.getElementById('live-grid-box').scrollIntoView()")
    browser.save_screenshot(str(artifacts / "live-grid.png"))
    trainer.send_signal(signal.SIGINT)
    trainer.communicate(timeout=60)
    assert not [e for e in console_errors(browser) if "ws://" not in e["message"]]
