"""The dashboard's ASGI app: a thin edge over the read side, like the CLI.

Each endpoint parses its path, opens a ``TelemetryReader`` (read-only: the server never writes the database),
calls the same report builders as the CLI's ``--json`` (``townlet.audit.reports``) and encodes the answer with
the envelope's encoder, so an endpoint and its command carry the same bytes. The page and its chart library
are static files inside the package. Every response forbids third-party scripts (Content-Security-Policy).
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from townlet import __version__
from townlet.analysis.run_selection import BadSelection
from townlet.audit.baselines import Thresholds
from townlet.audit.reports import (
    SESSION_GAP_S,
    agents_report,
    baselines_audits,
    baselines_report,
    buckets_report,
    episodes_report,
    flags_report,
    overview_report,
    rewards_report,
    runs_report,
    sessions_report,
    visits_audits,
    visits_report,
)
from townlet.defaults import AUDITS_ABOVE, MAX_POINTS, POINTS
from townlet.errors import TelemetryError
from townlet.persistence.errors import AgentNotFound, EpisodeNotFound, NoRuns, NotRecorded, RunNotFound
from townlet.persistence.location import INT64_MAX
from townlet.persistence.reader import RunSummary, TelemetryReader
from townlet.persistence.recordings import recordings_report
from townlet.telemetry.dto import DTO_BY_VERSION
from townlet.telemetry.payloads import build_envelope, encode, step_lines
from townlet.telemetry.recording import player_payload
from townlet.web.guard import HostGuard, allowed_hosts
from townlet.web.heatmap import survival_heatmap

STATIC = Path(__file__).parent / "static"
NOT_FOUND = (RunNotFound, EpisodeNotFound, AgentNotFound, NoRuns, NotRecorded)
#: Heat map size the page asks for when it does not say (columns = episodes, rows = agents).
DEFAULT_COLUMNS, MAX_COLUMNS, MAX_ROWS = 800, 2000, 64


class BadRequest(TelemetryError):
    """A path or query part that is not what the endpoint takes (a non-integer run number, say)."""


def json_response(value: Any, status: int = 200) -> Response:
    """The CLI's ``--json`` bytes: sorted keys, compact, one newline."""
    return Response(encode(value) + b"\n", status, media_type="application/json")


def _integer(request: Request, name: str, *, minimum: int = 0) -> int:
    raw = request.path_params.get(name, request.query_params.get(name))
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= INT64_MAX:
        raise BadRequest(f"{name} must be between {minimum} and {INT64_MAX}, got {value}")
    return value


def _query_integer(request: Request, name: str, default: int, maximum: int) -> int:
    if name not in request.query_params:
        return default
    return min(_integer(request, name, minimum=1), maximum)


def _budget(request: Request) -> int:
    """``?points=``: a chart's point budget, 2 to ``MAX_POINTS`` (a 400 naming the range otherwise)."""
    points = _integer(request, "points", minimum=0) if "points" in request.query_params else POINTS
    if not 2 <= points <= MAX_POINTS:
        raise BadRequest(f"points must be between 2 and {MAX_POINTS}, got {points}")
    return points


