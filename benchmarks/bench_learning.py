"""Does the learner climb the whole curriculum? N seeds of the default config against the same seeds of the learner
before it (configs/learner_0_11.toml), trained by the product into one SQLite file and judged by the product:

- ``train --seeds 0-4 --parallel 2 --tag learner-0.12`` (configs/default.toml) and the same with
  ``--config configs/learner_0_11.toml --tag learner-0.11``: real ``train`` processes, one run per seed;
- per run (``episodes --json``): the episode at which each stage was first played, the final stage, and after each
  stage change the episodes until the mean survival of the episodes since the change (the last 20 of them at
  most) first reaches the advance threshold again ("recovered"), or ``-`` when it never did;
- across seeds, IQM with its 95 % stratified-bootstrap interval (``townlet.analysis.statistics``, what
  ``compare`` uses) of the episodes to each stage (a seed that never got there counts as the episode count + 1,
  a lower bound, and is said so), and ``compare --tag learner-0.12 --tag learner-0.11 --group-by tag --json``
  of the final survival and survival over baseline over the last 20 episodes, with P(0.12 > 0.11).

Episodes, not seconds, are the measure (the machine is shared); the seconds per seed are printed for scale.

Run: `.venv/bin/python benchmarks/bench_learning.py [--seeds 0-4] [--episodes 300] [--parallel 2] [--db PATH]`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from townlet.analysis import statistics as stats
from townlet.config import load_config

ROOT = Path(__file__).resolve().parent.parent
LEARNERS = (
    ("learner-0.12", ROOT / "configs" / "default.toml"),
    ("learner-0.11", ROOT / "configs" / "learner_0_11.toml"),
)
RECOVERY_WINDOW = 20
REPS = 50_000


def cli(*args: str, db: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "townlet_cli", *args, "--db", str(db)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"townlet-telemetry {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def runs_tagged(db: Path, tag: str) -> list[dict]:
    """The runs carrying ``tag``, by seed (none yet is no error here: ``runs --tag`` refuses an unknown tag)."""
    runs = [r for r in json.loads(cli("runs", "--json", db=db)) if tag in r["tags"]]
    return sorted(runs, key=lambda r: r["seed"])


def climb(db: Path, run: int, threshold: float) -> dict:
    """First episode of each stage, final stage, and episodes to recover after each change, of one run."""
    episodes = json.loads(cli("episodes", "--run", str(run), "--json", db=db))
    first: dict[int, int] = {}
    recovered: dict[int, int | None] = {}
    since: list[float] = []
    for row in episodes:
        stage = row["curriculum_stage"]
        if stage not in first:
            first[stage] = row["episode"]
            since = []
            if stage > 1:
                recovered[stage] = None
        since.append(row["survival_mean"])
        if stage > 1 and recovered[stage] is None and statistics.fmean(since[-RECOVERY_WINDOW:]) >= threshold:
            recovered[stage] = row["episode"] - first[stage] + 1
    last20 = [row["survival_mean"] for row in episodes[-20:]]
    return {"first": first, "final": episodes[-1]["curriculum_stage"], "recovered": recovered,
            "last20": statistics.fmean(last20), "episodes": len(episodes)}  # fmt: skip


def interval(values: list[float]) -> str:
    found = stats.iqm_interval(values, reps=REPS, seed=0)
    if found.low is None:
        return f"{found.estimate:.1f}"
    return f"{found.estimate:.1f} [{found.low:.1f}, {found.high:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--db", type=Path, default=None, help="reuse or keep this file (default: a temp file)")
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="bench_learning_")) / "learning.db"
    config = load_config(ROOT / "configs" / "default.toml")
    stages = len(config.curriculum.stages)
    threshold = config.curriculum.advance_threshold * config.environment.max_steps
    seconds: dict[str, float] = {}
    for tag, path in LEARNERS:
        if runs_tagged(db, tag) if db.exists() else []:
            print(f"{tag}: runs already in {db}, not trained again", flush=True)
            continue
        started = time.perf_counter()
        print(f"training {tag}: seeds {args.seeds}, {args.episodes} episodes, {args.agents} agents ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "townlet_cli", "train", "--config", str(path), "--seeds", args.seeds,
             "--parallel", str(args.parallel), "--episodes", str(args.episodes), "--agents", str(args.agents),
             "--device", "cpu", "--tag", tag, "--db", str(db)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        seconds[tag] = time.perf_counter() - started
    print(f"\ndatabase: {db}   threshold {threshold:.0f} steps, {stages} stages\n")
    results: dict[str, list[dict]] = {}
    for tag, _ in LEARNERS:
        rows = runs_tagged(db, tag)
        results[tag] = [climb(db, row["id"], threshold) | {"seed": row["seed"]} for row in rows]
        per_seed = f" ({seconds[tag] * args.parallel / len(rows):.0f} s of CPU per seed)" if tag in seconds else ""
        print(f"{tag}{per_seed}")
        print("  seed  first episode of stage " + " ".join(f"{s:>5}" for s in range(2, stages + 1))
              + "  final  last-20 survival  recovered after change (episodes) " + " ".join(
                  f"{s:>4}" for s in range(2, stages + 1)))  # fmt: skip
        for r in results[tag]:
            firsts = " ".join(f"{r['first'].get(s, '-'):>5}" for s in range(2, stages + 1))
            again = " ".join(f"{r['recovered'].get(s) or '-':>4}" for s in range(2, stages + 1))
            print(f"  {r['seed']:>4}  {'':>22}{firsts}  {r['final']:>5}  {r['last20']:>16.1f}  {'':>34}{again}")
        reached_last = sum(r["final"] == stages for r in results[tag])
        print(f"  {reached_last} of {len(results[tag])} seeds reached stage {stages}")
        for s in range(2, stages + 1):
            reached = [r["first"].get(s, r["episodes"] + 1) for r in results[tag]]
            never = sum(s not in r["first"] for r in results[tag])
            note = f" ({never} never reached it: counted as {results[tag][0]['episodes'] + 1})" if never else ""
            print(f"  episodes to stage {s}: IQM {interval(reached)}{note}")
        print()
    for metric in ("survival", "survival-over-baseline"):
        report = json.loads(cli("compare", "--tag", LEARNERS[0][0], "--tag", LEARNERS[1][0], "--group-by", "tag",
                                "--metric", metric, "--last", "20", "--json", db=db))  # fmt: skip
        groups = {g["label"]: g for g in report["groups"]}
        for tag, _ in LEARNERS:
            g = groups[tag]
            ci = g["iqm_ci"]
            shown = f"{g['iqm']:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")
            print(f"final {metric} (last 20 episodes), {tag}: IQM {shown} over {g['n']} seeds")
        for pair in report["improvement"]:
            ci = pair.get("ci")
            shown = f"{pair['probability']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            print(f"  P({pair['x']} > {pair['y']}) = {shown}")


if __name__ == "__main__":
    main()
