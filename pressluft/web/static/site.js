// Pressluft dashboard, a site's page (/sites/{id}): server-rendered sections, each
// refreshed alone (its fragment, /sites/{id}/sections/{name}) when an event touches
// what it shows; buttons are the server's `actions`, run by app.js's action helper.
"use strict";

function setupSitePage() {
  const root = document.getElementById("site");
  if (!root) return;
  const siteId = root.dataset.siteId;
  const state = document.getElementById("site-state");
  const sections = Array.from(root.querySelectorAll("section[data-src]"));

  // One refresher per section: one request at a time, events meanwhile covered by
  // one more. A section whose site is gone answers 404 with a note: shown as is.
  const refreshers = new Map();
  for (const section of sections) {
    refreshers.set(section, coalesce(async () => {
      const res = await fetch(section.dataset.src, { headers: { Accept: "text/html" } });
      if (res.redirected) {  // the session ended: the login page, not inside a section
        location.assign("/login?next=" + encodeURIComponent(location.pathname));
        return;
      }
      if (!res.ok && res.status !== 404) return;
      section.innerHTML = await res.text();
      section.dispatchEvent(new CustomEvent("section:refreshed", { bubbles: true }));
    }));
  }

  // What the page shows: the site and the rows of its sections (environments, jobs,
  // domains, certificates: their ids are in the rendered rows). An event concerns a section when its stream is one of these,
  // or it names this site (a new environment, a new job of the site).
  function concerns(e) {
    const [kind, id] = e.stream.split(":");
    if (kind === "site") return id === siteId ? kind : null;
    if (e.data && e.data.site_id === siteId) return kind;
    // A row of any kind names its id (data-environment-id, data-job-id, data-domain-id, …).
    const shown = /^[a-z]+$/.test(kind) && /^[0-9a-f-]+$/.test(id || "")
      ? "[data-" + kind + "-id='" + id + "']" : null;
    return shown && root.querySelector(shown) ? kind : null;
  }
  function refreshFor(kind) {
    for (const section of sections) {
      if (section.dataset.follows.split(" ").includes(kind)) refreshers.get(section)();
    }
  }
  const follow = () => watchEvents(state, (e) => {
    const kind = concerns(e);
    if (kind) refreshFor(kind);
  });
  follow();

  // After an action, the sections it changed are refreshed by their events; its
  // job appears in the jobs section the same way.
  const form = document.getElementById("environment-form");
  if (!form) return;
  const source = form.elements["source_environment_id"];
  const submit = form.querySelector("button[type=submit]");
  function sources() {
    const keep = source.value;
    source.replaceChildren();
    for (const row of root.querySelectorAll("tr[data-environment-id][data-actions]")) {
      if (!row.dataset.actions.split(" ").includes("clone")) continue;
      source.appendChild(el("option", { value: row.dataset.environmentId }, row.dataset.name));
    }
    if (keep && Array.from(source.options).some((o) => o.value === keep)) source.value = keep;
    submit.disabled = !source.options.length;
  }
  sources();
  root.addEventListener("section:refreshed", sources);
  // An environment's "Clone": the form, with it as the source.
  root.addEventListener("click", (ev) => {
    const pick = ev.target.closest("button[data-pick-source]");
    if (!pick) return;
    source.value = pick.dataset.pickSource;
    form.elements["name"].focus();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (submit.disabled) return;
    submit.disabled = true;
    try {
      const res = await runAction({
        method: "POST",
        url: "/api/sites/" + siteId + "/environments",
        body: {
          name: form.elements["name"].value.trim(),
          slug: form.elements["slug"].value.trim(),
          type: form.elements["type"].value,
          source_environment_id: source.value,
          promotion_preset: form.elements["promotion_preset"].value,
        },
        done: "Cloning.",
        linkClass: "environment-job-log",
        holder: form,
        result: document.getElementById("environment-form-result"),
      });
      if (res && res.ok) form.reset();
    } finally {
      sources();
    }
  });
}

document.addEventListener("DOMContentLoaded", setupSitePage);
