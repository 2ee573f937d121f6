"""The dashboard on a big run: every JSON endpoint's latency and size, and the run page's draw time in Chromium.

Uses the database ``bench_read.py`` builds (cached in the temp dir; default 1024 agents x 10 000 episodes,
about 10 million agent rows) and a real ``townlet-telemetry serve`` process:

- cold: the first request of each endpoint to a freshly started server (the OS file cache is warm: this
  is the server's own start, imports and first query), best of ``--cold`` server starts;
- warm: p50 and p95 over ``--repeat`` further requests (fewer for the endpoints that read every row);
- bytes each endpoint ships;
- the run summary and one agent's trajectory against a bare ``sqlite3`` script running the same queries
  (ratio; target <= 3x), in the same run;
- navigation to the run page until its charts, heat map and baseline flags are drawn, in headless Chromium
  (target <= 1.5 s).

Run: `.venv/bin/python benchmarks/bench_serve.py [--agents 1024] [--episodes 10000] [--repeat 20] [--db PATH]`.
"""

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_read import bench_database  # the benchmarks folder is not a package: found through sys.path

CLI = str(Path(sys.executable).with_name("townlet-telemetry"))

#: The same queries the run summary and the agent endpoint run, by hand (stdlib sqlite3, read-only).
BARE = """
import json, sqlite3, sys, time
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
kind, agent = sys.argv[2], int(sys.argv[3])
started = time.perf_counter()
if kind == "summary":
    rows = c.execute(
        "SELECT e.episode, e.steps, e.curriculum_stage, e.duration_s, count(a.agent_idx), avg(a.survival_steps), "
        "min(a.survival_steps), max(a.survival_steps), avg(a.episode_reward), min(a.episode_reward), "
        "max(a.episode_reward), avg(a.baseline_survival_steps), avg(a.epsilon) FROM episodes e "
        "JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = 1 GROUP BY e.id ORDER BY e.episode").fetchall()
else:
    rows = c.execute(
        "SELECT e.episode, a.agent_idx, a.curriculum_stage, a.baseline_survival_steps, a.survival_steps, "
        "a.action_entropy, a.episode_reward, a.visits_bed, a.visits_shower, a.visits_fridge, a.visits_job "
        "FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id AND a.agent_idx IN (0, 1, 2, ?) "
        "WHERE e.run_id = 1 ORDER BY e.episode, a.agent_idx", (agent,)).fetchall()
body = json.dumps(rows)
print(time.perf_counter() - started)
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(db: Path) -> Iterator[str]:
    """A freshly started ``serve`` process (nothing cached); its base URL once it answers."""
    port = free_port()
    proc = subprocess.Popen([CLI, "serve", "--db", str(db), "--port", str(port)], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/config", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield base
    finally:
        proc.kill()
        proc.wait()


def get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


def bare(db: Path, kind: str, agent: int, repeat: int) -> float:
    """Best query-and-encode time of the bare script (its own process start is not counted)."""
    times = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", BARE, str(db), kind, str(agent)], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        times.append(float(out))
    return min(times)


#: The run page is drawn: its 3 charts, its heat map (and colour key) and the baseline flags' summary.
DRAWN = (
    "return document.querySelectorAll('.uplot canvas').length >= 3 && !!document.querySelector('canvas.heatmap')"
    " && !!document.getElementById('flag-summary')"
)


def page_draw(base: str, tries: int = 3) -> float:
    """Seconds from navigation to the run page having its 3 charts, its heat map and its baseline flags drawn
    (headless Chromium; on a run over ``--audits-above`` rows the reward audit waits for a click)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        best = float("inf")
        for _ in range(tries):
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(f"{base}/runs/1")
            WebDriverWait(driver, 300, poll_frequency=0.01).until(lambda d: d.execute_script(DRAWN))
            best = min(best, time.perf_counter() - started)
        return best
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cold", type=int, default=3, help="server starts for the cold timings")
    parser.add_argument("--audits", action="store_true", help="also the reward audit (minutes on a big run)")
    parser.add_argument("--db", type=Path, help="a database to use instead of building one (its run 1)")
    args = parser.parse_args()
    db = args.db or bench_database(args.agents, args.episodes)
    agent, episode = args.agents // 3, args.episodes // 2
    endpoints = [
        ("runs", "/api/runs", args.repeat),
        ("run summary", "/api/runs/1", args.repeat),
        ("agent", f"/api/runs/1/agents/{agent}", args.repeat),
        ("episode envelope", f"/api/runs/1/episodes/{episode}", args.repeat),
        ("heat map", "/api/runs/1/heatmap?columns=1200&rows=64", args.repeat),
        ("baseline flags", "/api/runs/1/flags", args.repeat),
    ]
    if args.audits:  # reads all rows in Python: minutes on 10 million rows, so measured once
        endpoints += [("reward audit", "/api/runs/1/rewards", 1)]
    print(f"database: {db} ({db.stat().st_size / 2**20:,.0f} MiB, {args.agents * args.episodes:,} agent rows)")
    cold: dict[str, list[float]] = {name: [] for name, _, _ in endpoints}
    for attempt in range(args.cold):
        for name, path, _ in endpoints:
            if attempt and name == "reward audit":
                continue
            with serving(db) as base:
                cold[name].append(get(base + path)[0])
    with serving(db) as base:
        print(f"{'endpoint':18s} {'cold':>9s} {'warm p50':>9s} {'warm p95':>9s} {'n':>3s} {'bytes':>11s}")
        warm: dict[str, float] = {}
        for name, path, repeat in endpoints:
            times, size = [], 0
            for _ in range(repeat):
                elapsed, size = get(base + path)
                times.append(elapsed)
            times.sort()
            warm[name] = statistics.median(times)
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            print(f"{name:18s} {min(cold[name]) * 1e3:7.0f}ms {warm[name] * 1e3:7.0f}ms {p95 * 1e3:7.0f}ms "
                  f"{repeat:3d} {size:11,d}")  # fmt: skip
        for name, kind in (("run summary", "summary"), ("agent", "agent")):
            t_bare = bare(db, kind, agent, 3)
            print(f"{name}: bare sqlite3 query+json {t_bare * 1e3:.0f} ms; cold {min(cold[name]) * 1e3:.0f} ms, "
                  f"ratio {min(cold[name]) / t_bare:.2f}x; warm {warm[name] * 1e3:.0f} ms, "
                  f"ratio {warm[name] / t_bare:.2f}x (target <= 3x)")  # fmt: skip
        print(f"run page drawn (3 charts, heat map, flags), server warm: {page_draw(base):.2f} s (target <= 1.5 s)")
    with serving(db) as base:
        print(f"run page drawn, freshly started server (nothing cached): {page_draw(base, tries=1):.2f} s")


if __name__ == "__main__":
    main()
