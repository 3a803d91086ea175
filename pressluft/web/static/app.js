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

// The tail of an id: job ids are time-ordered (UUIDv7), so their heads repeat for
// every job of the same minute; the tail is random in every kind of id.
function short(id) { return id ? "…" + id.slice(-8) : "—"; }

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
    for (const entry of keys) {
      // A key ending in "?" is optional; only secrets are masked.
      const key = entry.replace(/\?$/, "");
      const secret = /secret|token|key$/.test(key) && key !== "tsig_key_name";
      const label = el("label", {}, key);
      const attrs = { name: "cred:" + key, type: secret ? "password" : "text", autocomplete: "off" };
      if (entry.endsWith("?")) attrs.placeholder = "optional";
      label.appendChild(el("input", attrs));
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
      row.appendChild(el("td", {}, e.resource_type + (e.resource_id ? ":" + short(e.resource_id) : "")));
      const result = e.outcome ? e.result + " (" + e.outcome + ")" : e.result;
      row.appendChild(el("td", { class: "status-" + (e.result === "failed" ? "fail" : "ok") }, result));
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

// --- jobs -------------------------------------------------------------------
// An Idempotency-Key (crypto.randomUUID needs a secure context; this does not).
function newKey(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function setupJobs() {
  const table = document.getElementById("jobs-table");
  if (!table) return;
  const body = table.querySelector("tbody");
  const more = document.getElementById("jobs-more");
  const empty = document.getElementById("jobs-empty");
  const filter = document.getElementById("jobs-filter");
  const state = document.getElementById("jobs-state");
  let before = null;
  let pages = 1;
  // One load at a time: a live refresh and a click on "Older jobs" must not both
  // append the same page.
  let loads = Promise.resolve();
  const serial = (task) => (loads = loads.then(task).catch(() => {}));
  // The filter as last submitted (or given in the address): what the rows show.
  // Typing without submitting changes neither a live refresh nor "Older jobs".
  let applied = {};
  const readFilter = () => {
    applied = {};
    for (const name of ["status", "job_type", "site_id", "node_id"]) {
      const value = filter.elements[name].value.trim();
      if (value) applied[name] = value;
    }
  };

  function row(j) {
    const tr = el("tr", { "data-job-id": j.id, "data-status": j.status });
    const link = el("a", { href: "/jobs/" + j.id }, short(j.id));
    const first = el("td");
    first.appendChild(link);
    tr.appendChild(first);
    tr.appendChild(el("td", {}, j.job_type));
    tr.appendChild(el("td", { class: "status-" + j.status }, j.status));
    tr.appendChild(el("td", {}, j.attempt_count + "/" + j.max_attempts));
    tr.appendChild(el("td", {}, short(j.site_id)));
    tr.appendChild(el("td", {}, short(j.node_id)));
    tr.appendChild(el("td", {}, fmtTime(j.created_at)));
    tr.appendChild(el("td", {}, fmtTime(j.finished_at)));
    tr.appendChild(el("td", { class: "status-failed" }, j.error_code || ""));
    return tr;
  }

  async function load(reset) {
    const params = new URLSearchParams(Object.assign({ limit: "50" }, applied));
    if (!reset && before) params.set("before", String(before));
    const res = await api("GET", "/api/jobs?" + params.toString());
    if (!res.ok) {
      // A refused filter shows no rows: the ones above would be the old filter's.
      if (reset) {
        body.replaceChildren();
        more.hidden = true;
      }
      empty.hidden = false;
      empty.className = "empty result-error";
      empty.textContent = describeError(res.data);
      return;
    }
    if (reset) body.replaceChildren();
    for (const j of res.data.items) body.appendChild(row(j));
    before = res.data.next_before;
    more.hidden = !res.data.has_more;
    empty.hidden = body.children.length > 0;
    empty.className = "empty";
    empty.textContent = "No jobs match.";
  }

  // Live: any job event refreshes the rows already shown (debounced).
  async function refresh() {
    const shown = pages;
    before = null;
    await load(true);
    for (let i = 1; i < shown && before; i++) await load(false);
  }
  // At most one refresh waits in line: events that come while one waits are
  // covered by it.
  let refreshWaiting = false;
  const requestRefresh = () => {
    if (refreshWaiting) return;
    refreshWaiting = true;
    serial(() => { refreshWaiting = false; return refresh(); });
  };
  const follow = () => followStreams(state, ["job:"], requestRefresh);

  // Filters may come in the address (e.g. /jobs?node_id=… from a node's page). A
  // status the list does not offer is kept, so the API's refusal explains it.
  const given = new URLSearchParams(window.location.search);
  for (const name of ["status", "job_type", "site_id", "node_id"]) {
    const value = given.get(name);
    if (!value) continue;
    const field = filter.elements[name];
    if (field.tagName === "SELECT" && !Array.from(field.options).some((o) => o.value === value)) {
      field.appendChild(el("option", { value }, value));
    }
    field.value = value;
  }
  readFilter();
  filter.addEventListener("submit", (ev) => {
    ev.preventDefault();
    readFilter();
    serial(() => { pages = 1; before = null; return load(true); });
  });
  more.addEventListener("click", (ev) => {
    // A double click loads one page: while the page loads the button is disabled
    // (its second click is not delivered); once it has landed, a second click is
    // still part of the same double click (detail 2) and is ignored.
    if (more.disabled || ev.detail > 1) return;
    more.disabled = true;
    serial(() => { pages += 1; return load(false); }).then(() => { more.disabled = false; });
  });
  // On a busy machine the first click's page can land before the second click of
  // the same double click: the rows it adds push the button down and put a job's
  // link under the pointer, and the second click opened that job — the list was
  // gone. A click that is part of a double click never follows a row's link (the
  // first click of a double click on a link has already followed it).
  body.addEventListener("click", (ev) => {
    if (ev.detail > 1 && ev.target.closest("a")) ev.preventDefault();
  });
  serial(() => load(true)).then(follow);

  const form = document.getElementById("diagnostic-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const result = document.getElementById("diagnostic-result");
      const request = { job_type: form.elements["job_type"].value };
      if (request.job_type === "sleep") {
        request.seconds = Number(form.elements["seconds"].value || 0);
        request.lines = Number(form.elements["lines"].value || 0);
        request.outcome = form.elements["outcome"].value;
      }
      // One key per form: a double click or a retried request makes one job.
      form.dataset.key = form.dataset.key || newKey("dashboard");
      const res = await api("POST", "/api/diagnostics/jobs", request,
        { "Idempotency-Key": form.dataset.key });
      if (res.ok) {
        window.location.assign("/jobs/" + res.data.job_id);
      } else {
        delete form.dataset.key;  // refused: nothing was recorded under it
        result.className = "result-error";
        result.textContent = describeError(res.data);
      }
    });
  }
}

