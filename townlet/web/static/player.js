// townlet episode player: a recorded episode (GET /api/runs/R/episodes/E/recording) drawn on a canvas.
//
// The grid is the recording's own size (header.grid_size), affordances come from its header, every recorded
// agent is a marker and the followed one is highlighted with its path so far and its meters as bars. Controls:
// play/pause, step back/forward, speed, a scrubber marked with events (deaths, affordance uses, a meter running
// empty), keyboard (space, ← →). What is drawn is also written to #player-status (text and data-* attributes),
// so a test reads what the user sees. `onChange(agent, step)` keeps the page's URL shareable.

"use strict";

window.townletPlayer = (function () {
  const AGENT_COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#8250df", "#1d2430"];
  const AFFORDANCE_COLOUR = "#f6e7b0";
  const EMPTY = 1e-5;  // the world's EMPTY_EPSILON: a meter at or below it is empty
  const SPEEDS = [1, 2, 5, 10, 20, 50];

  function node(tag, attrs = {}, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k === "css") Object.assign(n.style, v);  // through the CSSOM: the page's CSP blocks inline style
      else n.setAttribute(k, v);
    }
    for (const c of children) n.append(c);
    return n;
  }

  // The cell and meters of agent `a` after step `t` (step 0: the start).
  function stateAt(header, a, t) {
    const i = Math.min(t, a.steps) - 1;
    if (i < 0) return { row: a.start[0], col: a.start[1], meters: header.initial_meters, i: -1 };
    return { row: a.rows[i], col: a.cols[i], meters: a.meters.map((m) => m[i]), i };
  }

  // Events of one agent for the scrubber: affordance uses, meters running empty, the death.
  function eventsOf(header, a) {
    const out = [];
    a.affordances.forEach((used, i) => { if (used >= 0) out.push({ step: i + 1, kind: "use", text: header.affordances[used].name }); });
    header.meters.forEach((name, m) => {
      const series = a.meters[m];
      for (let i = 0; i < series.length; i++) {
        if (series[i] <= EMPTY && (i === 0 ? header.initial_meters[m] > EMPTY : series[i - 1] > EMPTY)) {
          out.push({ step: i + 1, kind: "empty", text: `${name} empty` });
        }
      }
    });
    if (a.death_cause !== "timeout") out.push({ step: a.steps, kind: "death", text: `died of ${a.death_cause}` });
    return out;
  }

  // The grid, its affordances, one marker per agent (dimmed once dead; `followed` ringed) and a path of cells.
  function drawBoard(canvas, cell, size, affordances, markers, followed, path) {
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#d0d7de";
    ctx.lineWidth = 1;
    for (let i = 0; i <= size; i++) {
      ctx.beginPath(); ctx.moveTo(i * cell + 0.5, 0); ctx.lineTo(i * cell + 0.5, size * cell); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(0, i * cell + 0.5); ctx.lineTo(size * cell, i * cell + 0.5); ctx.stroke();
    }
    ctx.font = `${Math.max(9, Math.floor(cell / 3.2))}px sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (const aff of affordances) {
      ctx.fillStyle = AFFORDANCE_COLOUR;
      ctx.fillRect(aff.col * cell + 1, aff.row * cell + 1, cell - 1, cell - 1);
      ctx.fillStyle = "#57606a";
      ctx.fillText(aff.name, aff.col * cell + cell / 2, aff.row * cell + cell * 0.22);
    }
    if (path && path.length) {
      ctx.strokeStyle = "rgba(215, 58, 73, 0.55)";
      ctx.lineWidth = Math.max(2, cell / 10);
      ctx.beginPath();
      path.forEach(([r, c], i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, c * cell + cell / 2, r * cell + cell / 2));
      ctx.stroke();
    }
    markers.forEach((m, k) => {
      const x = m.col * cell + cell / 2 + ((k % 3) - 1) * cell * 0.12;
      const y = m.row * cell + cell * 0.6 + ((Math.floor(k / 3) % 3) - 1) * cell * 0.1;
      ctx.globalAlpha = m.dead ? 0.35 : 1;
      ctx.fillStyle = AGENT_COLOURS[k % AGENT_COLOURS.length];
      ctx.beginPath(); ctx.arc(x, y, cell * 0.16, 0, 2 * Math.PI); ctx.fill();
      if (cell >= 28) {  // the agent's index on its marker, where there is room
        ctx.fillStyle = "#ffffff";
        ctx.font = `${Math.floor(cell * 0.2)}px sans-serif`;
        ctx.fillText(String(m.label % 100), x, y);
      }
      ctx.globalAlpha = 1;
    });
    const me = markers[followed];
    if (me) {
      ctx.strokeStyle = "#d73a49";
      ctx.lineWidth = 3;
      ctx.beginPath(); ctx.arc(me.col * cell + cell / 2, me.row * cell + cell * 0.6, cell * 0.3, 0, 2 * Math.PI); ctx.stroke();
    }
  }

  function cellSize(size) {
    return Math.max(12, Math.min(56, Math.floor(448 / size)));
  }

  // The live grid (serve --live): frames of the running episode's recorded agents, drawn as they arrive;
  // #live-grid-status says which episode and step, and how many frames this page missed.
  function liveGrid(parent) {
    const status = node("p", { id: "live-grid-status", class: "player-status", text: "live grid: waiting for a frame…" });
    const box = node("div", { class: "player" });
    parent.append(box, status);
    let canvas = null;
    let last = null;
    let missed = 0;
    let shown = 0;
    return {
      show(frame) {
        const cell = cellSize(frame.grid_size);
        if (!canvas || canvas.width !== frame.grid_size * cell) {
          canvas = node("canvas", { id: "live-grid", width: frame.grid_size * cell, height: frame.grid_size * cell });
          box.replaceChildren(canvas);
        }
        if (last !== null && frame.frame > last + 1) missed += frame.frame - last - 1;
        last = frame.frame;
        shown += 1;
        const markers = frame.agents.map((a, k) => ({ row: frame.rows[k], col: frame.cols[k], label: a, dead: !frame.alive[k] }));
        drawBoard(canvas, cell, frame.grid_size, frame.affordances, markers, 0, null);
        status.textContent = `live grid: episode ${frame.episode} · step ${frame.step} · ${frame.agents.length} agents · ` +
          `frame ${frame.frame} · ${missed} missed`;
        Object.assign(status.dataset, { episode: String(frame.episode), step: String(frame.step), frame: String(frame.frame),
          missed: String(missed), shown: String(shown), row: String(frame.rows[0]), col: String(frame.cols[0]),
          latencyMs: String(Math.round(Date.now() - frame.sent_at * 1000)) });  // trainer -> drawn, this frame
      },
    };
  }

  function mount(parent, payload, options = {}) {
    const header = payload.header;
    const agents = payload.agents;
    const byIndex = new Map(agents.map((a, k) => [a.agent_idx, k]));
    const last = header.steps;
    let followed = byIndex.has(options.agent) ? options.agent : agents[0].agent_idx;
    let step = Math.max(0, Math.min(options.step ?? 0, last));
    let playing = false;
    let speed = 10;
    let timer = null;
    const onChange = options.onChange || (() => {});

    const size = header.grid_size;
    const cell = cellSize(size);
    const canvas = node("canvas", { id: "player-grid", width: size * cell, height: size * cell, tabindex: "0" });
    const status = node("p", { id: "player-status", class: "player-status" });
    const meters = node("div", { class: "player-meters", id: "player-meters" });
    const scrub = node("input", { type: "range", min: "0", max: String(last), value: String(step), id: "player-scrub", "aria-label": "step" });
    const marks = node("div", { class: "player-marks", id: "player-marks" });
    const playButton = node("button", { id: "player-play", type: "button", text: "play" });
    const back = node("button", { id: "player-back", type: "button", text: "◀ step", title: "step back (←)" });
    const forward = node("button", { id: "player-forward", type: "button", text: "step ▶", title: "step forward (→)" });
    const speedSelect = node("select", { id: "player-speed", "aria-label": "speed" },
      ...SPEEDS.map((s) => node("option", { value: String(s), text: `${s} steps/s` })));
    speedSelect.value = String(speed);
    const agentSelect = node("select", { id: "player-agent", "aria-label": "followed agent" },
      ...agents.map((a) => node("option", { value: String(a.agent_idx), text: `agent ${a.agent_idx}` })));
    agentSelect.value = String(followed);
    const legend = node("p", { class: "muted player-legend", text:
      "grid as recorded · shaded cells: affordances · each dot an agent (the followed one ringed, its path drawn) · " +
      "scrubber marks: blue an affordance use, orange a meter running empty, red the death · space plays, ← → step" });

    parent.append(node("div", { class: "player" },
      node("div", { class: "player-left" }, canvas),
      node("div", { class: "player-right" },
        node("div", { class: "player-controls" }, back, playButton, forward, speedSelect, agentSelect),
        node("div", { class: "player-timeline" }, scrub, marks), status, meters)), legend);

    function drawMarks() {
      const a = agents[byIndex.get(followed)];
      marks.replaceChildren(...eventsOf(header, a).map((e) => node("span", {
        class: `mark ${e.kind}`, title: `step ${e.step}: ${e.text}`, css: { left: `${(100 * e.step) / Math.max(1, last)}%` },
        "data-step": String(e.step) })));
    }

    function draw() {
      const me = agents[byIndex.get(followed)];
      const path = [me.start, ...me.rows.slice(0, Math.min(step, me.steps)).map((r, i) => [r, me.cols[i]])];
      const markers = agents.map((a) => {
        const st = stateAt(header, a, step);
        return { row: st.row, col: st.col, label: a.agent_idx, dead: step >= a.steps && a.death_cause !== "timeout" };
      });
      drawBoard(canvas, cell, size, header.affordances, markers, byIndex.get(followed), path);
      const s = stateAt(header, me, step);

      const action = s.i >= 0 ? header.actions[me.actions[s.i]] : null;
      const how = s.i >= 0 ? (me.explored[s.i] ? "explored" : "greedy") : null;
      const used = s.i >= 0 && me.affordances[s.i] >= 0 ? header.affordances[me.affordances[s.i]].name : null;
      const ended = step >= me.steps ? (me.death_cause === "timeout" ? " · timed out" : ` · died of ${me.death_cause}`) : "";
      status.textContent = `step ${step}/${last} · agent ${followed} at row ${s.row}, col ${s.col}` +
        (action ? ` · ${action} (${how})` : " · start") + (used ? ` · used ${used}` : "") + ended;
      Object.assign(status.dataset, { step: String(step), agent: String(followed), row: String(s.row), col: String(s.col) });
      meters.replaceChildren(...header.meters.map((name, m) => {
        const v = s.meters[m];
        const active = header.active_meters.includes(name);
        return node("div", { class: "player-meter", "data-meter": name, "data-value": String(v) },
          node("span", { class: "player-meter-name", text: `${name}${active ? "" : " (inactive)"}` }),
          node("span", { class: "player-bar" }, node("span", { class: v <= 0.25 ? "player-fill low" : "player-fill", css: { width: `${100 * v}%` } })),
          node("span", { class: "player-meter-value", text: v.toFixed(3) }));
      }));
      scrub.value = String(step);
      playButton.textContent = playing ? "pause" : "play";
    }

    function moveTo(t) {
      step = Math.max(0, Math.min(last, t));
      draw();
      onChange(followed, step);
    }

    function setPlaying(on) {
      playing = on;
      if (timer) clearInterval(timer);
      timer = null;
      if (playing) {
        if (step >= last) step = 0;
        timer = setInterval(() => {
          if (step >= last) { setPlaying(false); return; }
          moveTo(step + 1);
        }, 1000 / speed);
      }
      draw();
    }

    playButton.addEventListener("click", () => setPlaying(!playing));
    back.addEventListener("click", () => { setPlaying(false); moveTo(step - 1); });
    forward.addEventListener("click", () => { setPlaying(false); moveTo(step + 1); });
    scrub.addEventListener("input", () => { const t = Number(scrub.value); setPlaying(false); moveTo(t); });
    speedSelect.addEventListener("change", () => { speed = Number(speedSelect.value); if (playing) setPlaying(true); });
    agentSelect.addEventListener("change", () => { followed = Number(agentSelect.value); drawMarks(); moveTo(step); });
    marks.addEventListener("click", (event) => {
      const mark = event.target.closest(".mark");
      if (mark) { setPlaying(false); moveTo(Number(mark.dataset.step)); }
    });
    const keys = (event) => {
      if (!document.body.contains(canvas)) { document.removeEventListener("keydown", keys); return; }  // page left
      if (["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName) && event.target !== scrub) return;
      if (event.key === " ") { event.preventDefault(); setPlaying(!playing); }
      else if (event.key === "ArrowRight") { event.preventDefault(); setPlaying(false); moveTo(step + 1); }
      else if (event.key === "ArrowLeft") { event.preventDefault(); setPlaying(false); moveTo(step - 1); }
    };
    document.addEventListener("keydown", keys);
    drawMarks();
    draw();
    status.dataset.firstDrawMs = String(Math.round(performance.now()));  // since the page's navigation began
    return { moveTo, stop: () => setPlaying(false) };
  }

  return { mount, liveGrid };
})();
