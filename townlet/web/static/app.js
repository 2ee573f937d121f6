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
// `session_gap_s`: episodes this far apart begin a new session (the server's rule, reports.SESSION_GAP_S).
let CONFIG = { live: null, schema_versions: [1, 2], audits_above: 2000000, session_gap_s: 2 };
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
    if (onRow) tr.addEventListener("click", (event) => { if (!event.target.closest("a")) onRow(row); });  // a link goes once
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
  [/^\/compare$/, () => comparePage()],
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
// The stream's latest episodes, whatever page is on screen: a run page that was loading when some arrived (its
// read of the database may predate them) takes them from here once it is shown, so none falls between the two.
const liveRecent = [];
const LIVE_RECENT = 200;

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

// One colour per series of a chart, none shared with the markers (stage changes grey dashed, sessions purple).
const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#1d2430"];
const STAGE_COLOUR = "#57606a";
const SESSION_COLOUR = "#8250df";
// The bold survival and reward lines: a trailing mean over this many episodes (docs/telemetry_schema.md).
const ROLLING = 10;

function rolling(values, window = ROLLING) {
  const out = [];
  let sum = 0, count = 0;
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== null) { sum += values[i]; count++; }
    if (i >= window && values[i - window] !== null) { sum -= values[i - window]; count--; }
    out.push(count ? sum / count : null);
  }
  return out;
}

// Marks above the plot: stage changes (dashed) and session starts (solid), labelled in the top padding so a
// label never covers a line or an axis; a label that would overlap the one before it is left out (its line
// stays, and its title is in the chart's caption).
function marksPlugin(marks) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        const dpr = devicePixelRatio;
        ctx.save();
        ctx.font = `${11 * dpr}px sans-serif`;
        let labelEnd = -Infinity;
        for (const mark of [...marks].sort((a, b) => a.episode - b.episode)) {
          const x = Math.round(u.valToPos(mark.episode, "x", true));
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.strokeStyle = mark.colour;
          ctx.fillStyle = mark.colour;
          ctx.setLineDash(mark.dash ? [4 * dpr, 4 * dpr] : []);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          const w = ctx.measureText(mark.text).width;
          const right = u.bbox.left + u.bbox.width;
          const left = x + 3 * dpr + w <= right ? x + 3 * dpr : x - 3 * dpr - w;  // never past the right edge
          if (left > labelEnd + 4 * dpr) {
            ctx.fillText(mark.text, left, u.bbox.top - 5 * dpr);
            labelEnd = left + w;
          }
        }
        ctx.restore();
      }],
    },
  };
}

// The legend shows the latest episode's values, and the hovered episode's while the pointer is on the chart.
function latestLegend() {
  const latest = (u) => { if (u.data[0].length) u.setLegend({ idx: u.data[0].length - 1 }); };
  return { hooks: { ready: [latest], setData: [latest], setCursor: [(u) => { if (u.cursor.idx == null) latest(u); }] } };
}

// spec: {title, y: axis title with unit, series: [{label, values, colour, width, dash, hidden}], band: [upper, lower]
// (indexes into series) drawn as a shaded band, marks: [{episode, text, colour, dash}]}
function chart(parent, spec, xs, width) {
  const box = el("div", { class: "chart" }, el("h2", { text: spec.title }));
  parent.append(box);
  const series = [{ label: "episode" }, ...spec.series.map((s) => ({ label: s.label, stroke: s.colour,
    width: s.width || 1, dash: s.dash, value: (u, v) => (v == null ? "–" : fmt(v)) }))];
  const bands = spec.band ? [{ series: [spec.band[0] + 1, spec.band[1] + 1], fill: "rgba(0, 114, 178, 0.12)" }] : [];
  for (const [upper, lower, fill] of spec.bands || []) bands.push({ series: [upper + 1, lower + 1], fill });
  const options = {
    width, height: 240, series, bands, padding: [18, 8, 0, 0],
    plugins: [marksPlugin(spec.marks || []), latestLegend()],
    scales: { x: { time: false } },
    axes: [{ label: "episode", labelSize: 20 }, { label: spec.y, labelSize: 20 }],
  };
  const plot = new uPlot(options, [xs, ...spec.series.map((s) => s.values)], box);
  if (spec.caption) box.append(el("p", { class: "muted caption", text: spec.caption }));
  return plot;
}

function stageChanges(episodes, stageOf) {
  const changes = [];
  for (let i = 1; i < episodes.length; i++) {
    if (stageOf(i) !== stageOf(i - 1)) changes.push({ episode: episodes[i], from: stageOf(i - 1), to: stageOf(i) });
  }
  return changes;
}

function marksFor(changes, sessions) {
  return [
    ...changes.map((c) => ({ episode: c.episode, text: `stage ${c.to}`, colour: STAGE_COLOUR, dash: true })),
    ...sessions.slice(1).map((s) => ({ episode: s.first_episode, text: "resumed", colour: SESSION_COLOUR, dash: false })),
  ];
}