// What a cancel's answer means to the reader, by the status it names.
const CANCEL_ANSWERS = {
  cancelled: "Cancelled.",
  cancel_requested: "Cancellation requested; the job is still stopping.",
  succeeded: "The job finished its work before it could stop: it succeeded.",
  failed: "The job ended before it could stop: it failed.",
};

function renderTimeline(job) {
  const list = document.getElementById("job-timeline");
  list.replaceChildren();
  const queued = el("li", {}, "queued ");
  queued.appendChild(el("small", {}, fmtTime(job.created_at)));
  list.appendChild(queued);
  for (const a of job.attempts) {
    const item = el("li", { "data-attempt": String(a.attempt) }, "attempt " + a.attempt + " on " + a.worker + " ");
    item.appendChild(el("small", {}, fmtTime(a.started_at)));
    item.appendChild(document.createTextNode(" → "));
    item.appendChild(el("b", {}, a.outcome || "running"));
    if (a.error_code) {
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("code", {}, a.error_code));
    }
    list.appendChild(item);
  }
  if (job.status === "queued" && job.run_after) {
    const next = el("li", {}, "waiting to retry until ");
    next.appendChild(el("small", {}, fmtTime(job.run_after)));
    list.appendChild(next);
  }
}

function renderJob(job) {
  const holder = document.getElementById("job");
  holder.dataset.status = job.status;
  const status = document.getElementById("job-status");
  status.textContent = job.status;
  status.className = "status status-" + job.status;
  document.getElementById("job-attempts").textContent = String(job.attempt_count);
  document.getElementById("job-lease").textContent = job.lease
    ? "held by " + job.lease.locked_by + ", lease until " + fmtTime(job.lease.expires_at)
    : "";
  const code = document.getElementById("job-error-code");
  code.textContent = job.error_code || "—";
  code.className = job.error_code ? "status-fail" : "muted";
  document.getElementById("job-error-message").textContent = job.error_message || "";
  document.getElementById("job-error-details").hidden = !job.error_message;
  document.getElementById("job-finished").textContent = job.finished_at || "—";
  document.getElementById("log-lost-count").textContent = String(job.output_lines_lost);
  document.getElementById("log-lost").hidden = !job.output_lines_lost;
  const cancel = document.getElementById("job-cancel");
  const retry = document.getElementById("job-retry");
  if (cancel) {
    const focused = document.activeElement === cancel;
    cancel.hidden = !["queued", "running"].includes(job.status);
    // The button hides once the job has ended: keep the keyboard on the answer.
    if (focused && cancel.hidden) document.getElementById("job-action-result").focus();
  }
  // A job is retried once: after that, its retry is the one to retry.
  if (retry) retry.hidden = !["failed", "cancelled"].includes(job.status) || !!job.retried_by;
  const retried = document.getElementById("job-retried-by");
  if (job.retried_by && retried && !retried.firstChild) {
    const link = document.createElement("a");
    link.href = "/jobs/" + job.retried_by;
    link.textContent = short(job.retried_by);
    retried.append(" · retried as ", link);
  }
  renderTimeline(job);
}

