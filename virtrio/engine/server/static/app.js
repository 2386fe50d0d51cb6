// The virtrio browser console: talks only to the server's REST API (X-API-Key) and its console
// and events WebSockets (the key as ?api_key=, since a browser cannot set WebSocket headers).
"use strict";

const API = "/api/v1";
const KEY_STORAGE = "virtrio.apiKey";
const $ = (id) => document.getElementById(id);

const app = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  backends: new Map(), // name -> capabilities.supported (a Set)
  selected: null, // the selected session's JSON
  consoleSocket: null,
  eventsSocket: null,
  term: null,
  fit: null,
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "http_error";
    this.details = (body && body.details) || {};
  }
}

async function api(method, path, { json, body, query, raw } = {}) {
  const headers = { "X-API-Key": app.key };
  let payload = body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  const url = new URL(API + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) url.searchParams.set(name, value);
  const response = await fetch(url, { method, headers, body: payload });
  if (!response.ok) {
    let error = null;
    try {
      error = await response.json();
    } catch (_) {
      // not the API's error body (a proxy, a crash): the status alone says it
    }
    throw new ApiError(response.status, error);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

function status(text, isError = false) {
  const line = $("status");
  line.textContent = text;
  line.classList.toggle("error", isError);
}

function fail(error) {
  const code = error instanceof ApiError ? ` (${error.status} ${error.code})` : "";
  status(`${error.message}${code}`, true);
  if (error instanceof ApiError && error.status === 401) logout();
}

function guard(fn) {
  return async (event) => {
    if (event) event.preventDefault();
    try {
      await fn(event);
    } catch (error) {
      fail(error);
    }
  };
}

// --- login ---------------------------------------------------------------------------------

async function login(key) {
  app.key = key;
  // any read route tells whether the key is good; this one is also the first thing shown
  await api("GET", "/sessions", { query: { limit: 1 } });
  sessionStorage.setItem(KEY_STORAGE, key);
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("logout").hidden = false;
  $("whoami").textContent = `key ${key.slice(0, 10)}…`;
  await Promise.all([loadChoices(), refreshSessions()]);
  status("Logged in.");
}

function logout() {
  sessionStorage.removeItem(KEY_STORAGE);
  app.key = "";
  select(null);
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("logout").hidden = true;
  $("whoami").textContent = "";
}

// --- sessions ------------------------------------------------------------------------------

async function loadChoices() {
  const [backends, boards] = await Promise.all([api("GET", "/backends"), api("GET", "/boards")]);
  const backendSelect = $("create-backend");
  backendSelect.replaceChildren();
  for (const item of backends.items) {
    app.backends.set(item.name, new Set(item.capabilities.supported));
    backendSelect.append(new Option(item.name, item.name));
  }
  const boardSelect = $("create-board");
  boardSelect.replaceChildren();
  for (const item of boards.items) {
    boardSelect.append(new Option(`${item.name} (${item.source})`, item.name));
  }
}

function boardName(session) {
  const board = session.board || {};
  if (board.name) return board.name;
  return (board.config && (board.config.name || board.config.system_id)) || "custom";
}

async function refreshSessions() {
  const page = await api("GET", "/sessions", { query: { limit: 200, sort: "-created_at" } });
  const body = $("sessions").querySelector("tbody");
  body.replaceChildren();
  for (const session of page.items) {
    const row = document.createElement("tr");
    row.dataset.id = session.id;
    row.classList.toggle("selected", app.selected !== null && app.selected.id === session.id);
    for (const text of [session.id, boardName(session), session.state]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.addEventListener("click", guard(() => openSession(session.id)));
    body.append(row);
  }
  $("sessions-empty").hidden = page.items.length > 0;
}

function numberField(id) {
  const text = $(id).value.trim();
  return text === "" ? undefined : Number(text);
}

async function createSession() {
  const resources = {};
  for (const [name, id] of [
    ["memory_mb", "create-memory"],
    ["cpus", "create-cpus"],
    ["cpu_time_s", "create-cpu-time"],
    ["timeout_s", "create-timeout"],
  ]) {
    const value = numberField(id);
    if (value !== undefined) resources[name] = value;
  }
  status("Creating a session…");
  const session = await api("POST", "/sessions", {
    json: { backend: $("create-backend").value, board: $("create-board").value, resources },
  });
  status(`Created ${session.id}.`);
  await refreshSessions();
  await openSession(session.id);
}

async function openSession(id) {
  const session = await api("GET", `/sessions/${encodeURIComponent(id)}`);
  select(session);
  await refreshSessions();
}

function select(session) {
  closeSockets();
  app.selected = session;
  $("no-selection").hidden = session !== null;
  $("session-view").hidden = session === null;
  $("registers").querySelector("tbody").replaceChildren();
  $("screen").hidden = true;
  $("program-status").textContent = "";
  if (session === null) return;
  $("session-id").textContent = session.id;
  showState(session.state);
  $("session-board").textContent =
    `${session.backend} · ${boardName(session)} · owner ${session.owner} · server ${session.server}`;
  const supported = app.backends.get(session.backend) || new Set();
  const display = supported.has("display") || supported.has("screenshot");
  $("screenshot").hidden = !display;
  $("screen-none").textContent = display ? "" : "This board has no display.";
  if (session.failure) status(`${session.id} failed: ${session.failure.error}`, true);
  resetTerminal();
  if (session.state === "running" || session.state === "creating") openSockets(session.id);
}

function showState(state) {
  const badge = $("session-state");
  badge.textContent = state;
  badge.dataset.state = state;
}

// --- console and events --------------------------------------------------------------------

function resetTerminal() {
  if (app.term === null) {
    app.term = new Terminal({ convertEol: true, rows: 20, scrollback: 5000 });
    app.fit = new FitAddon.FitAddon();
    app.term.loadAddon(app.fit);
    app.term.open($("terminal"));
    app.term.onData((data) => {
      const socket = app.consoleSocket;
      if (socket !== null && socket.readyState === WebSocket.OPEN) {
        socket.send(new TextEncoder().encode(data));
      }
    });
    window.addEventListener("resize", () => app.fit.fit());
  }
  app.term.reset();
  app.fit.fit();
}

function socketUrl(id, stream) {
  const url = new URL(`${API}/sessions/${encodeURIComponent(id)}/${stream}`, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("api_key", app.key);
  return url;
}

function closeReason(event) {
  // a refused socket is closed with 4000 + the HTTP status and the error body as the reason
  try {
    return JSON.parse(event.reason).error;
  } catch (_) {
    return event.reason || `code ${event.code}`;
  }
}

function openSockets(id) {
  const consoleSocket = new WebSocket(socketUrl(id, "console"));
  consoleSocket.binaryType = "arraybuffer";
  consoleSocket.onopen = () => ($("console-status").textContent = "connecting…");
  consoleSocket.onmessage = (event) => {
    if (typeof event.data === "string") {
      // text frames are JSON: first {"type": "console", "read_only"}, later an error body
      // answering refused input
      let message = event.data;
      try {
        const frame = JSON.parse(event.data);
        if (frame.type === "console") message = frame.read_only ? "connected (read-only)" : "connected";
        else if (frame.error !== undefined) message = frame.error;
      } catch (_) {
        // not JSON: show as is
      }
      $("console-status").textContent = message;
    } else {
      app.term.write(new Uint8Array(event.data));
    }
  };
  consoleSocket.onclose = (event) => {
    if (app.consoleSocket === consoleSocket) {
      $("console-status").textContent = `closed: ${closeReason(event)}`;
      app.consoleSocket = null;
    }
  };
  app.consoleSocket = consoleSocket;

  const eventsSocket = new WebSocket(socketUrl(id, "events"));
  eventsSocket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "state" && app.selected !== null && app.selected.id === id) {
      app.selected.state = message.state;
      showState(message.state);
      // a resource limit (memory, CPU time) that ended the session says so
      if (message.failure) status(`${id} failed: ${message.failure.error}`, true);
    }
    if (message.type === "stopped") status(`Stopped at ${hex(message.pc)}.`);
  };
  eventsSocket.onclose = () => {
    if (app.eventsSocket === eventsSocket) app.eventsSocket = null;
  };
  app.eventsSocket = eventsSocket;
}

function closeSockets() {
  for (const name of ["consoleSocket", "eventsSocket"]) {
    const socket = app[name];
    app[name] = null;
    if (socket !== null) socket.close(1000, "viewer left");
  }
  $("console-status").textContent = "";
}

// --- actions on the selected session -------------------------------------------------------

function sessionPath(suffix = "") {
  return `/sessions/${encodeURIComponent(app.selected.id)}${suffix}`;
}

async function power(action) {
  await api("POST", sessionPath("/power"), { json: { action } });
  status(`Power ${action}: done.`);
}

async function deleteSession() {
  const id = app.selected.id;
  await api("DELETE", sessionPath());
  select(null);
  await refreshSessions();
  status(`Deleted ${id}.`);
}

async function uploadAndStart() {
  const file = $("program-file").files[0];
  if (!file) throw new Error("choose a program file first");
  $("program-status").textContent = `uploading ${file.name}…`;
  const program = await api("POST", sessionPath("/programs"), {
    body: await file.arrayBuffer(),
    query: { format: $("program-format").value, name: file.name },
  });
  await api("POST", sessionPath(`/programs/${encodeURIComponent(program.program_id)}/start`), {
    json: {},
  });
  $("program-status").textContent = `${file.name}: started (${program.program_id})`;
}

function hex(value) {
  return typeof value === "number" ? `0x${value.toString(16)}` : String(value);
}

async function readRegisters() {
  const answer = await api("GET", sessionPath("/debug/registers"));
  const body = $("registers").querySelector("tbody");
  body.replaceChildren();
  for (const [name, value] of Object.entries(answer.registers)) {
    const row = document.createElement("tr");
    const nameCell = document.createElement("th");
    nameCell.textContent = name;
    const valueCell = document.createElement("td");
    valueCell.textContent = hex(value);
    row.append(nameCell, valueCell);
    body.append(row);
  }
}

async function debug(action) {
  const answer = await api("POST", sessionPath(`/debug/${action}`), { json: {} });
  status(answer.pc !== undefined ? `${action}: pc ${hex(answer.pc)}` : `${action}: ${answer.state}`);
  if (answer.state === "stopped") await readRegisters();
}

async function screenshot() {
  let response;
  try {
    response = await api("GET", sessionPath("/screenshot"), { raw: true });
  } catch (error) {
    // the backend may have displays while this board has none: the server says which
    if (error instanceof ApiError && error.code === "unsupported_capability") {
      $("screenshot").hidden = true;
      $("screen").hidden = true;
      $("screen-none").textContent = "This board has no display.";
      return;
    }
    throw error;
  }
  $("screen-none").textContent = "";
  const image = $("screen");
  if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
  // shown once decoded; data-taken changes with each picture (what a waiting test sees)
  image.onload = () => {
    image.hidden = false;
    image.dataset.taken = String(Date.now());
  };
  image.src = URL.createObjectURL(await response.blob());
}

// --- wiring --------------------------------------------------------------------------------

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await login($("api-key").value.trim());
  } catch (error) {
    app.key = "";
    $("login-error").textContent =
      error instanceof ApiError && error.status === 401 ? "That key is not valid." : error.message;
  }
});
$("logout").addEventListener("click", logout);
$("refresh").addEventListener("click", guard(refreshSessions));
$("create-form").addEventListener("submit", guard(createSession));
$("program-form").addEventListener("submit", guard(uploadAndStart));
$("delete").addEventListener("click", guard(deleteSession));
for (const button of $("power").querySelectorAll("[data-power]")) {
  button.addEventListener("click", guard(() => power(button.dataset.power)));
}
$("read-registers").addEventListener("click", guard(readRegisters));
for (const action of ["interrupt", "step", "continue"]) {
  $(action).addEventListener("click", guard(() => debug(action)));
}
$("screenshot").addEventListener("click", guard(screenshot));

if (app.key) login(app.key).catch(() => logout());
