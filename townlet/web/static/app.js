// townlet dashboard: one small page, plain JavaScript, no build step.
//
// It reads only what the server's JSON endpoints answer (the same JSON as the CLI's --json commands) and,
// with `serve --live`, the trainer's websocket stream. The envelope is read exactly as
// docs/telemetry_schema.md says: check `schema_version` before touching `agents`, refuse versions this
// page does not know (a banner, never a guess), and read only the fields of the versions it knows.

"use strict";

const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
const banner = document.getElementById("banner");
const liveStatus = document.getElementById("live-status");

// What the server says about itself: the live stream address and the schema versions it knows.
// Runs with more agent rows than `audits_above` show a button for the audits instead of running them at once.
let CONFIG = { live: null, schema_versions: [1, 2], audits_above: 2000000 };
// The agent-record fields of each schema version, in the envelope's order (docs/telemetry_schema.md).
const V1_FIELDS = ["agent_idx", "episode", "survival_steps", "baseline_survival_steps", "episode_reward", "epsilon",
  "curriculum_stage", "death_cause", "meter_energy", "meter_hygiene", "meter_satiation", "meter_money"];
const FIELDS = { 1: V1_FIELDS, 2: [...V1_FIELDS, "visits_bed", "visits_shower", "visits_fridge", "visits_job",
  "action_entropy"] };

// ---- small helpers ----------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function link(href, text) {
  return el("a", { href, text: String(text) });
}

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
  return String(value);
}

function table(headers, rows, onRow) {
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr", onRow ? { class: "link" } : {});
    row.cells.forEach((cell, i) => tr.append(el("td", i === 0 || typeof cell !== "number" ? { class: "left" } : {},
      cell instanceof Node ? cell : fmt(cell))));
    if (onRow) tr.addEventListener("click", () => onRow(row));
    body.append(tr);
  }
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { class: "left", text: h })))), body);
}