function setupJob() {
  const holder = document.getElementById("job");
  if (!holder) return;
  const jobId = holder.dataset.jobId;
  const log = document.getElementById("job-log");
  const state = document.getElementById("log-state");
  const result = document.getElementById("job-action-result");
  let refreshing = null;

  async function refresh() {
    refreshing = null;
    const res = await api("GET", "/api/jobs/" + jobId);
    if (res.ok) renderJob(res.data);
  }
  // A running job's lease is renewed every ~10 s without a log line: re-read the
  // job that often while it runs, so the lease shown is the current one.
  refresh();
  const renewals = setInterval(() => {
    if (holder.dataset.ended) clearInterval(renewals);
    else if (holder.dataset.status === "running") refresh();
  }, 10000);

  // The whole log from the start (it is stored, so a reload shows everything),
  // then live; EventSource resumes after the last line it saw on reconnects.
  const source = new EventSource("/api/jobs/" + jobId + "/log/stream");
  source.onopen = () => { state.textContent = "live"; state.className = "pill live"; };
  source.onerror = () => {
    if (holder.dataset.ended) return;
    state.textContent = "reconnecting"; state.className = "pill down";
  };
  // Lines come in bursts (a reload replays the whole stored log): they are added
  // once per frame, and the view follows the end only while the reader is there —
  // scrolling up to read is not undone by the next line.
  let unshown = [];
  let frame = 0;
  function showLines() {
    frame = 0;
    if (!unshown.length) return;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    const lines = document.createDocumentFragment();
    for (const line of unshown) {
      lines.appendChild(el("span", { class: "line " + line.stream, "data-seq": String(line.seq) }, line.text + "\n"));
    }
    unshown = [];
    log.appendChild(lines);
    if (atEnd) log.scrollTop = log.scrollHeight;
  }
  source.onmessage = (msg) => {
    const line = JSON.parse(msg.data);
    unshown.push(line);
    if (!frame) frame = requestAnimationFrame(showLines);
    if (line.stream === "system" && !refreshing) refreshing = setTimeout(refresh, 50);
  };
  source.addEventListener("end", (msg) => {
    showLines();
    holder.dataset.ended = "true";
    source.close();
    state.textContent = "ended"; state.className = "pill";
    renderJob(JSON.parse(msg.data));
  });

  const cancel = document.getElementById("job-cancel");
  if (cancel) {
    cancel.addEventListener("click", async () => {
      if (cancel.disabled) return;
      cancel.disabled = true;  // one confirmation and one request per click
      try {
        if (!window.confirm("Cancel this job? Its processes are stopped; nothing is rolled back.")) return;
        const res = await api("POST", "/api/jobs/" + jobId + "/cancel");
        result.className = res.ok ? "result-ok" : "result-error";
        result.textContent = res.ok ? CANCEL_ANSWERS[res.data.status] : describeError(res.data);
        await refresh();
        if (cancel.hidden) result.focus();  // the button is gone: the keyboard stays on its answer
      } finally {
        cancel.disabled = false;
      }
    });
  }
  const retry = document.getElementById("job-retry");
  if (retry) {
    retry.addEventListener("click", async () => {
      if (retry.disabled) return;
      retry.disabled = true;
      retry.dataset.key = retry.dataset.key || newKey("dashboard-retry");
      let leaving = false;
      try {
        const res = await api("POST", "/api/jobs/" + jobId + "/retry", undefined,
          { "Idempotency-Key": retry.dataset.key });
        if (res.ok) {
          leaving = true;
          window.location.assign("/jobs/" + res.data.job_id);
        } else {
          result.className = "result-error";
          result.textContent = describeError(res.data);
        }
      } finally {
        if (!leaving) retry.disabled = false;  // also when the request itself failed
      }
    });
  }
}

