// instructkit arena: plain JavaScript, no build step. Model text is only ever set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let CFG = null;

// ---- HTTP -------------------------------------------------------------------------------------------
async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Arena": "1" },
  };
  const r = await fetch("/ui/api/" + path, opts);
  if (r.status === 401) { location.href = "/ui/login"; throw new Error("login required"); }
  const data = await r.json();
  if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
  return data;
}

// POST, then read server-sent events ({"side", "text"|"finish"|"error"} ... {"done"}) as they arrive
async function stream(path, body, onEvent, signal) {
  const r = await fetch("/ui/api/" + path, {
    method: "POST", body: JSON.stringify(body), signal,
    headers: { "Content-Type": "application/json", "X-Arena": "1" },
  });
  if (r.status === 401) { location.href = "/ui/login"; return; }
  if (!r.ok) {
    let msg = "HTTP " + r.status;
    try { msg = (await r.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (line.startsWith("data:")) onEvent(JSON.parse(line.slice(5)));
      }
    }
  }
}

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

// ---- chat bubbles -----------------------------------------------------------------------------------
function bubble(log, role, text) {
  const hint = log.querySelector(".hint");
  if (hint) hint.remove();
  const div = document.createElement("div");
  div.className = "msg " + role;
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text || "";
  div.appendChild(span);
  if (role === "assistant") {
    div.dataset.chunks = "0";
    const b = document.createElement("button");
    b.className = "copy"; b.type = "button"; b.textContent = "Copy"; b.title = "Copy this reply";
    b.addEventListener("click", () => copyText(span.textContent, b));
    div.appendChild(b);
  }
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

function addDelta(div, text) {
  div.querySelector(".text").textContent += text;
  div.dataset.chunks = String(Number(div.dataset.chunks) + 1);
  const log = div.parentElement;
  if (log) log.scrollTop = log.scrollHeight;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // no clipboard API (plain http on another host): the old way
    const ta = document.createElement("textarea");
    ta.value = text; document.body.appendChild(ta); ta.select();
    document.execCommand("copy"); ta.remove();
  }
  const old = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = old; }, 1200);
}

function params(prefix) {
  return {
    temperature: Number($(prefix + "temperature").value),
    top_p: Number($(prefix + "top_p").value),
    max_tokens: Number($(prefix + "max_tokens").value),
  };
}

function enterSends(textarea, form) {
  textarea.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
}

// ---- playground -------------------------------------------------------------------------------------
const PG = { messages: [], busy: false, ctrl: null };

function pgButtons() {
  $("pg-send").disabled = PG.busy;
  $("pg-stop").hidden = !PG.busy;
  $("pg-regen").disabled = PG.busy || !PG.messages.some((m) => m.role === "assistant");
  $("pg-clear").disabled = PG.busy;
}

async function pgRun() {
  const msgs = [];
  const system = $("pg-system").value.trim();
  if (system) msgs.push({ role: "system", content: system });
  msgs.push(...PG.messages);
  const div = bubble($("pg-log"), "assistant", "");
  div.dataset.state = "streaming";
  PG.busy = true; PG.ctrl = new AbortController(); pgButtons(); showError("");
  let text = "";
  try {
    await stream("chat", { model: $("pg-model").value, messages: msgs, ...params("pg-") }, (ev) => {
      if (ev.text) { text += ev.text; addDelta(div, ev.text); }
      if (ev.error) { div.classList.add("error"); div.querySelector(".text").textContent = ev.error; text = null; }
    }, PG.ctrl.signal);
  } catch (e) {
    if (e.name !== "AbortError") { div.classList.add("error"); div.querySelector(".text").textContent = e.message; text = null; }
  }
  div.dataset.state = "done";
  if (text === null) PG.messages.pop();  // the failed prompt can be sent again
  else PG.messages.push({ role: "assistant", content: text });
  PG.busy = false; pgButtons();
}