async function api(path) {
  const response = await fetch(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status} ${path}`);
  return body;
}

let liveBanner = "";  // a refusal of the live stream stays up across pages; a page's own banner does not

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

// ---- routing: every page has a shareable URL; the back button works ----------------------------------

const ROUTES = [
  [/^\/$/, () => runsPage()],
  [/^\/runs\/(\d+)$/, (m) => runPage(Number(m[1]))],
  [/^\/runs\/(\d+)\/agents\/(\d+)$/, (m) => agentPage(Number(m[1]), Number(m[2]))],
  [/^\/runs\/(\d+)\/episodes\/(\d+)$/, (m) => episodePage(Number(m[1]), Number(m[2]))],
];

function go(path) {
  history.pushState({}, "", path);
  render();
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a || a.target || !a.getAttribute("href") || !a.getAttribute("href").startsWith("/")) return;
  if (a.getAttribute("href").startsWith("/api/")) return;  // raw JSON: let the browser open it
  event.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", render);

let current = null;  // the page on screen, for the live stream to update

async function render() {
  current = null;
  showBanner(liveBanner);
  view.replaceChildren(el("p", { class: "muted", text: "loading…" }));
  crumbs.replaceChildren();
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  try {
    if (!route) throw new Error(`no page at ${path}`);
    await route[1](path.match(route[0]));
  } catch (error) {
    view.replaceChildren(el("h1", { text: "Not found" }), el("p", { text: error.message }),
      el("p", {}, link("/", "all runs")));
  }
}

function breadcrumbs(...parts) {
  crumbs.replaceChildren(...parts.flatMap((part, i) => (i ? [" / ", part] : [part])));
}

// ---- charts (uPlot) -----------------------------------------------------------------------------------

const COLORS = ["#1f6feb", "#8b949e", "#8b949e", "#d9480f", "#2da44e", "#8250df"];

// Vertical dashed lines where the curriculum stage changed, labelled with the new stage.
function stageMarks(changes) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        ctx.save();
        ctx.strokeStyle = "#d9480f";
        ctx.fillStyle = "#d9480f";
        ctx.setLineDash([4, 4]);
        ctx.font = `${11 * devicePixelRatio}px sans-serif`;
        for (const change of changes) {
          const x = Math.round(u.valToPos(change.episode, "x", true));
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillText(`stage ${change.to}`, x + 3, u.bbox.top + 12 * devicePixelRatio);
        }
        ctx.restore();
      }],
    },
  };
}

function chart(parent, title, labels, data, changes, width) {
  const box = el("div", { class: "chart" }, el("h2", { text: title }));
  parent.append(box);
  const series = [{ label: "episode" }, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length],
    width: i === 0 ? 2 : 1 }))];
  return new uPlot({ width, height: 220, series, plugins: [stageMarks(changes)], scales: { x: { time: false } } },
    data, box);
}

function stageChanges(episodes, stageOf) {
  const changes = [];
  for (let i = 1; i < episodes.length; i++) {
    if (stageOf(i) !== stageOf(i - 1)) changes.push({ episode: episodes[i], from: stageOf(i - 1), to: stageOf(i) });
  }
  return changes;
}

// ---- pages --------------------------------------------------------------------------------------------

async function runsPage() {
  const runs = (await api("/api/runs")).reverse();  // newest first
  breadcrumbs(el("span", { text: "runs" }));
  const rows = runs.map((r) => ({ id: r.id, cells: [link(`/runs/${r.id}`, `run ${r.id}`), r.status,
    (r.started_at || "").replace("T", " ").slice(0, 19), r.num_agents, r.episodes, r.schema_version, r.device, r.seed] }));
  view.replaceChildren(el("h1", { text: "Runs" }),
    runs.length ? table(["run", "status", "started (UTC)", "agents", "episodes", "schema", "device", "seed"], rows,
      (row) => go(`/runs/${row.id}`)) : el("p", { text: "No runs yet: train one (townlet-telemetry train)." }));
}

// The run page's per-episode series, kept so that live envelopes can be appended.
function runSeries(episodes) {
  const s = { episode: [], mean: [], min: [], max: [], baseline: [], reward: [], rmin: [], rmax: [], epsilon: [], stage: [] };
  for (const e of episodes) appendEpisode(s, e);
  return s;
}

function appendEpisode(s, e) {
  s.episode.push(e.episode); s.mean.push(e.survival_mean); s.min.push(e.survival_min); s.max.push(e.survival_max);
  s.baseline.push(e.baseline_mean); s.reward.push(e.reward_mean); s.rmin.push(e.reward_min);
  s.rmax.push(e.reward_max); s.epsilon.push(e.epsilon_mean); s.stage.push(e.curriculum_stage);
}

// Add the episodes the series does not show yet, keeping episode order; never one twice (the stream, a catch-up
// after a reconnect and a resume that trains episodes again can all bring the same episode). True if any was new.
function addEpisodes(s, episodes) {
  const fresh = episodes.filter((e) => !s.episode.includes(e.episode));
  if (!fresh.length) return false;
  const all = s.episode.map((episode, i) => ({ episode, survival_mean: s.mean[i], survival_min: s.min[i], survival_max: s.max[i],
    baseline_mean: s.baseline[i], reward_mean: s.reward[i], reward_min: s.rmin[i], reward_max: s.rmax[i],
    epsilon_mean: s.epsilon[i], curriculum_stage: s.stage[i] })).concat(fresh).sort((a, b) => a.episode - b.episode);
  for (const key of Object.keys(s)) s[key].length = 0;
  for (const e of all) appendEpisode(s, e);
  return true;
}

// After a (re)connect: what was stored while the page was not listening, from the database.
async function catchUp(page) {
  const stored = await api(`/api/runs/${page.runId}/episodes`).catch(() => null);
  if (stored && current === page && addEpisodes(page.s, stored)) page.redraw();
}

// An episode envelope (from the live stream) -> the same aggregates `episodes --json` has.
function aggregate(envelope) {
  const agents = envelope.agents;
  const mean = (key) => agents.reduce((sum, a) => sum + a[key], 0) / agents.length;
  const survival = agents.map((a) => a.survival_steps);
  const reward = agents.map((a) => a.episode_reward);
  return { episode: envelope.episode, curriculum_stage: agents[0].curriculum_stage, survival_mean: mean("survival_steps"),
    survival_min: Math.min(...survival), survival_max: Math.max(...survival), baseline_mean: mean("baseline_survival_steps"),
    reward_mean: mean("episode_reward"), reward_min: Math.min(...reward), reward_max: Math.max(...reward),
    epsilon_mean: mean("epsilon") };
}

async function runPage(runId) {
  // Both read every agent row of the run: ask for the heat map at once, not after the summary arrives.
  const heatWidth = Math.min(1200, view.clientWidth || 1200);
  const heatData = api(`/api/runs/${runId}/heatmap?columns=${Math.max(1, Math.floor(heatWidth))}&rows=64`);
  heatData.catch(() => {});  // a failure is shown where the heat map goes
  const { run, episodes } = await api(`/api/runs/${runId}`);
  breadcrumbs(link("/", "runs"), el("span", { text: `run ${run.id}` }));
  const s = runSeries(episodes);
  const width = Math.min(600, Math.floor((view.clientWidth || 1200) / 2) - 24);
  const header = el("p", { class: "muted", text: `${run.status} · ${run.num_agents} agents · ${run.episodes} episodes · ` +
    `schema ${run.schema_version} · ${run.device} · seed ${run.seed} · started ${(run.started_at || "").slice(0, 19)} · ` +
    `uuid ${run.run_uuid}` });
  const charts = el("div", { class: "charts" });
  const count = el("p", { id: "episode-count", class: "muted" });
  view.replaceChildren(el("h1", { text: `Run ${run.id}` }), header, count, charts);
  const page = { runId, uuid: run.run_uuid, s, plots: [] };
  const draw = () => {
    const last = s.episode.length ? s.episode[s.episode.length - 1] : "none";
    count.textContent = `${s.episode.length} episodes shown, the last ${last}`;
    charts.replaceChildren();
    const changes = stageChanges(s.episode, (i) => s.stage[i]);
    page.plots = [
      chart(charts, "survival (mean, min, max) and baseline", ["mean survival", "min", "max", "mean baseline"],
        [s.episode, s.mean, s.min, s.max, s.baseline], changes, width),
      chart(charts, "reward (mean, min, max)", ["mean reward", "min", "max"], [s.episode, s.reward, s.rmin, s.rmax],
        changes, width),
      chart(charts, "epsilon", ["epsilon"], [s.episode, s.epsilon], changes, width),
    ];
  };
  draw();
  page.redraw = draw;
  current = page;

  // Heat map: the server averages agents and episodes into at most what this canvas can show.
  const heat = el("div");
  view.append(el("h2", { text: "survival heat map (agents × episodes)" }), heat);
  heatmap(heat, runId, heatWidth, heatData).catch((error) => {
    heat.replaceChildren(el("p", { class: "bad", text: `heat map failed: ${error.message}` }));
  });

  const audit = el("p", { class: "muted", text: "reward audit: checking…" });
  const flagBox = el("div", {}, el("p", { class: "muted", text: "baseline flags: checking…" }));
  view.append(el("h2", { text: "audits" }), audit, flagBox);
  const rows = run.episodes * run.num_agents;
  if (rows > CONFIG.audits_above) {
    // Both audits read every agent row: on a big run they take minutes, so they run when asked.
    const start = el("button", { type: "button", id: "run-audits",
      text: `run the audits (they read all ${rows.toLocaleString()} agent rows)` });
    start.addEventListener("click", () => { start.remove(); runAudits(runId, audit, flagBox); });
    audit.replaceChildren(start);
    flagBox.replaceChildren();
  } else {
    runAudits(runId, audit, flagBox);
  }
  const agents = el("p", { class: "agents" });
  for (let a = 0; a < run.num_agents; a++) agents.append(link(`/runs/${runId}/agents/${a}`, a));
  const last = s.episode.length ? s.episode[s.episode.length - 1] : null;
  view.append(el("h2", { text: "agents" }), agents, el("h2", { text: "episodes" }),
    last ? el("p", {}, "last episode: ", link(`/runs/${runId}/episodes/${last}`, `episode ${last}`)) : el("p", { text: "none yet" }));
}

function runAudits(runId, audit, flagBox) {
  audit.textContent = "reward audit: checking…";
  api(`/api/runs/${runId}/rewards`).then((r) => {
    audit.className = r.mismatches.length ? "bad" : "ok";
    audit.textContent = r.mismatches.length
      ? `reward audit: ${r.mismatches.length} of ${r.checked} rewards do not match RewardStrategy`
      : `reward audit: ${r.checked} rewards checked, every reward matches`;
  }).catch((error) => { audit.textContent = `reward audit failed: ${error.message}`; });
  flagBox.replaceChildren(el("p", { class: "muted", text: "baseline flags: checking…" }));
  api(`/api/runs/${runId}/flags`).then((flags) => {
    const t = flags.thresholds;
    const shown = flags.flags.slice(0, 500);
    flagBox.replaceChildren(el("p", { class: flags.flags.length ? "bad" : "ok", id: "flag-summary",
      text: `baseline flags (below ${t.below} × baseline for ${t.streak} episodes): ` +
        (flags.flags.length ? `${flags.flags.length} raised` + (shown.length < flags.flags.length ? `, the first ${shown.length} listed` : "")
          : "none raised") }));
    if (shown.length) {
      flagBox.append(el("div", { class: "scroll" }, table(["agent", "flag", "episode", "detail"], shown.map((f) => ({
        agent: f.agent_idx, cells: [link(`/runs/${runId}/agents/${f.agent_idx}`, f.agent_idx), f.flag, f.episode, f.detail] })),
      (row) => go(`/runs/${runId}/agents/${row.agent}`))));
    }
  }).catch((error) => { flagBox.textContent = `baseline flags failed: ${error.message}`; });
}

// Colour of a survival value between 0 and `top`: dark blue (short) to yellow (long).
function heatColour(value, top) {
  if (value === null) return [240, 240, 240];
  const t = Math.max(0, Math.min(1, value / (top || 1)));
  return [Math.round(40 + 215 * t), Math.round(30 + 200 * t), Math.round(120 - 80 * t)];
}

async function heatmap(parent, runId, width, request) {
  const map = await request;
  if (!map.columns) { parent.replaceChildren(el("p", { text: "no episodes yet" })); return; }
  const cellW = Math.max(1, Math.floor(width / map.columns));
  const cellH = Math.max(3, Math.min(12, Math.floor(320 / map.rows)));
  const canvas = el("canvas", { class: "heatmap", width: map.columns * cellW, height: map.rows * cellH });
  const ctx = canvas.getContext("2d");
  const top = Math.max(...map.survival.flat().filter((v) => v !== null));
  map.survival.forEach((row, r) => row.forEach((value, c) => {
    ctx.fillStyle = `rgb(${heatColour(value, top).join(",")})`;
    ctx.fillRect(c * cellW, r * cellH, cellW, cellH);
  }));
  // A click opens the agent under the pointer (the first agent of its row when rows are buckets).
  canvas.addEventListener("click", (event) => {
    const row = Math.floor(event.offsetY / cellH);
    go(`/runs/${runId}/agents/${Math.min(map.agents - 1, Math.floor(row * map.agents_per_row))}`);
  });
  const note = map.downsampled
    ? `downsampled by the server: each cell averages ${fmt(map.agents_per_row)} agent(s) × ${fmt(map.episodes_per_column)} episode(s)`
    : "one cell per agent and episode";
  parent.replaceChildren(canvas, el("p", { class: "muted", text: `episodes ${map.first_episode}–${map.last_episode}, ` +
    `survival 0 (dark) to ${top} steps (light); ${note}; click an agent's row to open it` }));
}