class Dashboard:
    """Owns the database location, the live stream address the page is served with, and a small cache of
    the run-wide answers that read every agent row (kept per run and per episode count, so a run that grows
    is answered afresh; only in memory: the server never writes the database)."""

    def __init__(
        self, db: str, live: str | None = None, audits_above: int = AUDITS_ABOVE, cache_size: int = 32
    ) -> None:
        self.db, self.live, self.audits_above = db, live, audits_above
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def reader(self) -> TelemetryReader:
        return TelemetryReader(self.db)

    def cached(self, request: Request, answer: Callable[[TelemetryReader, RunSummary], Any], *key: Any) -> Response:
        """The run's answer from the cache when the run has not changed since, else computed and kept."""
        with self.reader() as reader:
            chosen = reader.run(_integer(request, "run", minimum=1))
            full_key = (answer.__name__, chosen, *key)  # the whole runs row: a new episode or status is a new key
            with self._lock:
                body = self._cache.get(full_key)
                if body is not None:
                    self._cache.move_to_end(full_key)
            if body is None:
                body = encode(answer(reader, chosen)) + b"\n"
                with self._lock:
                    self._cache[full_key] = body
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return Response(body, media_type="application/json")

    # -- endpoints ---------------------------------------------------------------------------

    def config(self, request: Request) -> Response:
        known = sorted(DTO_BY_VERSION)
        return json_response(
            {
                "audits_above": self.audits_above,
                "live": self.live,
                "schema_versions": known,
                "session_gap_s": SESSION_GAP_S,
                "version": __version__,
            }
        )

    def runs(self, request: Request) -> Response:
        with self.reader() as reader:
            return json_response(runs_report(reader.runs()))

    def compare(self, request: Request) -> Response:
        """``compare --json``'s bytes for the same selection: ``?run=1&run=2``, ``tag``, ``name_like``, ``where``
        (repeatable), ``group_by``, ``metric``, ``last``, ``at``, ``reps``, ``bootstrap_seed``, ``profile=1``."""
        from townlet.analysis.compare import CompareOptions, compare_report
        from townlet.analysis.statistics import DEFAULT_REPS, DEFAULT_SEED

        q = request.query_params
        number = lambda name: None if q.get(name) is None else _integer(request, name)  # noqa: E731
        options = CompareOptions(
            runs=tuple(int(r) for r in q.getlist("run") if r.isdigit()), tags=tuple(q.getlist("tag")),
            name_like=q.get("name_like"), where=tuple(q.getlist("where")), group_by=q.get("group_by", "config"),
            metric=q.get("metric", "survival"), last=number("last"), at=number("at"),
            reps=DEFAULT_REPS if q.get("reps") is None else _integer(request, "reps"),
            seed=number("bootstrap_seed") or DEFAULT_SEED, profile=q.get("profile") == "1",
        )  # fmt: skip
        with self.reader() as reader:
            return json_response(compare_report(reader, options))

    def overview(self, request: Request) -> Response:
        """The runs page: every run newest first, with what tells them apart (``overview_report``)."""
        with self.reader() as reader:
            return json_response(overview_report(reader))

    def run_config(self, request: Request) -> Response:
        """The configuration the run was trained with, as stored."""

        def run_config(reader: TelemetryReader, run: RunSummary) -> dict[str, Any]:
            return reader.run_config(run)

        return self.cached(request, run_config)

    def sessions(self, request: Request) -> Response:
        return self.cached(request, sessions_report)

    def agents(self, request: Request) -> Response:
        """Every agent over the run's final episodes, worst first by survival over baseline."""
        return self.cached(request, agents_report)

    def run(self, request: Request) -> Response:
        """The run's row (``runs --json``) and its episodes for the charts: at most ``?points=`` buckets of
        consecutive episodes (``episodes --points --json``; default ``POINTS``), one per episode when the run
        has no more. ``/episodes`` has every episode."""
        points = _budget(request)

        def run_summary(reader: TelemetryReader, run: RunSummary) -> dict[str, Any]:
            buckets = reader.episode_buckets(run, points)
            return {"run": run._asdict(), "points": points, "episodes": buckets_report(run.id, buckets)}

        return self.cached(request, run_summary, points)

    def flags(self, request: Request) -> Response:
        """The run's ``audit baselines`` flags at the CLI's default thresholds, without the trajectories: read
        from the flags maintained as episodes are written (revision 0005), whatever the run's size."""

        def flags(reader: TelemetryReader, run: RunSummary) -> dict[str, Any]:
            return flags_report(run, Thresholds(), reader.baseline_flags(run))

        return self.cached(request, flags)

    def episodes(self, request: Request) -> Response:
        def episodes(reader: TelemetryReader, run: RunSummary) -> list[dict[str, Any]]:
            return episodes_report(run.id, reader.episodes(run))

        return self.cached(request, episodes)

    def heatmap(self, request: Request) -> Response:
        columns = _query_integer(request, "columns", DEFAULT_COLUMNS, MAX_COLUMNS)
        rows = _query_integer(request, "rows", MAX_ROWS, MAX_ROWS)

        def heatmap(reader: TelemetryReader, run: RunSummary) -> dict[str, Any]:
            return survival_heatmap(reader, run, columns=columns, rows=rows)

        return self.cached(request, heatmap, columns, rows)

    def rewards(self, request: Request) -> Response:
        return self.cached(request, rewards_report)

    def agent(self, request: Request) -> Response:
        """One agent at full resolution: ``audit baselines --agent``, ``audit visits --agent``, its rewards."""
        agent = _integer(request, "agent")
        thresholds = Thresholds()
        with self.reader() as reader:
            chosen = reader.run(_integer(request, "run", minimum=1))
            baselines = baselines_report(chosen, thresholds, baselines_audits(reader, chosen, thresholds, agent))
            visits = visits_report(chosen, visits_audits(reader, chosen, agent))
            rewards = [row[2] for batch in reader.agent_columns(chosen, ["episode_reward"], [agent]) for row in batch]
        return json_response({"baselines": baselines, "visits": visits, "episode_reward": rewards})

    def episode(self, request: Request) -> Response:
        """The episode's envelope: the bytes ``replay --json`` prints (and the live stream sent)."""
        episode = _integer(request, "episode", minimum=1)
        with self.reader() as reader:
            chosen = reader.run(_integer(request, "run", minimum=1))
            found = reader.episode_agents(chosen, episode)
        return json_response(build_envelope(chosen.run_uuid, episode, found.agents, found.schema_version))

    def recordings(self, request: Request) -> Response:
        """The run's recorded episodes: the bytes ``recordings --json`` prints."""
        with self.reader() as reader:
            chosen = reader.run(_integer(request, "run", minimum=1))
            return json_response(recordings_report(chosen.id, reader.recordings(chosen)))

    def recording(self, request: Request) -> Response:
        """A recorded episode for the player, every recorded agent's steps in one document (``player_payload``);
        404 with the one line ``replay --steps`` says when the episode was not recorded."""
        episode = _integer(request, "episode", minimum=1)
        with self.reader() as reader:
            chosen = reader.run(_integer(request, "run", minimum=1))
            head = reader.recording_header(chosen, episode)
            agents = reader.recorded_agents(chosen, episode, head)
        return json_response(player_payload(head, agents))

    def steps(self, request: Request) -> Response:
        """One recorded agent's steps (``?agent=``, default the first recorded): the bytes ``replay --steps
        --json`` prints, one step a line."""
        episode = _integer(request, "episode", minimum=1)
        agent = _integer(request, "agent") if "agent" in request.query_params else None
        with self.reader() as reader:
            chosen = reader.run(_integer(request, "run", minimum=1))
            head = reader.recording_header(chosen, episode)
            steps = reader.recorded_agent(chosen, episode, head.agents[0] if agent is None else agent, head)
        return Response(step_lines(steps.step_dicts(head)), media_type="application/x-ndjson")

    def page(self, request: Request) -> Response:
        """Every page path (``/``, ``/runs/3/agents/17``) is the one-page app; it routes in the browser."""
        return FileResponse(STATIC / "index.html", media_type="text/html")