// Every event committed from now on, to `handle(event)`; `state` shows whether the
// stream is live.
async function watchEvents(state, handle) {
  const counters = await api("GET", "/api/metrics");
  const head = counters.ok ? counters.data.events_total : 0;
  const source = new EventSource("/api/events/stream?after=" + head);
  source.onopen = () => { state.textContent = "live"; state.className = "pill live"; };
  source.onerror = () => { state.textContent = "reconnecting"; state.className = "pill down"; };
  source.onmessage = (msg) => handle(JSON.parse(msg.data));
  return source;
}

// Live views: reload (debounced) whenever an event commits on a stream starting with
// one of `prefixes`.
async function followStreams(state, prefixes, reload) {
  let pending = null;
  return watchEvents(state, (e) => {
    if (pending || !prefixes.some((prefix) => e.stream.startsWith(prefix))) return;
    pending = setTimeout(() => { pending = null; reload(); }, 150);
  });
}

// `task` at most once at a time, and at most once more after it: calls that come
// while one runs and one waits are covered by the waiting one (a live refresh).
function coalesce(task) {
  let running = null;
  let waiting = false;
  const run = () => {
    running = Promise.resolve().then(task).catch(() => {}).then(() => {
      running = null;
      if (waiting) { waiting = false; run(); }
    });
  };
  return () => { if (running) waiting = true; else run(); };
}