async function agentPage(runId, agent) {
  const data = await api(`/api/runs/${runId}/agents/${agent}`);
  const a = data.baselines.agents[0];
  const visits = data.visits.agents[0];
  breadcrumbs(link("/", "runs"), link(`/runs/${runId}`, `run ${runId}`), el("span", { text: `agent ${agent}` }));
  const charts = el("div", { class: "charts" });
  view.replaceChildren(el("h1", { text: `Run ${runId}, agent ${agent}` }), charts);
  const width = Math.min(600, Math.floor((view.clientWidth || 1200) / 2) - 24);
  const changes = a.stage_changes;
  const entropy = a.action_entropy.map((v) => (v === null ? null : v));
  chart(charts, "survival and baseline", ["survival", "baseline"], [a.episodes, a.survival_steps, a.baseline_survival_steps],
    changes, width);
  chart(charts, "reward", ["reward"], [a.episodes, data.episode_reward], changes, width);
  chart(charts, "action entropy (nats)", ["entropy"], [a.episodes, entropy], changes, width);
  const byEpisode = new Map(visits.episodes.map((e, i) => [e, i]));
  const names = data.visits.affordances;
  const visitSeries = names.map((n) => a.episodes.map((e) => (byEpisode.has(e) ? visits.visits[n][byEpisode.get(e)] : null)));
  chart(charts, "affordance visits", names, [a.episodes, ...visitSeries], changes, width);
  view.append(el("h2", { text: `flags (${a.flags.length})` }),
    a.flags.length ? table(["flag", "episode", "detail"], a.flags.map((f) => ({ cells: [f.flag, f.episode, f.detail] })))
      : el("p", { class: "muted", text: "none raised" }));
  const rows = a.episodes.map((e, i) => ({ cells: [link(`/runs/${runId}/episodes/${e}`, e), a.curriculum_stage[i],
    a.baseline_survival_steps[i], a.survival_steps[i], data.episode_reward[i], a.action_entropy[i],
    ...names.map((n, k) => visitSeries[k][i])] }));
  const shown = rows.slice(-2000);
  view.append(el("h2", { text: "per episode" }),
    el("p", { class: "muted", text: shown.length < rows.length ? `the last ${shown.length} of ${rows.length} episodes` : `${rows.length} episodes` }),
    el("div", { class: "scroll", id: "agent-episodes" },
      table(["episode", "stage", "baseline", "survival", "reward", "entropy", ...names], shown)));
}

