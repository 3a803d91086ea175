// Pressluft dashboard, sites page: sites and their environments (live), create a site,
// clone an environment, open wp-admin (magic login), delete and reset, the site's jobs.
// Uses app.js's helpers (el, api, describeError, fmtTime, short, newKey, followStreams).
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
  const result = document.getElementById("site-action-result");
  let before = null;
  let selected = null;
  let shown = [];

  function report(ok, text, jobId) {
    result.className = ok ? "result-ok" : "result-error";
    result.textContent = text;
    if (jobId) {
      result.appendChild(document.createTextNode(" "));
      result.appendChild(el("a", { href: "/jobs/" + jobId, class: "site-job-log" }, "live log"));
    }
  }

  function preview(url, status) {
    if (status !== "active") return el("span", { class: "muted" }, url);
    return el("a", { href: url, target: "_blank", rel: "noopener", class: "preview-link" }, url);
  }

  function button(label, cls, onClick) {
    const b = el("button", { type: "button", class: cls }, label);
    b.addEventListener("click", onClick);
    return b;
  }

  function row(s) {
    const tr = el("tr", { "data-site-id": s.id, "data-status": s.status });
    const name = el("td");
    name.appendChild(el("button", { type: "button", class: "link site-open" }, s.name));
    tr.appendChild(name);
    tr.appendChild(el("td", {}, s.slug));
    tr.appendChild(el("td", { class: "status-" + s.status }, s.status));
    const link = el("td");
    if (s.preview_url) link.appendChild(preview(s.preview_url, s.status));
    tr.appendChild(link);
    const live = s.environments.filter((e) => e.status !== "deleted");
    tr.appendChild(el("td", {}, String(live.length)));
    tr.appendChild(el("td", {}, fmtTime(s.created_at)));
    tr.querySelector(".site-open").addEventListener("click", () => show(s));
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
    if (canAdmin && e.status === "active") {
      const login = button("Open WordPress admin", "secondary magic-login", () => magicLogin(e));
      login.title = "One-time login as " + e.admin_user;
      actions.appendChild(login);
    }
    if (canAdmin && e.status === "failed") {
      actions.appendChild(button("Reset", "secondary env-reset", () => reset("environments", e.id, e.name)));
    }
    if (canAdmin && e.environment_type !== "production" && (e.status === "active" || e.status === "failed")) {
      actions.appendChild(button("Delete", "danger env-delete", () => remove("environments", e.id, e.slug, e.name)));
    }
    tr.appendChild(actions);
    return tr;
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
      if (s.status === "failed") {
        siteActions.appendChild(button("Reset site", "secondary site-reset", () => reset("sites", s.id, s.name)));
      }
      if (s.status === "active" || s.status === "failed") {
        siteActions.appendChild(button("Delete site", "danger site-delete", () => remove("sites", s.id, s.slug, s.name)));
      }
    }
    const clone = document.getElementById("environment-form");
    if (clone) {
      const source = clone.elements["source_environment_id"];
      const keep = source.value;
      source.replaceChildren();
      for (const e of s.environments.filter((x) => x.status === "active")) {
        source.appendChild(el("option", { value: e.id }, e.name + " (" + e.environment_type + ")"));
      }
      if (keep) source.value = keep;
      clone.querySelector("button[type=submit]").disabled = s.status !== "active" || !source.options.length;
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

  // A one-time login (60 s), opened right away in a new tab.
  async function magicLogin(env) {
    const tab = window.open("about:blank", "_blank");
    const res = await api("POST", "/api/environments/" + env.id + "/magic-login");
    if (res.ok) {
      report(true, "Logged in to " + env.name + " (the link worked once).");
      if (tab) tab.location = res.data.login_url;
    } else {
      if (tab) tab.close();
      report(false, describeError(res.data));
    }
  }

  // Destructive: the operator types the slug, which the API checks as `confirm`.
  async function remove(kind, id, slug, name) {
    const what = kind === "sites" ? "the site " + name + " and its production environment" : "the environment " + name;
    const typed = window.prompt("Delete " + what + "? Files, database and user go for good. Type " + slug + " to confirm.");
    if (typed === null) return;
    const res = await api("DELETE", "/api/" + kind + "/" + id + "?confirm=" + encodeURIComponent(typed.trim()),
      undefined, { "Idempotency-Key": newKey("dashboard-delete") });
    if (res.ok) report(true, "Deleting " + name + ".", res.data.job_id);
    else report(false, describeError(res.data));
    await load(true);
  }

  async function reset(kind, id, name) {
    const res = await api("POST", "/api/" + kind + "/" + id + "/reset");
    if (res.ok) report(true, name + " is " + res.data.status + " again.");
    else report(false, describeError(res.data));
    await load(true);
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

  const prefixes = ["site:", "environment:", "job:"];
  const follow = () => followStreams(state, prefixes, () => { before = null; load(true); });
  more.addEventListener("click", () => load(false));
  load(true).then(follow);

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
      cloneForm.dataset.key = cloneForm.dataset.key || newKey("dashboard");
      const res = await api("POST", "/api/sites/" + selected.id + "/environments", request,
        { "Idempotency-Key": cloneForm.dataset.key });
      delete cloneForm.dataset.key;
      if (res.ok) {
        out.className = "result-ok";
        out.textContent = "Cloning. ";
        out.appendChild(el("a", { href: "/jobs/" + res.data.job_id, class: "environment-job-log" }, "live log"));
        cloneForm.reset();
        await load(true);
      } else {
        out.className = "result-error";
        out.textContent = describeError(res.data);
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