// --- the action helper ------------------------------------------------------
// One way for every page to call an API action: confirmation for destructive ones
// (a question, or the word to type, sent as `?confirm=`), one Idempotency-Key per
// click (kept until an answer comes, so a retry after a lost answer is the same
// request), the button disabled while in flight (a double click sends one request),
// and the answer shown: the job's live log, or the error's message and hint.
//
// `spec`: { method, url, body, confirm, confirmTyped, done, opens, result, holder,
// linkClass, idempotent (false: no key) }
// — `holder` keeps the key (a button or a form), `opens` names a URL field of the
// answer to open in a new tab, `result` the element that shows the answer.
async function runAction(spec) {
  const holder = spec.holder;
  let url = spec.url;
  if (spec.confirmTyped !== undefined) {
    const typed = window.prompt(spec.confirm);
    if (typed === null) return null;
    url += (url.includes("?") ? "&" : "?") + "confirm=" + encodeURIComponent(typed.trim());
  } else if (spec.confirm && !window.confirm(spec.confirm)) {
    return null;
  }
  const tab = spec.opens ? window.open("about:blank", "_blank") : null;  // before any await
  // (Not for an answer that is a one-time secret, like a magic login: the API keeps
  // no replay of it and refuses the header.)
  const keyed = spec.idempotent !== false;
  if (keyed) holder.dataset.key = holder.dataset.key || newKey("dashboard");
  let res;
  try {
    const headers = keyed ? { "Idempotency-Key": holder.dataset.key } : {};
    res = await api(spec.method, url, spec.body, headers);
    delete holder.dataset.key;  // answered: the next click is a new request
  } catch (_) {
    res = { ok: false, status: 0, data: { message: "no answer from Pressluft (network)", details: { hint: "try again: the same click is not done twice" } } };
  }
  const out = spec.result;
  if (out) {
    out.className = res.ok ? "result-ok" : "result-error";
    out.textContent = res.ok ? (spec.done || "Done.") : describeError(res.data);
    if (res.ok && res.data && res.data.job_id) {
      out.appendChild(document.createTextNode(" "));
      out.appendChild(el("a", { href: "/jobs/" + res.data.job_id, class: spec.linkClass || "action-job-log" }, "live log"));
    }
  }
  if (tab) {
    if (res.ok && res.data && res.data[spec.opens]) tab.location = res.data[spec.opens];
    else tab.close();
  }
  return res;
}

// Buttons that declare their action (data-method, data-url; data-body: JSON; data-confirm,
// data-confirm-typed, data-done, data-opens, data-idempotent="no"), anywhere in the page and in parts
// replaced later: their answer goes to the element named by the nearest
// `data-result`, and an `action:done` event bubbles from the button with it.
function setupActions() {
  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-url][data-method]");
    if (!button) return;
    // The second click of a double click, or one while the first is in flight.
    if (button.disabled || ev.detail > 1) return;
    button.disabled = true;
    const scope = button.closest("[data-result]");
    const d = button.dataset;
    try {
      const res = await runAction({
        method: d.method,
        url: d.url,
        confirm: d.confirm,
        confirmTyped: d.confirmTyped,
        done: d.done,
        opens: d.opens,
        body: d.body ? JSON.parse(d.body) : undefined,
        idempotent: d.idempotent !== "no",
        holder: button,
        result: scope ? document.getElementById(scope.dataset.result) : null,
      });
      if (res) button.dispatchEvent(new CustomEvent("action:done", { bubbles: true, detail: res }));
    } finally {
      button.disabled = false;
    }
  });
}

// Forms that declare their action the same way (data-method, data-url, data-done): the
// body is their fields (a checkbox is a boolean, other fields strings), the answer goes
// where the nearest `data-result` says; the form is cleared when the request is taken.
function setupActionForms() {
  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form[data-url][data-method]");
    if (!form) return;
    ev.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    if (submit && submit.disabled) return;
    if (submit) submit.disabled = true;
    const body = {};
    for (const field of form.elements) {
      if (!field.name) continue;
      body[field.name] = field.type === "checkbox" ? field.checked : field.value.trim();
    }
    const scope = form.closest("[data-result]");
    try {
      const res = await runAction({
        method: form.dataset.method,
        url: form.dataset.url,
        body,
        done: form.dataset.done,
        holder: form,
        result: scope ? document.getElementById(scope.dataset.result) : null,
      });
      if (res && res.ok) form.reset();
      if (res) form.dispatchEvent(new CustomEvent("action:done", { bubbles: true, detail: res }));
    } finally {
      if (submit) submit.disabled = false;
    }
  });
}