async function episodePage(runId, episode) {
  const url = `/api/runs/${runId}/episodes/${episode}`;
  const envelope = await api(url);
  breadcrumbs(link("/", "runs"), link(`/runs/${runId}`, `run ${runId}`), el("span", { text: `episode ${episode}` }));
  view.replaceChildren(el("h1", { text: `Run ${runId}, episode ${episode}` }),
    el("p", {}, `schema version ${envelope.schema_version} · `, el("a", { href: url, text: "the envelope as JSON" }),
      " (byte-identical to replay --json)"));
  const fields = FIELDS[envelope.schema_version];
  if (!fields) {
    showBanner(`This page reads telemetry schema versions ${Object.keys(FIELDS).join(", ")}; episode ${episode} ` +
      `was written under version ${envelope.schema_version}: upgrade townlet.`);
    return;
  }
  const shown = fields.filter((f) => f !== "episode");
  view.append(el("div", { class: "scroll", id: "episode-agents" }, table(shown, envelope.agents.map((agent) => ({
    agent: agent.agent_idx, cells: shown.map((f) => (f === "agent_idx" ? link(`/runs/${runId}/agents/${agent[f]}`, agent[f]) : agent[f])) })),
  (row) => go(`/runs/${runId}/agents/${row.agent}`))));
}