function pgInit() {
  $("pg-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("pg-input").value.trim();
    if (!text || PG.busy) return;
    $("pg-input").value = "";
    PG.messages.push({ role: "user", content: text });
    bubble($("pg-log"), "user", text);
    pgRun();
  });
  enterSends($("pg-input"), $("pg-form"));
  $("pg-stop").addEventListener("click", () => PG.ctrl && PG.ctrl.abort());
  $("pg-regen").addEventListener("click", () => {
    if (PG.busy || !PG.messages.length || PG.messages[PG.messages.length - 1].role !== "assistant") return;
    PG.messages.pop();
    const bots = $("pg-log").querySelectorAll(".msg.assistant");
    bots[bots.length - 1].remove();
    pgRun();
  });
  $("pg-clear").addEventListener("click", () => {
    PG.messages = [];
    $("pg-log").replaceChildren();
    pgButtons();
  });
  for (const k of ["temperature", "top_p"]) {
    const inp = $("pg-" + k);
    const show = () => { $("pg-" + k + "-v").textContent = Number(inp.value).toFixed(2); };
    inp.addEventListener("input", show);
    show();
  }
  pgButtons();
}

// ---- battle -----------------------------------------------------------------------------------------
const BT = { id: null, busy: false, turns: 0, voted: false };

function btButtons() {
  const canVote = !!BT.id && BT.turns > 0 && !BT.busy && !BT.voted;
  for (const b of document.querySelectorAll("[data-vote]")) b.disabled = !canVote;
  const full = BT.turns >= CFG.max_turns;
  $("bt-send").disabled = BT.busy || BT.voted || full;
  $("bt-input").disabled = BT.voted || full;
  $("bt-new").disabled = BT.busy;
}

function btClear() {
  BT.id = null; BT.turns = 0; BT.voted = false;
  for (const i of [0, 1]) {
    $("bt-log-" + i).replaceChildren();
    $("bt-name-" + i).textContent = i ? "Model B" : "Model A";
    $("bt-name-" + i).classList.remove("revealed");
  }
  $("bt-status").textContent = "";
  $("bt-input").value = "";
  btButtons();
}

async function btSend(text) {
  BT.busy = true; btButtons(); showError("");
  let divs = [];
  try {
    if (!BT.id) BT.id = (await api("battles", {})).battle_id;
    divs = [0, 1].map((i) => {
      bubble($("bt-log-" + i), "user", text);
      const d = bubble($("bt-log-" + i), "assistant", "");
      d.dataset.state = "streaming";
      return d;
    });
    $("bt-status").textContent = "Both models are answering…";
    await stream("battles/" + BT.id + "/turn", { prompt: text, ...params("bt-") }, (ev) => {
      if (ev.done) {
        BT.turns = ev.turn;
        $("bt-status").textContent = ev.ok ? `Turn ${ev.turn} of ${ev.max_turns}. Keep chatting or vote.`
          : "A model failed on this turn; it was not counted. Try again or start a new round.";
        return;
      }
      const d = divs[ev.side];
      if (ev.text) addDelta(d, ev.text);
      if (ev.finish) d.dataset.state = "done";
      if (ev.error) { d.classList.add("error"); d.querySelector(".text").textContent = ev.error; d.dataset.state = "done"; }
    });
    for (const d of divs) d.dataset.state = "done";
  } catch (e) {  // refused before any token (turn limit, busy, expired battle) or the connection broke
    showError(e.message);
    for (const d of divs) {
      d.classList.add("error"); d.dataset.state = "done";
      const t = d.querySelector(".text"); if (!t.textContent) t.textContent = e.message;
    }
  }
  BT.busy = false; btButtons();
}