def _errors(request: Request, exc: Exception) -> Response:
    """A user-fixable error as one line of JSON: 404 for what is not there, 400 for a bad path, 503 else."""
    status = 404 if isinstance(exc, NOT_FOUND) else 400 if isinstance(exc, BadRequest | BadSelection) else 503
    return json_response({"error": " ".join(str(exc).split())}, status)


def _not_found(request: Request, exc: Exception) -> Response:
    path = request.url.path
    if path.startswith("/api/"):
        return json_response({"error": f"no such endpoint: {path}"}, 404)
    if path.startswith("/static/"):
        return Response(f"no such file: {path}\n", 404, media_type="text/plain")
    return FileResponse(STATIC / "index.html", media_type="text/html")  # the page says what is missing


class SecurityHeaders(BaseHTTPMiddleware):
    """Content-Security-Policy on every response: scripts, styles and data only from this server (and the
    live stream's websocket), nothing from a third party; no framing by other sites."""

    def __init__(self, app: Any, live: str | None) -> None:
        super().__init__(app)
        connect = "'self'" + (f" {live}" if live else "")
        self.policy = (
            f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        )

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = self.policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def create_app(
    db: str,
    live: str | None = None,
    audits_above: int = AUDITS_ABOVE,
    hosts: frozenset[str] = allowed_hosts("127.0.0.1"),
) -> Starlette:
    """The dashboard for the database ``db`` (a path or URL), following the live stream ``live`` if given,
    answering only requests whose ``Host`` is an IP literal or one of ``hosts`` (``guard``)."""
    board = Dashboard(db, live, audits_above)
    api: list[tuple[str, Callable[[Request], Response]]] = [
        ("/api/config", board.config),
        ("/api/runs", board.runs),
        ("/api/overview", board.overview),
        ("/api/runs/{run}", board.run),
        ("/api/runs/{run}/config", board.run_config),
        ("/api/runs/{run}/sessions", board.sessions),
        ("/api/runs/{run}/agents", board.agents),
        ("/api/runs/{run}/episodes", board.episodes),
        ("/api/runs/{run}/heatmap", board.heatmap),
        ("/api/runs/{run}/flags", board.flags),
        ("/api/runs/{run}/rewards", board.rewards),
        ("/api/runs/{run}/agents/{agent}", board.agent),
        ("/api/runs/{run}/episodes/{episode}", board.episode),
        ("/api/runs/{run}/recordings", board.recordings),
        ("/api/runs/{run}/episodes/{episode}/recording", board.recording),
        ("/api/runs/{run}/episodes/{episode}/steps", board.steps),
        ("/api/compare", board.compare),
    ]
    routes = [
        *(Route(path, endpoint) for path, endpoint in api),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/", board.page),
        Route("/runs/{rest:path}", board.page),
        Route("/compare", board.page),
    ]
    return Starlette(
        routes=routes,
        # gzip: a 10-million-row run's per-episode series (10 000 episodes) ships in a few hundred KB.
        middleware=[
            Middleware(HostGuard, allowed=hosts),  # outermost: a rebinding page learns nothing, not even a 404
            Middleware(SecurityHeaders, live=live),
            Middleware(GZipMiddleware, minimum_size=1024),
        ],
        exception_handlers={TelemetryError: _errors, 404: _not_found},
    )
