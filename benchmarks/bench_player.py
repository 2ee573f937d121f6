"""The dashboard's player and live grid in headless Chromium (Debian's chromium + chromium-driver), measured in
one run against baselines taken in the same run:

- first draw of a recorded episode's player (ms since navigation), against the same page's navigation to
  ``DOMContentLoaded`` (what any page costs before its script runs);
- frames a second the player can draw (steps moved by the keyboard, synchronously), against filling the same
  canvas with one colour as often (the bare cost of a canvas frame);
- live grid latency trainer -> drawn on the page (each frame's ``sent_at`` to its drawing), against the same
  frames' latency to a bare Python websocket client.

Run: `.venv/bin/python benchmarks/bench_player.py [--agents 64] [--frames 30]`.
"""

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websockets.sync.client import connect

from townlet.telemetry.payloads import SUBSCRIBE_FRAMES


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "townlet_cli", *args], check=True, capture_output=True)


def serve(db: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "townlet_cli", "serve", "--db", str(db), "--port", str(port), *extra]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{base}/api/config", timeout=2)
            return proc, base
        except OSError:
            time.sleep(0.1)
    raise SystemExit("serve did not answer")


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


NAVIGATION_READY = "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd;"
DRAW_RATE = """
const n = arguments[0];
const canvas = document.getElementById('player-grid');
let t = performance.now();
for (let i = 0; i < n; i++) {
  document.dispatchEvent(new KeyboardEvent('keydown', {key: i % 2 ? 'ArrowLeft' : 'ArrowRight'}));
}
const player = performance.now() - t;
const ctx = canvas.getContext('2d');
t = performance.now();
for (let i = 0; i < n; i++) { ctx.fillStyle = i % 2 ? '#fff' : '#eee'; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.getImageData(0, 0, 1, 1); }
return [player, performance.now() - t];
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "t.db"
        cli("train", "--episodes", "10", "--agents", str(args.agents), "--device", "cpu", "--db", str(db))
        server, base = serve(db)
        driver = browser()
        try:
            firsts, loads = [], []
            for _ in range(5):
                driver.get(f"{base}/runs/1/episodes/10?agent=0&step=0")
                status = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "player-status"))
                firsts.append(float(status.get_attribute("data-first-draw-ms")))
                loads.append(driver.execute_script(NAVIGATION_READY))
            player_ms, bare_ms = driver.execute_script(DRAW_RATE, 400)
            print(f"player, {args.agents} agents recorded, 10th episode: first draw {statistics.median(firsts):.0f} ms "
                  f"after navigation (median of 5); the page's DOMContentLoaded {statistics.median(loads):.0f} ms; "
                  f"ratio {statistics.median(firsts) / statistics.median(loads):.2f}")  # fmt: skip
            print(f"player redraws: {400 / player_ms * 1000:,.0f} frames/s; a bare canvas fill: "
                  f"{400 / bare_ms * 1000:,.0f} frames/s; ratio {player_ms / bare_ms:.1f}x the bare cost")  # fmt: skip
        finally:
            server.terminate()
            server.wait()
        live_db, port = Path(tmp) / "live.db", free_port()
        train = [sys.executable, "-m", "townlet_cli", "train", "--episodes", "100000", "--agents", str(args.agents),
                 "--device", "cpu", "--db", str(live_db), "--live", f"127.0.0.1:{port}"]  # fmt: skip
        trainer = subprocess.Popen(train, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not live_db.exists():
                time.sleep(0.1)
            time.sleep(2)
            server, base = serve(live_db, "--live", f"ws://127.0.0.1:{port}")
            driver.get(f"{base}/runs/1")
            status = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "live-grid-status"))
            page, seen = [], set()
            while len(page) < args.frames:
                frame = status.get_attribute("data-frame")
                if frame and frame not in seen:
                    seen.add(frame)
                    page.append(float(status.get_attribute("data-latency-ms")))
                time.sleep(0.02)
            bare = []
            with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
                ws.send(SUBSCRIBE_FRAMES)
                while len(bare) < args.frames:
                    message = json.loads(ws.recv(timeout=30))
                    if message.get("kind") == "grid_frame":
                        bare.append((time.time() - message["sent_at"]) * 1000)
            print(f"live grid latency trainer -> drawn in Chromium: median {statistics.median(page):.1f} ms, max "
                  f"{max(page):.0f} ms over {len(page)} frames; to a bare Python websocket client: median "
                  f"{statistics.median(bare):.1f} ms, max {max(bare):.0f} ms")  # fmt: skip
        finally:
            trainer.send_signal(signal.SIGINT)
            trainer.wait(60)
            server.terminate()
            server.wait()
            driver.quit()


if __name__ == "__main__":
    main()