async function btVote(vote) {
  if (!BT.id || BT.voted) return;
  for (const b of document.querySelectorAll("[data-vote]")) b.disabled = true;
  try {
    const r = await api("battles/" + BT.id + "/vote", { vote });
    BT.voted = true;
    $("bt-name-0").textContent = "Model A: " + r.model_a;
    $("bt-name-1").textContent = "Model B: " + r.model_b;
    for (const i of [0, 1]) $("bt-name-" + i).classList.add("revealed");
    $("bt-status").textContent = `Vote recorded (${r.votes} in all). Press “New round” for another battle.`;
  } catch (e) {
    showError(e.message);
  }
  btButtons();
}

function btInit() {
  $("bt-max-turns").textContent = CFG.max_turns;
  $("bt-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("bt-input").value.trim();
    if (!text || BT.busy || BT.voted) return;
    $("bt-input").value = "";
    btSend(text);
  });
  enterSends($("bt-input"), $("bt-form"));
  for (const b of document.querySelectorAll("[data-vote]")) b.addEventListener("click", () => btVote(b.dataset.vote));
  $("bt-new").addEventListener("click", btClear);
  if (!CFG.battle) {
    $("bt-input").disabled = true;
    $("bt-status").textContent = "A battle needs at least two models: serve adapters with --adapter NAME=PATH.";
  }
  btClear();
  if (!CFG.battle) { $("bt-send").disabled = true; $("bt-input").disabled = true; }
}

// ---- leaderboard ------------------------------------------------------------------------------------
const ci = (x, lo, hi) => `${x.toFixed(0)} (${lo.toFixed(0)}, ${hi.toFixed(0)})`;

async function lbLoad() {
  let data;
  try { data = await api("leaderboard"); } catch (e) { showError(e.message); return; }
  const body = $("lb-table").querySelector("tbody");
  body.replaceChildren();
  for (const th of document.querySelectorAll(".judge")) th.hidden = !data.judge;
  for (const r of data.rows) {
    const cells = [r.rank, r.model, ci(r.rating, r.ci_low, r.ci_high), ci(r.elo, r.elo_ci_low, r.elo_ci_high),
      r.battles, `${r.wins} / ${r.ties} / ${r.losses}`, r.win_rate.toFixed(3)];
    if (data.judge) cells.push(r.judge ? ci(r.judge.rating, r.judge.ci_low, r.judge.ci_high) + ` · ${r.judge.battles}` : "–");
    const tr = document.createElement("tr");
    tr.dataset.model = r.model;
    for (const c of cells) { const td = document.createElement("td"); td.textContent = String(c); tr.appendChild(td); }
    body.appendChild(tr);
  }
  $("lb-summary").textContent = data.votes ? `${data.votes} votes; 95% intervals from ${data.bootstrap} bootstrap rounds.`
    : "No votes yet: battle and vote, and the ratings appear here.";
  $("lb-figure").hidden = !data.votes;
  if (data.votes) $("lb-winrate").src = "/ui/api/winrate.png?votes=" + data.votes;
  $("lb-table").dataset.votes = String(data.votes);
}

// ---- tabs and start ---------------------------------------------------------------------------------
function showTab(name) {
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== name;
  if (name === "leaderboard") lbLoad();
}

async function start() {
  for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => showTab(t.dataset.tab));
  try { CFG = await api("config"); } catch (e) { showError(e.message); return; }
  const sel = $("pg-model");
  for (const m of CFG.models) { const o = document.createElement("option"); o.value = o.textContent = m; sel.appendChild(o); }
  for (const p of ["pg-", "bt-"]) {
    $(p + "temperature").value = CFG.defaults.temperature;
    $(p + "top_p").value = CFG.defaults.top_p;
    $(p + "max_tokens").value = CFG.defaults.max_tokens;
    $(p + "max_tokens").max = CFG.max_tokens;
  }
  $("logout").hidden = !CFG.login;
  $("logout").addEventListener("click", async () => {
    await fetch("/ui/logout", { method: "POST", headers: { "X-Arena": "1" } });
    location.href = "/ui/login";
  });
  pgInit();
  btInit();
  document.body.dataset.ready = "1";
}

start();
