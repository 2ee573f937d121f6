# ruff: noqa: F811 - the browser fixtures imported from test_web_browser are used as test arguments
"""The compare page in a real Chromium against a real ``serve`` of real runs: tick runs of two configs on the
runs page, compare them, and the page shows both groups' IQM curves with their bands and a score table whose
numbers are ``compare --json``'s; ``/api/compare`` answers the same bytes; a bad selection is one line."""

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import cli_ok
from tests.test_web_browser import (  # noqa: F401 - the browser tests' fixtures, shared
    _serve,
    artifacts,
    browser,
    cells,
    console_errors,
    open_page,
    own_console,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_configs(tmp_path_factory) -> Path:
    """Runs 1-3: learning rate 1e-3, seeds 0-2; runs 4-6: 3e-3, seeds 0-2, named 'lr 3e-3' and tagged fast; 6
    episodes x 3 agents each."""
    where = tmp_path_factory.mktemp("compare")
    fast = where / "fast.toml"
    fast.write_text("[population]\nlearning_rate = 0.003\n")
    db = where / "townlet.db"
    for config in ((), ("-c", str(fast), "--name", "lr 3e-3", "--tag", "fast")):
        for seed in range(3):
            cli_ok("train", "-n", "6", "-a", "3", "-s", str(seed), "-d", "cpu", *config, "--db", str(db))
    return db


@pytest.fixture(scope="module")
def compare_site(two_configs) -> Iterator[str]:
    started: list[subprocess.Popen] = []
    yield _serve(two_configs, started)
    for proc in started:
        proc.kill()
        proc.communicate()


def test_ticking_two_groups_of_runs_compares_them_with_the_clis_numbers(browser, compare_site, two_configs, artifacts):
    open_page(browser, f"{compare_site}/", "#runs-table table")
    for run in (1, 2, 3, 4, 5, 6):
        browser.find_element(By.CSS_SELECTOR, f"input.pick[data-run='{run}']").click()
    browser.find_element(By.ID, "compare-selected").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#compare-curves canvas"))
    assert browser.current_url.endswith("/compare?run=1&run=2&run=3&run=4&run=5&run=6")  # the URL holds it
    report = json.loads(cli_ok("compare", "1", "2", "3", "4", "5", "6", "--json", "--db", str(two_configs)).stdout)
    rows = cells(browser.find_element(By.CSS_SELECTOR, "#compare-scores table"))
    assert [(row[0], row[1]) for row in rows] == [("config 1", "1 2 3"), ("lr 3e-3", "4 5 6")]
    for row, group in zip(rows, report["groups"], strict=True):
        shown = [float(row[i]) for i in (3, 5, 6)]
        assert shown == pytest.approx([group["mean"], group["median"], group["iqm"]], abs=5e-4)
        low, high = (float(v) for v in row[7].strip("[]").split(", "))
        assert (low, high) == pytest.approx(tuple(group["iqm_ci"]), abs=5e-4)
    pair = report["improvement"][0]
    assert browser.find_element(By.CSS_SELECTOR, "p.improvement").text.startswith(
        f"P({pair['x']} > {pair['y']}) = {round(pair['probability'], 3):g}"
    )
    legend = browser.find_element(By.CSS_SELECTOR, "#compare-curves .u-legend").text
    assert f"{report['groups'][0]['label']} IQM" in legend and f"{report['groups'][1]['label']} IQM" in legend
    diff = cells(browser.find_element(By.CSS_SELECTOR, "#compare-diff table"))
    assert diff == [["population.learning_rate", "0.001", "0.003"]]
    browser.save_screenshot(str(artifacts / "compare.png"))
    assert console_errors(browser) == []


def test_the_runs_page_shows_names_and_tags_and_filters_by_them(browser, compare_site):
    open_page(browser, f"{compare_site}/", "#runs-table table")
    rows = cells(browser.find_element(By.CSS_SELECTOR, "#runs-table table"))
    assert [(row[0], row[11], row[12]) for row in rows][:2] == [
        ("run 6", "lr 3e-3", "fast"),
        ("run 5", "lr 3e-3", "fast"),
    ]
    browser.find_element(By.ID, "runs-filter").send_keys("FAST")
    WebDriverWait(browser, 10).until(lambda d: len(cells(d.find_element(By.CSS_SELECTOR, "#runs-table table"))) == 3)
    assert browser.current_url.endswith("/?filter=FAST")
    assert [row[0] for row in cells(browser.find_element(By.CSS_SELECTOR, "#runs-table table"))] == [
        "run 6",
        "run 5",
        "run 4",
    ]


def test_the_api_answers_compare_jsons_bytes_and_refuses_a_bad_selection_in_one_line(compare_site, two_configs):
    with urllib.request.urlopen(f"{compare_site}/api/compare?reps=1000&last=3&profile=1", timeout=30) as response:
        served = response.read()
    printed = cli_ok("compare", "--json", "--reps", "1000", "--last", "3", "--profile", "--db", str(two_configs))
    assert served == printed.stdout_bytes
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{compare_site}/api/compare?metric=speed", timeout=30)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"].startswith("no metric 'speed'")