// ---- live: follow a running trainer (serve --live) ---------------------------------------------------

function follow(url) {
  let liveRun = null;  // {run, run_id} from the stream's hello
  const status = (text, cls) => { liveStatus.hidden = false; liveStatus.textContent = text; liveStatus.className = `live ${cls}`; };
  const connect = () => {
    const socket = new WebSocket(url);
    socket.onopen = () => status(`live: connected to ${url}`, "connected");
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      // Check the version before reading anything else; refuse what this page does not know.
      if (!CONFIG.schema_versions.includes(message.schema_version)) {
        liveBanner = `The trainer at ${url} sends telemetry schema version ${message.schema_version}; this page reads ` +
          `${CONFIG.schema_versions.join(", ")}: upgrade townlet. Its messages are ignored.`;
        showBanner(liveBanner);
        return;
      }
      if (message.kind === "hello") {
        liveRun = message;
        status(`live: run ${message.run ?? message.run_id} (connected)`, "connected");
        if (current && current.uuid === message.run_id) catchUp(current);  // episodes stored while disconnected
      } else if (message.kind === "episode_snapshot" && current && current.uuid === message.run_id) {
        if (addEpisodes(current.s, [aggregate(message)])) current.redraw();
      }
    };
    socket.onclose = () => {
      status(`live: lost ${url}${liveRun ? ` (run ${liveRun.run ?? liveRun.run_id})` : ""}, reconnecting…`, "lost");
      setTimeout(connect, 1000);  // the trainer may be restarted (train --resume): keep trying
    };
  };
  connect();
}

(async function main() {
  try {
    CONFIG = await api("/api/config");
  } catch (error) {
    showBanner(`cannot reach the server: ${error.message}`);
  }
  if (CONFIG.live) follow(CONFIG.live);
  await render();
})();
