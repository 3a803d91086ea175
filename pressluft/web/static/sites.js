// Pressluft dashboard, sites page: sites and their environments (live), create a site,
// clone an environment, open wp-admin (magic login), delete and reset, the site's jobs.
// Buttons are the views' `actions` (the server decides), run by app.js's action helper;
// an event refreshes the one site it concerns. Each site's own page: /sites/{id}.
// Uses app.js's helpers (el, api, describeError, fmtTime, short, newKey, watchEvents,
// coalesce, runAction).
"use strict";

function setupSites() {
  const table = document.getElementById("sites-table");
  if (!table) return;
  const canAdmin = !!document.getElementById("site-form");
  const body = table.querySelector("tbody");
  const empty = document.getElementById("sites-empty");
  const more = document.getElementById("sites-more");
  const state = document.getElementById("sites-state");
  const detail = document.getElementById("site-detail");
  let before = null;
  let selected = null;
  let shown = [];

  function preview(url, status) {
    if (status !== "active") return el("span", { class: "muted" }, url);
    return el("a", { href: url, target: "_blank", rel: "noopener", class: "preview-link" }, url);
  }

  // A button the action helper runs (app.js setupActions): what it calls, how it
  // confirms, what it says when done.
  function actionButton(label, cls, attrs) {
    return el("button", Object.assign({ type: "button", class: cls }, attrs), label);
  }

  function row(s) {
    const tr = el("tr", { "data-site-id": s.id, "data-status": s.status });
    const name = el("td");
    name.appendChild(el("a", { href: "/sites/" + s.id, class: "site-page" }, s.name));
    name.appendChild(document.createTextNode(" "));
    name.appendChild(el("button", { type: "button", class: "link site-open" }, "details"));
    tr.appendChild(name);
    tr.appendChild(el("td", {}, s.slug));
    tr.appendChild(el("td", { class: "status-" + s.status }, s.status));
    const link = el("td");
    if (s.preview_url) link.appendChild(preview(s.preview_url, s.status));
    tr.appendChild(link);
    const live = s.environments.filter((e) => e.status !== "deleted");
    tr.appendChild(el("td", {}, String(live.length)));
    tr.appendChild(el("td", {}, fmtTime(s.created_at)));
    tr.querySelector(".site-open").addEventListener("click", () => show(shown.find((x) => x.id === s.id) || s));
    return tr;
  }

  function environmentRow(s, e) {
    const tr = el("tr", { "data-environment-id": e.id, "data-status": e.status, "data-slug": e.slug });
    tr.appendChild(el("td", {}, e.name));
    tr.appendChild(el("td", {}, e.environment_type));
    tr.appendChild(el("td", { class: "status-" + e.status }, e.status));
    const link = el("td");
    link.appendChild(preview(e.preview_url, e.status));
    tr.appendChild(link);
    tr.appendChild(el("td", {}, e.wordpress_version || "—"));
    tr.appendChild(el("td", {}, e.health_status));
    // The account "Open WordPress admin" signs in as.
    tr.appendChild(el("td", { class: "admin-user" }, e.admin_user));
    const actions = el("td", { class: "actions" });
    const may = canAdmin ? e.actions : [];
    if (may.includes("magic_login")) {
      actions.appendChild(actionButton("Open WordPress admin", "secondary magic-login", {
        title: "One-time login as " + e.admin_user, "data-method": "POST",
        "data-url": "/api/environments/" + e.id + "/magic-login", "data-opens": "login_url",
        "data-idempotent": "no",
        "data-done": "Logged in to " + e.name + " (the link worked once).",
      }));
    }
    if (may.includes("reset")) actions.appendChild(resetButton("environments", e, "env-reset", "Reset"));
    if (may.includes("delete")) actions.appendChild(deleteButton("environments", e, "env-delete", "Delete"));
    tr.appendChild(actions);
    return tr;
  }

  function resetButton(kind, x, cls, label) {
    return actionButton(label, "secondary " + cls, {
      "data-method": "POST", "data-url": "/api/" + kind + "/" + x.id + "/reset",
      "data-done": x.name + " is active again.",
    });
  }

  // Destructive: the operator types the slug, which the API checks as `confirm`.
  function deleteButton(kind, x, cls, label) {
    const what = kind === "sites" ? "the site " + x.name + " and its production environment" : "the environment " + x.name;
    return actionButton(label, "danger " + cls, {
      "data-method": "DELETE", "data-url": "/api/" + kind + "/" + x.id, "data-confirm-typed": x.slug,
      "data-confirm": "Delete " + what + "? Files, database and user go for good. Type " + x.slug + " to confirm.",
      "data-done": "Deleting " + x.name + ".",
    });
  }

  function show(s) {
    selected = s;
    detail.hidden = false;
    detail.dataset.siteId = s.id;
    document.getElementById("site-detail-name").textContent = s.name + " (" + s.status + ")";
    const envs = document.querySelector("#environments-table tbody");
    envs.replaceChildren();
    for (const e of s.environments) {
      if (e.status !== "deleted") envs.appendChild(environmentRow(s, e));
    }
    document.getElementById("site-jobs").href = "/jobs?site_id=" + s.id;
    const siteActions = document.getElementById("site-actions");
    if (siteActions) {
      siteActions.replaceChildren();
      if (s.actions.includes("reset")) siteActions.appendChild(resetButton("sites", s, "site-reset", "Reset site"));
      if (s.actions.includes("delete")) siteActions.appendChild(deleteButton("sites", s, "site-delete", "Delete site"));
    }
    const clone = document.getElementById("environment-form");
    if (clone) {
      const source = clone.elements["source_environment_id"];
      const keep = source.value;
      source.replaceChildren();
      for (const e of s.environments.filter((x) => x.actions.includes("clone"))) {
        source.appendChild(el("option", { value: e.id }, e.name + " (" + e.environment_type + ")"));
      }
      if (keep) source.value = keep;
      clone.querySelector("button[type=submit]").disabled = !s.actions.includes("create_environment") || !source.options.length;
    }
    loadJobs(s);
  }

  // The site's jobs, newest first, each linking to its live log.
  async function loadJobs(s) {
    const list = document.querySelector("#site-jobs-table tbody");
    const res = await api("GET", "/api/jobs?limit=20&site_id=" + encodeURIComponent(s.id));
    if (!res.ok || !selected || selected.id !== s.id) return;
    list.replaceChildren();
    for (const j of res.data.items) {
      const tr = el("tr", { "data-job-id": j.id, "data-status": j.status, "data-job-type": j.job_type });
      const link = el("td");
      link.appendChild(el("a", { href: "/jobs/" + j.id }, j.job_type));
      tr.appendChild(link);
      tr.appendChild(el("td", {}, short(j.environment_id)));
      tr.appendChild(el("td", { class: "status-" + j.status }, j.status));
      tr.appendChild(el("td", {}, j.error_code || ""));
      tr.appendChild(el("td", {}, fmtTime(j.created_at)));
      tr.appendChild(el("td", {}, fmtTime(j.finished_at)));
      list.appendChild(tr);
    }
    document.getElementById("site-jobs-empty").hidden = res.data.items.length > 0;
  }

  async function load(reset) {
    const params = new URLSearchParams({ limit: "50" });
    if (!reset && before) params.set("before", String(before));
    const res = await api("GET", "/api/sites?" + params.toString());
    if (!res.ok) { empty.hidden = false; empty.textContent = describeError(res.data); return; }
    if (reset) { body.replaceChildren(); shown = []; }
    for (const s of res.data.items) { body.appendChild(row(s)); shown.push(s); }
    before = res.data.next_before;
    more.hidden = !res.data.has_more;
    empty.hidden = body.children.length > 0;
    if (selected) {
      const fresh = shown.find((s) => s.id === selected.id);
      if (fresh) show(fresh);
    }
  }

  // One site again (after an event or an action), in place: the rest of the list stays.
  async function refreshSite(id) {
    const res = await api("GET", "/api/sites/" + id);
    if (!res.ok) return;
    const s = res.data;
    const at = shown.findIndex((x) => x.id === id);
    const old = body.querySelector("tr[data-site-id='" + id + "']");
    if (at >= 0) shown[at] = s; else shown.unshift(s);
    const fresh = row(s);
    if (old) old.replaceWith(fresh); else body.insertBefore(fresh, body.firstChild);
    empty.hidden = true;
    if (selected && selected.id === id) show(s);
  }
  const refreshers = new Map();
  function refreshLater(id) {
    if (!refreshers.has(id)) refreshers.set(id, coalesce(() => refreshSite(id)));
    refreshers.get(id)();
  }
  const refreshJobs = coalesce(() => selected && loadJobs(selected));

  // An event refreshes what it concerns: its site's row (and panel), or the open
  // panel's jobs — never the whole list.
  function siteOf(e) {
    const [kind, id] = e.stream.split(":");
    if (kind === "site") return id;
    if (e.data && e.data.site_id) return e.data.site_id;
    if (kind === "environment") {
      const owner = shown.find((s) => s.environments.some((x) => x.id === id));
      return owner ? owner.id : null;
    }
    return null;
  }
  function onEvent(e) {
    const id = siteOf(e);
    const kind = e.stream.split(":")[0];
    if (kind === "job") {
      const listed = document.querySelector("#site-jobs-table tr[data-job-id='" + e.stream.slice(4) + "']");
      if (selected && (id === selected.id || listed)) refreshJobs();
      return;
    }
    // A site not shown (on a page not loaded yet) stays there, unless it is new.
    if (id && (shown.some((s) => s.id === id) || e.type === "site.created")) refreshLater(id);
  }
  more.addEventListener("click", () => load(false));
  load(true).then(() => watchEvents(state, onEvent));
  // An action's answer: its site again at once (its events follow).
  detail.addEventListener("action:done", () => { if (selected) refreshLater(selected.id); });

  const cloneForm = document.getElementById("environment-form");
  if (cloneForm) {
    cloneForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!selected) return;
      const out = document.getElementById("environment-form-result");
      const request = {
        name: cloneForm.elements["name"].value.trim(),
        slug: cloneForm.elements["slug"].value.trim(),
        type: cloneForm.elements["type"].value,
        source_environment_id: cloneForm.elements["source_environment_id"].value,
        promotion_preset: cloneForm.elements["promotion_preset"].value,
      };
      const submit = cloneForm.querySelector("button[type=submit]");
      if (submit.disabled) return;
      submit.disabled = true;
      try {
        const res = await runAction({
          method: "POST", url: "/api/sites/" + selected.id + "/environments", body: request,
          done: "Cloning.", holder: cloneForm, result: out, linkClass: "environment-job-log",
        });
        if (res && res.ok) {
          cloneForm.reset();
          await refreshSite(selected.id);
        }
      } finally {
        if (selected) show(selected);
      }
    });
  }

  const form = document.getElementById("site-form");
  if (!form) return;
  const nodeSelect = document.getElementById("site-node");
  (async () => {
    const res = await api("GET", "/api/nodes?status=active&limit=500");
    if (!res.ok) return;
    for (const n of res.data.items) nodeSelect.appendChild(el("option", { value: n.id }, n.name + " (" + n.host + ")"));
    if (!res.data.items.length) nodeSelect.appendChild(el("option", { value: "" }, "no provisioned node yet"));
  })();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = document.getElementById("site-form-result");
    const request = {
      name: form.elements["name"].value.trim(),
      slug: form.elements["slug"].value.trim(),
      node_id: form.elements["node_id"].value,
    };
    const title = form.elements["title"].value.trim();
    if (title) request.title = title;
    const adminUser = form.elements["admin_user"].value.trim();
    if (adminUser) request.admin_user = adminUser;
    form.dataset.key = form.dataset.key || newKey("dashboard");
    const res = await api("POST", "/api/sites", request, { "Idempotency-Key": form.dataset.key });
    delete form.dataset.key;
    if (res.ok) {
      out.className = "result-ok";
      out.textContent = "Creating. ";
      out.appendChild(el("a", { href: "/jobs/" + res.data.job_id, class: "site-job-log" }, "live log"));
      form.reset();
      await load(true);
      const added = shown.find((s) => s.id === res.data.site_id);
      if (added) show(added);
    } else {
      out.className = "result-error";
      out.textContent = describeError(res.data);
    }
  });
}

document.addEventListener("DOMContentLoaded", setupSites);
