// Pressluft dashboard: small progressive enhancement over server-rendered pages.
// Talks only to the public API (/api/...), like any other client.
"use strict";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(method, path, body, headers) {
  const init = { method, headers: Object.assign({ Accept: "application/json" }, headers || {}) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
  return { ok: res.ok, status: res.status, data, headers: res.headers };
}

function describeError(data) {
  if (!data) return "request failed";
  let msg = data.message || data.code || "request failed";
  if (data.details && data.details.hint) msg += " — " + data.details.hint;
  return msg;
}

// --- settings -------------------------------------------------------------
function setupSettings() {
  const form = document.getElementById("settings-form");
  if (!form) return;
  const select = form.elements["dns01_provider"];
  const holder = document.getElementById("credential-fields");

  function renderCredentialFields() {
    holder.replaceChildren();
    const option = select.options[select.selectedIndex];
    const keys = (option && option.dataset.keys) ? option.dataset.keys.split(",") : [];
    for (const key of keys) {
      const label = el("label", {}, key);
      label.appendChild(el("input", { name: "cred:" + key, type: "password", autocomplete: "off" }));
      holder.appendChild(label);
    }
  }
  select.addEventListener("change", renderCredentialFields);
  renderCredentialFields();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = document.getElementById("settings-result");
    const patch = {};
    for (const name of ["control_plane_domain", "preview_domain"]) {
      patch[name] = form.elements[name].value.trim() || null;
    }
    patch.dns01_provider = select.value || null;
    const creds = {};
    for (const input of holder.querySelectorAll("input")) {
      if (input.value) creds[input.name.slice(5)] = input.value;
    }
    if (Object.keys(creds).length) patch.dns01_credentials = creds;
    const version = form.dataset.version;
    const res = await api("PATCH", "/api/settings", patch, { "If-Match": '"' + version + '"' });
    if (res.ok) {
      form.dataset.version = String(res.data.version);
      for (const name of ["control_plane_domain", "preview_domain"]) {
        form.elements[name].value = res.data[name] || "";
      }
      const pill = document.getElementById("credentials-state");
      pill.hidden = !res.data.dns01_credentials_configured;
      document.getElementById("settings-version").textContent = String(res.data.version);
      for (const input of holder.querySelectorAll("input")) input.value = "";
      result.className = "result-ok";
      result.textContent = "Saved (version " + res.data.version + ").";
    } else {
      result.className = "result-error";
      result.textContent = describeError(res.data);
    }
  });
}

// --- live event feed --------------------------------------------------------
async function setupEventFeed() {
  const table = document.getElementById("event-feed");
  if (!table) return;
  const body = table.querySelector("tbody");
  const state = document.getElementById("feed-state");
  // Show the newest 50 events, then follow live; EventSource resumes by Last-Event-ID.
  const counters = await api("GET", "/api/metrics");
  const total = counters.ok ? counters.data.events_total : 0;
  const source = new EventSource("/api/events/stream?after=" + Math.max(0, total - 50));
  source.onopen = () => { state.textContent = "live"; state.className = "pill live"; };
  source.onerror = () => { state.textContent = "reconnecting"; state.className = "pill down"; };
  source.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    const row = el("tr", { "data-seq": String(e.seq), class: "fresh" });
    row.appendChild(el("td", {}, String(e.seq)));
    row.appendChild(el("td", {}, e.recorded_at));
    row.appendChild(el("td", {}, e.type));
    row.appendChild(el("td", {}, e.stream + "@" + e.stream_version));
    row.appendChild(el("td", {}, (e.meta && e.meta.actor) || ""));
    row.appendChild(el("td", { class: "data" }, JSON.stringify(e.data)));
    body.insertBefore(row, body.firstChild);
    while (body.children.length > 500) body.removeChild(body.lastChild);
  };
}

// --- login / logout ---------------------------------------------------------
function setupLogin() {
  const form = document.getElementById("login-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = document.getElementById("login-result");
    const res = await api("POST", "/api/login", {
      email: form.elements["email"].value.trim(),
      password: form.elements["password"].value,
    });
    if (res.ok) {
      // Only ever back into this dashboard (the server already sanitised `next`).
      const target = new URL(form.dataset.next || "/", window.location.origin);
      window.location.assign(target.origin === window.location.origin ? target.pathname + target.search : "/");
    } else {
      result.className = "result-error";
      result.textContent = describeError(res.data);
      form.elements["password"].value = "";
    }
  });
}