// The banner every page shows while a certificate expires within 14 days or its last
// renewal failed (Let's Encrypt sends no expiry mails any more: the control plane watches).
async function setupCertificateBanner() {
  const banner = document.getElementById("certificate-banner");
  if (!banner) return;
  const res = await api("GET", "/api/certificates");
  if (!res.ok || !Array.isArray(res.data)) return;
  const failed = res.data.filter((c) => c.renewal_failed);
  const expiring = res.data.filter((c) => c.expiring && !c.renewal_failed);
  const parts = [];
  for (const c of failed) {
    parts.push("Renewing the certificate of " + c.names.join(", ") + " failed"
      + (c.last_error ? " (" + c.last_error.code + ": " + c.last_error.message + ")" : "")
      + "; it expires " + (c.not_after || "?") + ".");
  }
  for (const c of expiring) {
    parts.push("The certificate of " + c.names.join(", ") + " expires " + c.not_after + ".");
  }
  if (!parts.length) return;
  banner.textContent = parts.join(" ");
  banner.hidden = false;
}

const NODE_BUTTONS = [
  ["node-check", "check"], ["node-provision", "provision"], ["node-start", "start"],
  ["node-stop", "stop"], ["node-repin", "repin"], ["node-decommission", "decommission"],
];

function setupNodes() {
  const table = document.getElementById("nodes-table");
  if (!table) return;
  const body = table.querySelector("tbody");
  const empty = document.getElementById("nodes-empty");
  const more = document.getElementById("nodes-more");
  const state = document.getElementById("nodes-state");
  const detail = document.getElementById("node-detail");
  let before = null;
  let selected = null;
  let shown = [];

  function row(n) {
    const tr = el("tr", { "data-node-id": n.id, "data-status": n.status });
    const name = el("td");
    name.appendChild(el("button", { type: "button", class: "link node-open" }, n.name));
    tr.appendChild(name);
    tr.appendChild(el("td", {}, n.provider));
    const where = n.ssh_user + "@" + n.host + ":" + n.ssh_port;
    tr.appendChild(el("td", {}, n.container ? where + " (container " + n.container.state + ")" : where));
    tr.appendChild(el("td", { class: "status-" + n.status }, n.status));
    const ready = n.readiness.is_ready ? "ready" : n.readiness.reason_codes.join(", ");
    tr.appendChild(el("td", { class: n.readiness.is_ready ? "status-succeeded" : "status-failed" }, ready));
    tr.appendChild(el("td", {}, n.host_key_fingerprint || "not pinned"));
    tr.appendChild(el("td", {}, fmtTime(n.last_seen_at)));
    tr.querySelector(".node-open").addEventListener("click", () => show(n));
    return tr;
  }

  function show(n) {
    selected = n;
    detail.hidden = false;
    document.getElementById("node-detail-name").textContent = n.name + " (" + n.status + ")";
    document.getElementById("node-authorize").textContent = n.authorize_command || "—";
    // A lab node's key is authorized inside its container by Pressluft.
    document.getElementById("node-authorize-box").hidden = n.provider !== "ssh";
    const machine = document.getElementById("node-machine");
    machine.hidden = !n.resources;
    if (n.resources) {
      const r = n.resources;
      let text = "Lab node: " + r.memory_mb + " MB, " + r.cpus + " CPUs, " + r.pids + " processes";
      if (r.init) text += ", init " + r.init;
      if (n.container) {
        text += " · container " + n.container.id.slice(0, 12) + " " + n.container.state;
        if (n.container.exit_code !== null) text += " (exit " + n.container.exit_code + ")";
      }
      if (n.ports) text += " · 127.0.0.1 ports: ssh " + n.ports.ssh + ", http " + n.ports.http + ", https " + n.ports.https;
      machine.textContent = text;
    }
    // The buttons are the node's actions (the server's rules): an ssh node has no
    // start/stop, a lab node the one its container's state allows.
    for (const [id, action] of NODE_BUTTONS) {
      const button = document.getElementById(id);
      if (button) button.hidden = !n.actions.includes(action);
    }
    const guidance = document.getElementById("node-guidance");
    guidance.replaceChildren();
    for (const g of n.readiness.guidance) guidance.appendChild(el("li", {}, g));
    document.getElementById("node-jobs").href = "/jobs?node_id=" + n.id;
    document.getElementById("node-facts").hidden = true;
  }

  document.getElementById("node-facts-load").addEventListener("click", async () => {
    const box = document.getElementById("node-facts");
    box.replaceChildren();
    box.hidden = false;
    const res = await api("GET", "/api/nodes/" + selected.id + "/facts");
    if (!res.ok) { box.appendChild(el("dd", { class: "result-error" }, describeError(res.data))); return; }
    const f = res.data;
    const rows = [
      ["OS", f.os + " (" + f.kernel + ", " + f.arch + ")"],
      ["CPUs", String(f.cpus)],
      ["Memory", f.memory_available_mb + " of " + f.memory_mb + " MB free"],
      ["Disk", f.disk_available_gb + " of " + f.disk_gb + " GB free"],
      ["Up", Math.round(f.uptime_seconds / 3600) + " h"],
    ];
    for (const [name, state] of Object.entries(f.services)) rows.push([name, state]);
    for (const [k, v] of rows) { box.appendChild(el("dt", {}, k)); box.appendChild(el("dd", { "data-fact": k }, v)); }
  });

  async function load(reset) {
    const params = new URLSearchParams({ limit: "50" });
    if (!reset && before) params.set("before", String(before));
    const res = await api("GET", "/api/nodes?" + params.toString());
    if (!res.ok) { empty.hidden = false; empty.textContent = describeError(res.data); return; }
    if (reset) { body.replaceChildren(); shown = []; }
    for (const n of res.data.items) { body.appendChild(row(n)); shown.push(n); }
    before = res.data.next_before;
    more.hidden = !res.data.has_more;
    empty.hidden = body.children.length > 0;
    if (selected) {
      const fresh = shown.find((n) => n.id === selected.id);
      if (fresh) show(fresh);
    }
  }

  // A node's status also follows its provisioning job's end (job:… events).
  const follow = () => followStreams(state, ["node:", "job:"], () => { before = null; load(true); });
  more.addEventListener("click", () => load(false));
  load(true).then(follow);

  // One key per node action until the job it queued has ended: a double click, or
  // a click while that job is still queued or running, answers with that same job
  // instead of queuing another.
  const actionKeys = new Map();  // method + path -> { key, jobId (null: in flight) }
  const choosing = new Map();  // method + path -> the key being chosen (a promise)
  function keyFor(action) {
    // A second click while the first still asks whether its job has ended gets the
    // same answer, not a key of its own.
    if (!choosing.has(action)) {
      const chosen = chooseKey(action);
      choosing.set(action, chosen);
      const done = () => choosing.delete(action);
      chosen.then(done, done);  // (a failure is the caller's to report, once)
    }
    return choosing.get(action);
  }
  async function chooseKey(action) {
    const known = actionKeys.get(action);
    if (known && !known.jobId) return known.key;
    if (known) {
      const job = await api("GET", "/api/jobs/" + known.jobId);
      if (job.ok && !["succeeded", "failed", "cancelled"].includes(job.data.status)) return known.key;
    }
    const fresh = { key: newKey("dashboard"), jobId: null };
    actionKeys.set(action, fresh);
    return fresh.key;
  }

  async function act(method, path, label) {
    const result = document.getElementById("node-action-result");
    const action = method + " " + path;
    const key = await keyFor(action);
    const res = await api(method, path, undefined, { "Idempotency-Key": key });
    const known = actionKeys.get(action);
    if (known && known.key === key) {
      if (res.ok) known.jobId = res.data.job_id;
      else actionKeys.delete(action);  // refused: nothing was queued under this key
    }
    const again = res.ok && res.headers.get("Idempotent-Replayed") === "true";
    result.className = res.ok ? "result-ok" : "result-error";
    result.textContent = res.ok ? (again ? "Already queued: the same job. " : label + " ") : describeError(res.data);
    // Every node action is a job: follow its live log.
    if (res.ok) result.appendChild(el("a", { href: "/jobs/" + res.data.job_id, class: "node-job-log" }, "live log"));
  }
  const check = document.getElementById("node-check");
  if (check) {
    check.addEventListener("click", () => act("POST", "/api/nodes/" + selected.id + "/check", "Check queued."));
    document.getElementById("node-provision").addEventListener("click", () =>
      act("POST", "/api/nodes/" + selected.id + "/provision", "Provisioning queued."));
    document.getElementById("node-start").addEventListener("click", () =>
      act("POST", "/api/nodes/" + selected.id + "/start", "Start queued."));
    document.getElementById("node-stop").addEventListener("click", () => {
      if (!window.confirm("Stop " + selected.name + "? Its sites are offline until it is started.")) return;
      act("POST", "/api/nodes/" + selected.id + "/stop", "Stop queued.");
    });
    document.getElementById("node-repin").addEventListener("click", () => {
      if (!window.confirm("Trust the next host key " + selected.name + " presents?")) return;
      act("POST", "/api/nodes/" + selected.id + "/host-key/repin", "Re-pin queued.");
    });
    document.getElementById("node-decommission").addEventListener("click", () => {
      const typed = window.prompt("Type the node's name to decommission it: " + selected.name);
      if (typed === null) return;
      act("DELETE", "/api/nodes/" + selected.id + "?confirm=" + encodeURIComponent(typed), "Decommissioning queued.");
    });
  }

  function addForm(id, resultId, request, done) {
    const form = document.getElementById(id);
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const result = document.getElementById(resultId);
      form.dataset.key = form.dataset.key || newKey("dashboard");
      const res = await api("POST", "/api/nodes", request(form), { "Idempotency-Key": form.dataset.key });
      delete form.dataset.key;
      if (res.ok) {
        result.className = "result-ok";
        result.textContent = done + " ";
        result.appendChild(el("a", { href: "/jobs/" + res.data.job_id, class: "node-job-log" }, "live log"));
        form.reset();
        await load(true);
        const added = shown.find((n) => n.id === res.data.node_id);
        if (added) show(added);
      } else {
        result.className = "result-error";
        result.textContent = describeError(res.data);
      }
    });
  }
  addForm("node-form", "node-form-result", (form) => ({
    provider: "ssh",
    name: form.elements["name"].value.trim(),
    host: form.elements["host"].value.trim(),
    ssh_port: Number(form.elements["ssh_port"].value || 22),
    ssh_user: form.elements["ssh_user"].value.trim(),
  }), "Added. Authorize its key on the server (below), then check.");
  addForm("lab-form", "lab-form-result", (form) => ({
    provider: "docker",
    name: form.elements["name"].value.trim(),
    memory_mb: Number(form.elements["memory_mb"].value || 1024),
    cpus: Number(form.elements["cpus"].value || 1),
    pids: Number(form.elements["pids"].value || 1024),
    init: form.elements["init"] ? form.elements["init"].value : "plain",
  }), "Added. Its container is being created and checked.");
}

document.addEventListener("DOMContentLoaded", () => {
  setupActions();
  setupActionForms();
  setupCertificateBanner();
  setupLogin();
  setupLogout();
  setupSettings();
  setupEventFeed();
  setupTokens();
  setupAudit();
  setupJobs();
  setupJob();
  setupNodes();
});