function marksCaption(changes, sessions) {
  const parts = [];
  if (changes.length) parts.push(`dashed: stage changes (${changes.map((c) => `${c.from}→${c.to} at ${c.episode}`).join(", ")})`);
  if (sessions.length > 1) parts.push(`solid: a new session (a resume, or a wait for the database of ${CONFIG.session_gap_s} s or more) ` +
    `from episode ${sessions.slice(1).map((s) => s.first_episode).join(", ")}`);
  return parts.join("; ");
}

// ---- pages --------------------------------------------------------------------------------------------

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function settingsText(differs) {
  return Object.entries(differs || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

async function runsPage() {
  const runs = await api("/api/overview");  // newest first, with what tells runs apart
  breadcrumbs(el("span", { text: "runs" }));
  const headers = ["run", "status", "started (UTC)", "duration", "agents", "episodes", "last mean survival", "baseline",
    "seed", "device", "settings that differ", "name", "tags", "compare"];
  const chosen = new Set();
  const pick = (r) => {
    const box = el("input", { type: "checkbox", class: "pick", "data-run": String(r.id), "aria-label": `compare run ${r.id}` });
    box.checked = chosen.has(r.id);
    box.addEventListener("click", (event) => event.stopPropagation());
    box.addEventListener("change", () => { if (box.checked) chosen.add(r.id); else chosen.delete(r.id); action.disabled = chosen.size < 2; });
    return box;
  };
  const action = el("button", { id: "compare-selected", type: "button", text: "compare selected runs" });
  action.disabled = true;
  action.addEventListener("click", () => go(`/compare?${[...chosen].sort((a, b) => a - b).map((id) => `run=${id}`).join("&")}`));
  const rowOf = (r) => ({ id: r.id, uuid: r.run_uuid, cells: [link(`/runs/${r.id}`, `run ${r.id}`), r.status,
    (r.started_at || "").replace("T", " ").slice(0, 19), duration(r.duration_s), r.num_agents, r.episodes,
    r.last_survival_mean === null ? "" : Number(r.last_survival_mean.toFixed(1)),
    r.last_baseline_mean === null ? "" : Number(r.last_baseline_mean.toFixed(1)), r.seed, r.device, settingsText(r.differs),
    r.name || "", (r.tags || []).join(" "), pick(r)] });
  const box = el("div", { class: "scroll wide", id: "runs-table" });
  // The filter keeps the runs whose name or a tag holds its text (case-insensitive); the URL keeps it (?filter=).
  const filter = el("input", { id: "runs-filter", type: "search", placeholder: "filter by name or tag", "aria-label": "filter runs by name or tag" });
  filter.value = new URLSearchParams(location.search).get("filter") || "";
  const shown = () => {
    const text = filter.value.trim().toLowerCase();
    if (!text) return runs;
    return runs.filter((r) => (r.name || "").toLowerCase().includes(text) || (r.tags || []).some((t) => t.toLowerCase().includes(text)));
  };
  const draw = () => box.replaceChildren(table(headers, shown().map(rowOf), (row) => go(`/runs/${row.id}`)));
  filter.addEventListener("input", () => {
    history.replaceState({}, "", filter.value.trim() ? `/?filter=${encodeURIComponent(filter.value.trim())}` : "/");
    draw();
  });
  view.replaceChildren(el("h1", { text: "Runs" }));
  if (!runs.length) { view.append(el("p", { text: "No runs yet: train one (townlet-telemetry train)." })); return; }
  draw();
  view.append(el("p", {}, filter, " ", action, " runs of one config are grouped (seeds); tick runs of two or more configs"), box);
  // Live: the followed run's row follows its episodes (the database row is read again once it is written).
  current = { kind: "runs", onEpisode: (envelope) => {
    const run = runs.find((r) => r.run_uuid === envelope.run_id);
    if (!run) return;
    const a = aggregate(envelope);
    run.episodes = Math.max(run.episodes, envelope.episode);
    run.last_episode = Math.max(run.last_episode || 0, envelope.episode);
    run.status = "running";
    run.last_survival_mean = a.survival_mean;
    run.last_baseline_mean = a.baseline_mean;
    draw();
  } };
}

// The run page's per-episode series, kept so that live envelopes can be appended.
function runSeries(episodes) {
  const s = { episode: [], mean: [], min: [], max: [], baseline: [], reward: [], rmin: [], rmax: [], epsilon: [], stage: [], n: [] };
  for (const e of episodes) appendEpisode(s, e);
  return s;
}

function appendEpisode(s, e) {
  s.episode.push(e.episode); s.mean.push(e.survival_mean); s.min.push(e.survival_min); s.max.push(e.survival_max);
  s.baseline.push(e.baseline_mean); s.reward.push(e.reward_mean); s.rmin.push(e.reward_min);
  s.rmax.push(e.reward_max); s.epsilon.push(e.epsilon_mean); s.stage.push(e.curriculum_stage);
  s.n.push(e.episodes ?? 1);  // a point of the server's budget summarises this many consecutive episodes
}

const episodesIn = (s) => s.n.reduce((sum, n) => sum + n, 0);

// Add the episodes the series does not show yet, keeping episode order; never one twice (the stream, a catch-up
// after a reconnect and a resume that trains episodes again can all bring the same episode). True if any was new.
// On summarised points only episodes after the last point are added (an earlier one is inside a point already).
function addEpisodes(s, episodes) {
  const summarised = s.n.some((n) => n > 1), last = s.episode.length ? s.episode[s.episode.length - 1] : 0;
  const fresh = episodes.filter((e) => !s.episode.includes(e.episode) && (!summarised || e.episode > last));
  if (!fresh.length) return false;
  const all = s.episode.map((episode, i) => ({ episode, survival_mean: s.mean[i], survival_min: s.min[i], survival_max: s.max[i],
    baseline_mean: s.baseline[i], reward_mean: s.reward[i], reward_min: s.rmin[i], reward_max: s.rmax[i],
    epsilon_mean: s.epsilon[i], curriculum_stage: s.stage[i], episodes: s.n[i] })).concat(fresh).sort((a, b) => a.episode - b.episode);
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

function runCharts(charts, s, sessions, width) {
  const changes = stageChanges(s.episode, (i) => s.stage[i]);
  const marks = marksFor(changes, sessions);
  const caption = marksCaption(changes, sessions);
  return [
    chart(charts, { title: "survival per episode", y: "steps survived", marks, caption,
      series: [
        { label: `mean, rolling ${ROLLING}`, values: rolling(s.mean), colour: PALETTE[0], width: 2.5 },
        { label: "mean", values: s.mean, colour: "#56b4e9" },
        { label: "max", values: s.max, colour: "#3b5b92" },
        { label: "min", values: s.min, colour: "#9ac3e6" },
        { label: "baseline", values: s.baseline, colour: PALETTE[1], width: 2, dash: [6, 3] },
      ], band: [2, 3] }, s.episode, width),
    chart(charts, { title: "reward per episode", y: "reward (survival − baseline)", marks, caption,
      series: [
        { label: `mean, rolling ${ROLLING}`, values: rolling(s.reward), colour: PALETTE[2], width: 2.5 },
        { label: "mean", values: s.reward, colour: "#66c2a5" },
        { label: "max", values: s.rmax, colour: "#2f6f57" },
        { label: "min", values: s.rmin, colour: "#a6dcc6" },
      ], band: [2, 3] }, s.episode, width),
    chart(charts, { title: "exploration", y: "epsilon (probability)", marks, caption,
      series: [{ label: "epsilon", values: s.epsilon, colour: PALETTE[3], width: 2 }] }, s.episode, width),
  ];
}

function runHeader(run, s) {
  const last = s.episode.length ? s.episode[s.episode.length - 1] : null;
  return `${run.status} · ${run.num_agents} agents · ${episodesIn(s)} episodes` + (last ? ` (the last ${last})` : "") +
    ` · schema ${run.schema_version} · ${run.device} · seed ${run.seed} · started ${(run.started_at || "").slice(0, 19)} · ` +
    `uuid ${run.run_uuid}`;
}

async function runPage(runId) {
  // Both read every agent row of the run: ask for the heat map at once, not after the summary arrives.
  const heatWidth = Math.max(200, Math.min(1180, (view.clientWidth || 1200) - 140));
  const heatData = api(`/api/runs/${runId}/heatmap?columns=${Math.floor(heatWidth)}&rows=64`);
  heatData.catch(() => {});  // a failure is shown where the heat map goes
  // The recorded episodes: listed below, and what a heat map cell opens in the player.
  const recordingsData = api(`/api/runs/${runId}/recordings`);
  recordingsData.catch(() => {});
  // The charts get at most one point per pixel: the server summarises consecutive episodes per point (min, max
  // and mean exact over them); "every episode" reads them all.
  const width = Math.min(600, Math.floor((view.clientWidth || 1200) / 2) - 40);
  const [{ run, episodes, points }, sessions] = await Promise.all([api(`/api/runs/${runId}?points=${Math.max(2, width)}`),
    api(`/api/runs/${runId}/sessions`).catch(() => [])]);
  breadcrumbs(link("/", "runs"), el("span", { text: `run ${run.id}` }));
  const s = runSeries(episodes);
  const header = el("p", { class: "muted", id: "run-header" });
  const charts = el("div", { class: "charts" });
  const count = el("p", { id: "episode-count", class: "muted" });
  // Shown once live episodes arrive: what the page does not recompute, and a button (made once: a control that
  // is rebuilt with every episode can vanish under the pointer) that reads everything again.
  const refresh = el("button", { type: "button", id: "refresh", text: "refresh" });
  refresh.addEventListener("click", () => render());
  const asOf = el("p", { id: "as-of", class: "muted", hidden: "" });
  const every = el("button", { type: "button", id: "every-episode", text: `every episode (${points} points now)` });
  every.addEventListener("click", async () => {
    const all = await api(`/api/runs/${runId}/episodes`);
    if (current !== page) return;
    for (const key of Object.keys(s)) s[key].length = 0;
    for (const e of all) appendEpisode(s, e);
    draw();
  });
  view.replaceChildren(el("h1", { text: `Run ${run.id}` }), header, count, asOf, charts);
  const storedLast = s.episode.length ? s.episode[s.episode.length - 1] : 0;
  asOf.append(`heat map, audits and agents as of episode ${storedLast}; the charts follow the trainer `, refresh);
  const page = { kind: "run", runId, uuid: run.run_uuid, s, plots: [] };
  if (CONFIG.live && run.status === "running") {  // the running episode's grid, as the trainer sends it
    const liveBox = el("section", { id: "live-grid-box" });
    charts.before(el("h2", { text: "live grid (the running episode's recorded agents)" }), liveBox);
    page.liveGrid = window.townletPlayer.liveGrid(liveBox);
  }
  const lastLink = el("p", {});
  const draw = () => {
    const last = s.episode.length ? s.episode[s.episode.length - 1] : null;
    header.textContent = runHeader(run, s);
    const shown = episodesIn(s);
    count.replaceChildren(s.episode.length < shown
      ? `${shown} episodes shown in ${s.episode.length} points (up to ${Math.max(...s.n)} consecutive episodes each, ` +
        `min, max and mean exact over them), the last ${last ?? "none"} `
      : `${shown} episodes shown, the last ${last ?? "none"}`);
    if (s.episode.length < shown) count.append(every);
    if (last !== null && last > storedLast) asOf.hidden = false;  // live episodes since the page was read
    charts.replaceChildren();
    page.plots = runCharts(charts, s, sessions, width);
    lastLink.replaceChildren(...(last ? ["last episode: ", link(`/runs/${runId}/episodes/${last}`, `episode ${last}`)] : ["none yet"]));
  };
  page.redraw = draw;
  current = page;
  addEpisodes(s, liveRecent.filter((m) => m.run_id === run.run_uuid).map((m) => m.episode));  // arrived while loading
  draw();

  // Heat map: the server averages agents and episodes into at most what this canvas can show.
  const heat = el("div", { class: "heat" });
  view.append(el("h2", { text: "survival heat map (agents × episodes)" }), heat);
  heatmap(heat, runId, heatWidth, heatData, recordingsData).catch((error) => {
    heat.replaceChildren(el("p", { class: "bad", text: `heat map failed: ${error.message}` }));
  });

  const audit = el("p", { class: "muted", text: "reward audit: checking…" });
  const flagBox = el("div", {}, el("p", { class: "muted", text: "baseline flags: checking…" }));
  view.append(el("h2", { text: "audits" }), audit, flagBox);
  // The flags are kept as episodes are written: a read of a small table at any run size.
  baselineFlags(runId, flagBox);
  const rows = run.episodes * run.num_agents;
  if (rows > CONFIG.audits_above) {
    // The reward audit recomputes every stored reward: on a big run it takes minutes, so it runs when asked.
    const start = el("button", { type: "button", id: "run-audits",
      text: `run the reward audit (it reads all ${rows.toLocaleString()} agent rows)` });
    start.addEventListener("click", () => { start.remove(); rewardAudit(runId, audit); });
    audit.replaceChildren(start);
  } else {
    rewardAudit(runId, audit);
  }
  const agentsBox = el("div", { id: "agents" }, el("p", { class: "muted", text: "agents: loading…" }));
  const recorded = el("div", { id: "recordings" }, el("p", { class: "muted", text: "recordings: loading…" }));
  view.append(el("h2", { text: "agents" }), agentsBox, el("h2", { text: "episodes" }), lastLink,
    el("h2", { text: "recorded episodes (every step: open one to play it)" }), recorded);
  recordingsList(recorded, runId, undefined, recordingsData);
  api(`/api/runs/${runId}/agents`).then((answer) => agentsTable(agentsBox, runId, answer))
    .catch((error) => { agentsBox.replaceChildren(el("p", { class: "bad", text: `agents failed: ${error.message}` })); });
  const config = el("div", { id: "run-config" });
  view.append(el("h2", { text: "configuration (as stored with the run)" }), config);
  api(`/api/runs/${runId}/config`).then((stored) => config.replaceChildren(configTable(stored)))
    .catch((error) => { config.replaceChildren(el("p", { class: "bad", text: `configuration failed: ${error.message}` })); });
}

// The run's recorded episodes, each a link to its player (agent: open it following that agent).
async function recordingsList(box, runId, agent, request = api(`/api/runs/${runId}/recordings`)) {
  try {
    const { recordings } = await request;
    if (!recordings.length) {
      box.replaceChildren(el("p", { class: "muted", text: "none recorded (see [recording] in configs/default.toml)" }));
      return;
    }
    const query = agent === undefined ? "" : `?agent=${agent}&step=0`;
    box.replaceChildren(el("p", { class: "agents" }, ...recordings.map((r) => el("a", {
      href: `/runs/${runId}/episodes/${r.episode}${query}`, title: `${r.reasons.join(", ")} · ${r.agents} agents · ${r.steps} steps`,
      text: String(r.episode) }))));
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad", text: `recordings failed: ${error.message}` }));
  }
}

function flatten(value, prefix = "", out = []) {
  for (const [key, v] of Object.entries(value)) {
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, `${prefix}${key}.`, out);
    else out.push([`${prefix}${key}`, Array.isArray(v) ? JSON.stringify(v) : String(v)]);
  }
  return out;
}

function configTable(stored) {
  return el("div", { class: "scroll wide" }, table(["setting", "value"], flatten(stored).map(([k, v]) => ({ cells: [k, v] }))));
}

// Every agent over the run's last episodes: worst first by survival over baseline; sortable, filterable.
const AGENT_ROWS = 100;
function agentsTable(box, runId, answer) {
  const columns = [["agent", "agent_idx"], ["survival", "survival_mean"], ["baseline", "baseline_mean"],
    ["survival / baseline", "survival_over_baseline"], ["reward", "reward_mean"]];
  let sortKey = "survival_over_baseline", ascending = true;
  const filter = el("input", { type: "search", id: "agent-filter", placeholder: "agents, e.g. 7 or 10-20, 3", size: "28" });
  const note = el("p", { class: "muted", id: "agents-note" });
  const holder = el("div", { class: "scroll", id: "agents-table" });
  const wanted = () => {
    const text = filter.value.trim();
    if (!text) return null;
    const ranges = text.split(/[,\s]+/).filter(Boolean).map((part) => {
      const [a, b] = part.split("-").map(Number);
      return [a, Number.isFinite(b) ? b : a];
    });
    return (agent) => ranges.some(([a, b]) => agent >= a && agent <= b);
  };
  const draw = () => {
    const keep = wanted();
    const rows = answer.agents.filter((a) => !keep || keep(a.agent_idx)).sort((x, y) => {
      const a = x[sortKey], b = y[sortKey];
      const order = a === b ? x.agent_idx - y.agent_idx : a === null ? 1 : b === null ? -1 : a - b;
      return ascending ? order : -order;
    });
    const shown = rows.slice(0, AGENT_ROWS);
    note.textContent = `mean over the last ${answer.last_episodes} episodes; ${shown.length < rows.length ? `the first ${shown.length} of ` : ""}` +
      `${rows.length} agents${keep ? ` matching "${filter.value.trim()}"` : ""}, sorted by ${columns.find((c) => c[1] === sortKey)[0]} ` +
      `(${ascending ? "lowest" : "highest"} first); click a header to sort, a row to open the agent`;
    const t = table(columns.map((c) => c[0] + (c[1] === sortKey ? (ascending ? " ▲" : " ▼") : "")),
      shown.map((a) => ({ agent: a.agent_idx, cells: [link(`/runs/${runId}/agents/${a.agent_idx}`, a.agent_idx),
        ...columns.slice(1).map((c) => (a[c[1]] === null ? "" : Number(a[c[1]].toFixed(3))))] })),
      (row) => go(`/runs/${runId}/agents/${row.agent}`));
    t.querySelectorAll("th").forEach((th, i) => {
      th.classList.add("sortable");
      th.addEventListener("click", () => {
        if (sortKey === columns[i][1]) ascending = !ascending; else { sortKey = columns[i][1]; ascending = true; }
        draw();
      });
    });
    holder.replaceChildren(t);
  };
  filter.addEventListener("input", draw);
  box.replaceChildren(el("p", {}, "filter: ", filter), note, holder);
  draw();
}

function rewardAudit(runId, audit) {
  audit.textContent = "reward audit: checking…";
  api(`/api/runs/${runId}/rewards`).then((r) => {
    audit.className = r.mismatches.length ? "bad" : "ok";
    audit.textContent = r.mismatches.length
      ? `reward audit: ${r.mismatches.length} of ${r.checked} rewards do not match RewardStrategy`
      : `reward audit: ${r.checked} rewards checked, every reward matches`;
  }).catch((error) => { audit.textContent = `reward audit failed: ${error.message}`; });
}

function baselineFlags(runId, flagBox) {
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

// Colour of a survival value on a scale fitted to the data, from `lo` (dark blue) to `hi` (yellow).
function heatColour(value, lo, hi) {
  if (value === null) return [240, 240, 240];
  const t = hi > lo ? Math.max(0, Math.min(1, (value - lo) / (hi - lo))) : 0.5;
  return [Math.round(40 + 215 * t), Math.round(30 + 200 * t), Math.round(120 - 80 * t)];
}

async function heatmap(parent, runId, width, request, recordingsData) {
  const map = await request;
  if (!map.columns) { parent.replaceChildren(el("p", { text: "no episodes yet" })); return; }
  const cellW = Math.max(1, Math.floor(width / map.columns));
  const cellH = Math.max(3, Math.min(12, Math.floor(320 / map.rows)));
  const canvas = el("canvas", { class: "heatmap", width: map.columns * cellW, height: map.rows * cellH });
  const ctx = canvas.getContext("2d");
  const values = map.survival.flat().filter((v) => v !== null);
  const lo = Math.min(...values), hi = Math.max(...values);
  map.survival.forEach((row, r) => row.forEach((value, c) => {
    ctx.fillStyle = `rgb(${heatColour(value, lo, hi).join(",")})`;
    ctx.fillRect(c * cellW, r * cellH, cellW, cellH);
  }));
  // A click opens the agent under the pointer (the first agent of its row when rows are buckets): in the player,
  // at the first recorded episode of the cell's episodes, when the cell holds one; else the agent's page.
  const recorded = await recordingsData.then((r) => r.recordings.map((x) => x.episode)).catch(() => []);
  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    const row = Math.floor((event.offsetY * (canvas.height / box.height)) / cellH);
    const column = Math.floor((event.offsetX * (canvas.width / box.width)) / cellW);
    const agent = Math.min(map.agents - 1, Math.floor(row * map.agents_per_row));
    const from = map.first_episode + Math.floor(column * map.episodes_per_column);
    const to = map.first_episode + Math.floor((column + 1) * map.episodes_per_column) - 1;
    const episode = recorded.find((e) => e >= from && e <= Math.max(from, to));
    go(episode ? `/runs/${runId}/episodes/${episode}?agent=${agent}&step=0` : `/runs/${runId}/agents/${agent}`);
  });
  // The colour key: the scale's numbers, fitted to this run's values.
  const key = el("canvas", { class: "heat-key", width: 200, height: 12 });
  const k = key.getContext("2d");
  for (let x = 0; x < 200; x++) {
    k.fillStyle = `rgb(${heatColour(lo + ((hi - lo) * x) / 199, lo, hi).join(",")})`;
    k.fillRect(x, 0, 1, 12);
  }
  const note = map.downsampled
    ? `downsampled by the server: each cell averages ${fmt(map.agents_per_row)} agent(s) × ${fmt(map.episodes_per_column)} episode(s)`
    : "one cell per agent and episode";
  const lastAgent = map.agents - 1;
  parent.replaceChildren(
    el("div", { class: "heat-grid" },
      el("div", { class: "heat-y" }, el("span", { text: "0" }), el("span", { class: "axis-title", text: "agent" }),
        el("span", { text: String(lastAgent) })),
      el("div", { class: "heat-plot" }, canvas,
        el("div", { class: "heat-x" }, el("span", { text: String(map.first_episode) }),
          el("span", { class: "axis-title", text: "episode" }), el("span", { text: String(map.last_episode) })))),
    el("p", { class: "heat-legend", id: "heat-key" }, "mean survival (steps): ", el("span", { text: fmt(lo) }), " ", key, " ",
      el("span", { text: fmt(hi) })),
    el("p", { class: "muted", text: `${note}; the colours span this run's lowest to highest cell; click an agent's row to open it` }));
}

async function agentPage(runId, agent) {
  const [data, sessions] = await Promise.all([api(`/api/runs/${runId}/agents/${agent}`),
    api(`/api/runs/${runId}/sessions`).catch(() => [])]);
  const a = data.baselines.agents[0];
  const visits = data.visits.agents[0];
  breadcrumbs(link("/", "runs"), link(`/runs/${runId}`, `run ${runId}`), el("span", { text: `agent ${agent}` }));
  const charts = el("div", { class: "charts" });
  view.replaceChildren(el("h1", { text: `Run ${runId}, agent ${agent}` }), charts);
  const width = Math.min(600, Math.floor((view.clientWidth || 1200) / 2) - 40);
  const changes = a.stage_changes;
  const marks = marksFor(changes, sessions);
  const caption = marksCaption(changes, sessions);
  const entropy = a.action_entropy.map((v) => (v === null ? null : v));
  chart(charts, { title: "survival and baseline", y: "steps survived", marks, caption, series: [
    { label: "survival", values: a.survival_steps, colour: PALETTE[0], width: 2 },
    { label: `rolling ${ROLLING}`, values: rolling(a.survival_steps), colour: PALETTE[4], width: 1 },
    { label: "baseline", values: a.baseline_survival_steps, colour: PALETTE[1], width: 2, dash: [6, 3] }] }, a.episodes, width);
  chart(charts, { title: "reward", y: "reward (survival − baseline)", marks, caption,
    series: [{ label: "reward", values: data.episode_reward, colour: PALETTE[2], width: 2 }] }, a.episodes, width);
  chart(charts, { title: "action entropy", y: "entropy (nats)", marks, caption,
    series: [{ label: "entropy", values: entropy, colour: PALETTE[3], width: 2 }] }, a.episodes, width);
  const byEpisode = new Map(visits.episodes.map((e, i) => [e, i]));
  const names = data.visits.affordances;
  const visitSeries = names.map((n) => a.episodes.map((e) => (byEpisode.has(e) ? visits.visits[n][byEpisode.get(e)] : null)));
  chart(charts, { title: "affordance visits", y: "visits per episode", marks, caption,
    series: names.map((n, i) => ({ label: n, values: visitSeries[i], colour: PALETTE[i % PALETTE.length], width: 1.5 })) },
  a.episodes, width);
  const recorded = el("div", { id: "agent-recordings" });
  view.append(el("h2", { text: `recorded episodes: play agent ${agent}'s every step` }), recorded);
  recordingsList(recorded, runId, agent);
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

// Column headings of the episode page: readable words; the DTO field each shows is the heading's title.
const FIELD_LABELS = { agent_idx: "agent", survival_steps: "survival", baseline_survival_steps: "baseline",
  episode_reward: "reward", epsilon: "ε", curriculum_stage: "stage", death_cause: "death", meter_energy: "energy",
  meter_hygiene: "hygiene", meter_satiation: "satiation", meter_money: "money", visits_bed: "bed visits", visits_shower: "shower visits",
  visits_fridge: "fridge visits", visits_job: "job visits", action_entropy: "entropy" };

async function episodePage(runId, episode) {
  const url = `/api/runs/${runId}/episodes/${episode}`;
  const [envelope, runs] = await Promise.all([api(url), api("/api/runs")]);
  const run = runs.find((r) => r.id === runId);
  breadcrumbs(link("/", "runs"), link(`/runs/${runId}`, `run ${runId}`), el("span", { text: `episode ${episode}` }));
  const steps = el("p", { class: "pager" },
    episode > 1 ? link(`/runs/${runId}/episodes/${episode - 1}`, `← episode ${episode - 1}`) : el("span", { class: "muted", text: "first episode" }),
    " · ",
    run && episode < run.last_episode ? link(`/runs/${runId}/episodes/${episode + 1}`, `episode ${episode + 1} →`)
      : el("span", { class: "muted", text: "last episode" }));
  view.replaceChildren(el("h1", { text: `Run ${runId}, episode ${episode}` }), steps,
    el("p", {}, `schema version ${envelope.schema_version} · ${envelope.agents.length} agents · `,
      el("a", { href: url, text: "the envelope as JSON" }), " (byte-identical to replay --json)"));
  const fields = FIELDS[envelope.schema_version];
  if (!fields) {
    showBanner(`This page reads telemetry schema versions ${Object.keys(FIELDS).join(", ")}; episode ${episode} ` +
      `was written under version ${envelope.schema_version}: upgrade townlet.`);
    return;
  }
  const playerBox = el("section", { id: "player-box" });
  view.append(el("h2", { text: "player" }), playerBox);
  await episodePlayer(playerBox, runId, episode);
  const shown = fields.filter((f) => f !== "episode");
  const t = table(shown.map((f) => FIELD_LABELS[f] || f), envelope.agents.map((agent) => ({
    agent: agent.agent_idx, cells: shown.map((f) => (f === "agent_idx" ? link(`/runs/${runId}/agents/${agent[f]}`, agent[f]) : agent[f])) })),
  (row) => go(`/runs/${runId}/agents/${row.agent}`));
  t.querySelectorAll("th").forEach((th, i) => { th.title = shown[i]; th.dataset.field = shown[i]; });
  view.append(el("div", { class: "scroll wide", id: "episode-agents" }, t));
}

// The episode's recording in the player (player.js), or the one-line notice of what was recorded instead.
// ?agent=K&step=T in the URL opens it there and follows it, so a link shares what is on screen.
async function episodePlayer(box, runId, episode) {
  const response = await fetch(`/api/runs/${runId}/episodes/${episode}/recording`);
  const body = await response.json();
  if (!response.ok) {
    box.replaceChildren(el("p", { class: "muted", id: "player-notice", text: body.error || `${response.status}` }));
    return;
  }
  const params = new URLSearchParams(location.search);
  const number = (name) => (params.has(name) && /^\d+$/.test(params.get(name)) ? Number(params.get(name)) : undefined);
  window.townletPlayer.mount(box, body, { agent: number("agent"), step: number("step"), onChange: (agent, step) => {
    history.replaceState({}, "", `${location.pathname}?agent=${agent}&step=${step}`);
  } });
  box.append(el("p", { class: "muted" }, `recorded (${body.header.reasons.join(", ")}): ${body.agents.length} agents, ` +
    `${body.header.steps} steps, grid ${body.header.grid_size}×${body.header.grid_size} · `,
  link(`/runs/${runId}`, "every recording of this run (on its page)"), " · ",
  el("a", { href: `/api/runs/${runId}/episodes/${episode}/steps?agent=${body.agents[0].agent_idx}`,
    text: "steps as JSON lines" }), " (byte-identical to replay --steps --json)"));
}

// ---- live: follow a running trainer (serve --live) ---------------------------------------------------

function follow(url) {
  let liveRun = null;  // {run, run_id} from the stream's hello
  const status = (text, cls) => { liveStatus.hidden = false; liveStatus.textContent = text; liveStatus.className = `live ${cls}`; };
  // The stream closed: a trainer that ended (its run finished, interrupted, crashed) is said so, calmly; one that
  // still holds its run (a lost connection) or died (stale) is being waited for.
  const closed = async () => {
    const name = liveRun ? `run ${liveRun.run ?? liveRun.run_id}` : "";
    const runs = liveRun ? await api("/api/runs").catch(() => null) : null;
    const run = runs && runs.find((r) => r.run_uuid === liveRun.run_id);
    if (run && !["running", "stale"].includes(run.status)) {
      status(`live: ${name} ${run.status} (episode ${run.last_episode}); waiting for a resume`, "done");
    } else {
      status(`live: lost ${url}${name ? ` (${name})` : ""}, reconnecting…`, "lost");
    }
  };
  const connect = () => {
    const socket = new WebSocket(url);
    socket.onopen = () => {
      status(`live: connected to ${url}`, "connected");
      socket.send("subscribe grid_frame");  // the live grid's frames too (docs: "Live grid")
    };
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
        if (current && current.kind === "run" && current.uuid === message.run_id) catchUp(current);  // stored while away
      } else if (message.kind === "grid_frame") {
        if (current && current.kind === "run" && current.uuid === message.run_id && current.liveGrid) {
          current.liveGrid.show(message);
        }
      } else if (message.kind === "episode_snapshot") {
        liveRecent.push({ run_id: message.run_id, episode: aggregate(message) });
        if (liveRecent.length > LIVE_RECENT) liveRecent.shift();
        if (!current) return;
        if (current.kind === "runs") current.onEpisode(message);
        else if (current.kind === "run" && current.uuid === message.run_id && addEpisodes(current.s, [aggregate(message)])) {
          current.redraw();
        }
      }
    };
    socket.onclose = () => {
      const wasDone = liveStatus.classList.contains("done");
      if (!wasDone) closed();
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

// ---- compare: groups of runs with IQM, bootstrap CIs and P(X > Y) (the bytes of `compare --json`) -------------

async function comparePage() {
  const report = await api(`/api/compare${location.search}`);
  breadcrumbs(link("/", "runs"), el("span", { text: "compare" }));
  const w = report.window, b = report.bootstrap;
  view.replaceChildren(el("h1", { text: `Compare: ${report.metric}` }),
    el("p", { class: "muted", id: "compare-window", text: `${w.asked}: episodes ${w.first_episode}-${w.last_episode} of every run; ` +
      `IQM CI: 95 % percentile, stratified bootstrap over runs, ${b.reps} resamples, seed ${b.seed}` }));
  const ci = (c) => (c ? `[${fmt(c[0])}, ${fmt(c[1])}]` : "n/a");
  const scores = el("div", { class: "scroll", id: "compare-scores" }, table(
    ["group", "runs", "n", "mean", "std", "median", "IQM", "IQM 95 % CI", "note"],
    report.groups.map((g) => ({ cells: [g.label, g.runs.join(" "), g.n, g.mean, g.std, g.median, g.iqm, ci(g.iqm_ci), g.note || ""] }))));
  view.append(scores);
  for (const p of report.improvement) {
    view.append(el("p", { class: "improvement", text: `P(${p.x} > ${p.y}) = ${fmt(p.probability)}, 95 % CI ${ci(p.ci)}${p.note ? ` (${p.note})` : ""}` }));
  }
  const xs = report.groups[0].curve.map((point) => point.last_episode);
  const series = [], bands = [];
  const showRuns = new URLSearchParams(location.search).get("per_run") === "1";
  report.groups.forEach((g, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const at = series.length;
    series.push({ label: `${g.label} IQM`, values: g.curve.map((p) => p.iqm), colour, width: 2 });
    series.push({ label: `${g.label} CI high`, values: g.curve.map((p) => (p.ci ? p.ci[1] : null)), colour, dash: [2, 4] });
    series.push({ label: `${g.label} CI low`, values: g.curve.map((p) => (p.ci ? p.ci[0] : null)), colour, dash: [2, 4] });
    bands.push([at + 1, at + 2, `${colour}22`]);
    if (showRuns) g.runs.forEach((run, k) => series.push({ label: `run ${run}`, values: g.curve.map((p) => p.runs[k]), colour, width: 0.5 }));
  });
  const curves = el("div", { id: "compare-curves" });
  view.append(curves);
  chart(curves, { title: `IQM of ${report.metric} over runs, per bucket of episodes, with 95 % CI bands`, y: report.metric,
    series, bands }, xs, Math.min(960, view.clientWidth || 960));
  const toggle = link(`/compare?${new URLSearchParams([...new URLSearchParams(location.search)].filter(([k]) => k !== "per_run").concat(showRuns ? [] : [["per_run", "1"]]))}`,
    showRuns ? "hide per-run lines" : "show per-run lines");
  view.append(el("p", {}, toggle));
  if (report.config_diff.length) {
    view.append(el("h2", { text: "config keys that differ (identical keys hidden)" }), el("div", { class: "scroll", id: "compare-diff" },
      table(["key", ...report.groups.map((g) => g.label)], report.config_diff.map((d) => ({ cells: [d.key, ...d.values.map((v) => JSON.stringify(v))] })))));
  }
}