function setupLogout() {
  const button = document.getElementById("logout");
  if (!button) return;
  button.addEventListener("click", async () => {
    await api("POST", "/api/logout");
    window.location.assign("/login");
  });
}

// --- tokens -----------------------------------------------------------------
function fmtTime(value) { return value ? value.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }

async function loadTokens() {
  const body = document.querySelector("#token-table tbody");
  const res = await api("GET", "/api/tokens");
  if (!res.ok) return;
  body.replaceChildren();
  for (const t of res.data.items) {
    const row = el("tr", { "data-token-id": t.id, "data-status": t.status });
    row.appendChild(el("td", {}, t.name));
    row.appendChild(el("td", {}, t.prefix + "…"));
    row.appendChild(el("td", {}, t.scopes.join(", ")));
    row.appendChild(el("td", { class: "status-" + (t.status === "active" ? "ok" : "fail") }, t.status));
    row.appendChild(el("td", {}, fmtTime(t.created_at)));
    row.appendChild(el("td", {}, fmtTime(t.expires_at)));
    const cell = el("td");
    if (t.status === "active") {
      const revoke = el("button", { type: "button", class: "link danger" }, "Revoke");
      revoke.addEventListener("click", async () => {
        if (!window.confirm("Revoke the token \"" + t.name + "\"? Clients using it stop working at once.")) return;
        const done = await api("DELETE", "/api/tokens/" + t.id);
        if (done.ok) loadTokens();
      });
      cell.appendChild(revoke);
    }
    row.appendChild(cell);
    body.appendChild(row);
  }
}

function setupTokens() {
  const form = document.getElementById("token-form");
  if (!form) return;
  loadTokens();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = document.getElementById("token-result");
    const scopes = [...form.querySelectorAll("input[name=scope]:checked")].map((i) => i.value);
    const body = { name: form.elements["name"].value.trim(), scopes };
    const local = form.elements["expires_at"].value;
    if (local) body.expires_at = new Date(local).toISOString();
    const res = await api("POST", "/api/tokens", body);
    if (res.ok) {
      document.getElementById("token-secret-value").textContent = res.data.token;
      document.getElementById("token-secret").hidden = false;
      result.className = "result-ok";
      result.textContent = "Created " + res.data.name + ".";
      form.reset();
      loadTokens();
    } else {
      result.className = "result-error";
      result.textContent = describeError(res.data);
    }
  });
}

// --- audit ------------------------------------------------------------------
function setupAudit() {
  const table = document.getElementById("audit-table");
  if (!table) return;
  const body = table.querySelector("tbody");
  const more = document.getElementById("audit-more");
  const filter = document.getElementById("audit-filter");
  let before = null;

  async function load(reset) {
    const params = new URLSearchParams({ limit: "50" });
    for (const name of ["actor", "resource_type"]) {
      const value = filter.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    if (!reset && before) params.set("before", String(before));
    const res = await api("GET", "/api/audit?" + params.toString());
    if (!res.ok) return;
    if (reset) body.replaceChildren();
    for (const e of res.data.items) {
      const row = el("tr", { "data-seq": String(e.seq) });
      row.appendChild(el("td", {}, String(e.seq)));
      row.appendChild(el("td", {}, fmtTime(e.recorded_at)));
      row.appendChild(el("td", {}, e.actor));
      row.appendChild(el("td", {}, e.action));
      row.appendChild(el("td", {}, e.resource_type + (e.resource_id ? ":" + e.resource_id.slice(0, 8) : "")));
      row.appendChild(el("td", { class: "status-" + (e.result === "failed" ? "fail" : "ok") }, e.result));
      row.appendChild(el("td", { class: "data" }, e.correlation_id || ""));
      body.appendChild(row);
    }
    before = res.data.next_before;
    more.hidden = !res.data.has_more;
  }
  filter.addEventListener("submit", (ev) => { ev.preventDefault(); load(true); });
  more.addEventListener("click", () => load(false));
  load(true);
}

document.addEventListener("DOMContentLoaded", () => {
  setupLogin();
  setupLogout();
  setupSettings();
  setupEventFeed();
  setupTokens();
  setupAudit();
});
