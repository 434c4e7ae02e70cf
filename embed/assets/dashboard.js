// meshbox teacher dashboard. One EventSource (/api/v1/dashboard/stream) feeds everything:
// an "overview" snapshot about once a second and "items" batches from every group, so the
// browser never opens one connection per group. No libraries, no network beyond this box.
"use strict";

(() => {
  const FEED_MAX = 60; // items kept per group feed
  const CHART_SECONDS = 300; // the server keeps five minutes of one-second rates
  const TOKEN_KEY = "meshbox.adminToken";
  const $ = (id) => document.getElementById(id);

  const state = {
    adminEnabled: false,
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    clockSkew: 0, // server time minus browser time, ms
    groups: new Map(), // gid -> {el, parts, nodes: Map(nid -> row), feed, names}
    domains: new Map(), // domain -> {el, list}
    joinURLs: [],
    pending: new Map(), // gid -> {since, items} that arrived before an overview listed the group
    overviews: 0,
  };

  // ---- small helpers --------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function fmtBytes(n) {
    if (n == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  function fmtDuration(sec) {
    if (sec == null || !isFinite(sec)) return "–";
    const neg = sec < 0;
    sec = Math.abs(Math.round(sec));
    let s;
    if (sec < 60) s = sec + " s";
    else if (sec < 3600) s = Math.floor(sec / 60) + " min " + (sec % 60) + " s";
    else if (sec < 86400) s = Math.floor(sec / 3600) + " h " + Math.floor((sec % 3600) / 60) + " min";
    else s = Math.floor(sec / 86400) + " d " + Math.floor((sec % 86400) / 3600) + " h";
    return neg ? "-" + s : s;
  }

  function fmtRate(v) {
    if (v >= 100) return Math.round(v).toString();
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(v === 0 ? 0 : 2);
  }

  const serverNow = () => Date.now() + state.clockSkew;
  const secondsSince = (iso) => (serverNow() - Date.parse(iso)) / 1000;
  const secondsUntil = (iso) => (Date.parse(iso) - serverNow()) / 1000;

  let toastTimer = 0;
  function toast(msg, kind) {
    const t = $("toast");
    t.textContent = msg;
    t.className = kind || "";
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
  }

  // ---- admin ----------------------------------------------------------------------------

  function renderAdmin() {
    const enabled = state.adminEnabled;
    $("readonly-banner").hidden = enabled;
    $("admin-token").hidden = !enabled || !!state.token;
    $("admin-unlock").hidden = !enabled || !!state.token;
    $("admin-lock").hidden = !enabled || !state.token;
    const s = $("admin-state");
    if (!enabled) setText(s, "read-only");
    else if (state.token) setText(s, "admin");
    else setText(s, "admin locked");
    s.className = "badge " + (!enabled ? "ro" : state.token ? "ok" : "");
    document.body.classList.toggle("admin-enabled", enabled);
  }

  async function checkToken(token) {
    const r = await fetch("/api/v1/admin/check", { headers: { Authorization: "Bearer " + token } });
    return r.ok;
  }

  $("admin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("admin-token").value.trim();
    if (!token) return;
    try {
      if (!(await checkToken(token))) {
        $("admin-token").value = "";
        $("admin-token").focus();
        toast("That admin token was refused.", "error");
        return;
      }
    } catch (e) {
      toast("Could not reach the box: " + e.message, "error");
      return;
    }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("admin-token").value = "";
    renderAdmin();
    toast("Admin actions unlocked.");
  });

  $("admin-lock").addEventListener("click", () => {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    renderAdmin();
  });

  async function adminAction(method, path, what) {
    const headers = {};
    if (state.token) headers.Authorization = "Bearer " + state.token;
    let r;
    try {
      r = await fetch(path, { method, headers });
    } catch (e) {
      toast(what + " failed: " + e.message, "error");
      return;
    }
    if (r.ok) {
      toast(what + ": done.");
      return;
    }
    let msg = r.status + " " + r.statusText;
    try {
      const body = await r.json();
      if (body && body.error && body.error.message) msg = body.error.message;
    } catch (_) { /* not JSON; keep the status line */ }
    if (r.status === 401) msg = "refused: " + msg + " (unlock with the admin token)";
    toast(what + " " + msg, "error");
  }

  // Buttons arm on the first click and act on the second, so a stray tap on a phone or a
  // projector remote never dissolves a class's group (no blocking confirm() dialogs).
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    if (b.dataset.armed !== "1") {
      b.dataset.armed = "1";
      b.dataset.label = b.textContent;
      b.textContent = "Sure? " + b.dataset.label;
      b.classList.add("armed");
      setTimeout(() => {
        if (b.dataset.armed === "1") {
          b.dataset.armed = "";
          b.textContent = b.dataset.label;
          b.classList.remove("armed");
        }
      }, 4000);
      return;
    }
    b.dataset.armed = "";
    b.textContent = b.dataset.label;
    b.classList.remove("armed");
    const gid = encodeURIComponent(b.dataset.gid);
    if (b.dataset.action === "dissolve") {
      adminAction("DELETE", "/api/v1/admin/groups/" + gid, "Dissolve group " + b.dataset.name);
    } else if (b.dataset.action === "remove") {
      adminAction("DELETE", "/api/v1/admin/groups/" + gid + "/nodes/" + encodeURIComponent(b.dataset.nid), "Remove node " + b.dataset.name);
    }
  });

  // ---- overview -------------------------------------------------------------------------

  function renderOverview(o) {
    state.clockSkew = Date.parse(o.now) - Date.now();
    if (state.adminEnabled !== o.adminEnabled) {
      state.adminEnabled = o.adminEnabled;
      renderAdmin();
    }
    setText($("version"), o.version);
    setText($("uptime"), fmtDuration(o.uptimeSeconds));

    const conns = o.connections || {};
    let total = 0;
    const dl = $("conn-by-transport");
    for (const [t, n] of Object.entries(conns)) {
      total += n;
      let dd = dl.querySelector('dd[data-transport="' + t + '"]');
      if (!dd) {
        dl.append(el("dt", { text: t }), (dd = el("dd", { "data-transport": t })));
      }
      setText(dd, String(n));
    }
    setText($("conn-total"), String(total));
    setText($("groups-live"), String(o.groupsLive));
    setText($("nodes-live"), String(o.nodesLive));

    const ev = o.rates.events, dv = o.rates.deliveries;
    setText($("events-rate"), fmtRate(recent(ev)));
    setText($("deliveries-rate"), fmtRate(recent(dv)));
    setText($("rejected-total"), String(o.totals.rejected));
    drawChart(ev, dv, o.rates.intervalSeconds);

    const st = o.storage;
    setText($("db-size"), fmtBytes(st.databaseBytes));
    setText($("wal-size"), fmtBytes(st.walBytes));
    setText($("retained"), String(st.retainedItems));
    setText($("oldest"), st.retainedItems ? fmtDuration(st.oldestItemAgeSeconds) : "–");

    const p = o.purge;
    setText($("purge-last"), p.lastAt ? fmtDuration(secondsSince(p.lastAt)) + " ago" : "never");
    setText($("purge-took"), p.lastAt ? p.lastDurationMs.toFixed(1) + " ms" : "–");
    setText($("purge-items"), String(p.items));
    setText($("purge-gn"), p.groups + " / " + p.nodes);
    setText($("purge-runs"), String(p.runs));

    if (o.joinURLs) renderJoin(o.joinURLs);
    renderGroups(o.domains || []);
  }

  // recent averages the last three samples so the number does not flicker.
  function recent(series) {
    const tail = series.slice(-3);
    return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : 0;
  }

  // drawChart plots the whole window (five minutes), newest on the right, so a young box
  // shows a short line at the right edge rather than stretching a few seconds across.
  function drawChart(ev, dv, step) {
    const n = Math.max(CHART_SECONDS / step, ev.length, dv.length, 2);
    const peak = Math.max(1, ...ev, ...dv);
    const pts = (s) => s.map((v, i) => ((i + n - s.length) * 300 / (n - 1)).toFixed(1) + "," + (100 - v * 95 / peak).toFixed(1)).join(" ");
    $("line-events").setAttribute("points", pts(ev));
    $("line-deliveries").setAttribute("points", pts(dv));
    setText($("chart-max"), fmtRate(peak));
  }

  function renderJoin(urls) {
    if (urls.join("\n") === state.joinURLs.join("\n")) return;
    state.joinURLs = urls;
    const sel = $("join-url");
    const keep = sel.value;
    sel.replaceChildren(...urls.map((u) => el("option", { value: u, text: u })));
    if (urls.includes(keep)) sel.value = keep;
    updateQR();
  }

  function updateQR() {
    const base = $("join-url").value || location.origin;
    const text = base.replace(/\/$/, "") + $("join-kind").value;
    if ($("join-text").textContent === text) return;
    $("join-text").textContent = text;
    $("join-qr").src = "/api/v1/dashboard/qr.svg?text=" + encodeURIComponent(text);
  }
  $("join-url").addEventListener("change", updateQR);
  $("join-kind").addEventListener("change", updateQR);

  // ---- groups ---------------------------------------------------------------------------

  function renderGroups(domains) {
    const seen = new Set();
    const seenDomains = new Set();
    const root = $("domains");
    for (const d of domains) {
      seenDomains.add(d.domain);
      let dom = state.domains.get(d.domain);
      if (!dom) {
        const list = el("div", { class: "groups" });
        dom = { el: el("section", { class: "domain", "data-domain": d.domain }, el("h3", { text: "domain " + d.domain }), list), list };
        state.domains.set(d.domain, dom);
        root.append(dom.el);
      }
      for (const g of d.groups) {
        seen.add(g.id);
        let view = state.groups.get(g.id);
        if (!view) {
          view = newGroupView(g);
          state.groups.set(g.id, view);
          updateGroupView(view, g);
          const held = state.pending.get(g.id);
          if (held) { state.pending.delete(g.id); addItems(held.items); }
        }
        if (view.el.parentNode !== dom.list) dom.list.append(view.el);
        updateGroupView(view, g);
      }
    }
    for (const [gid, view] of state.groups) {
      if (!seen.has(gid)) { view.el.remove(); state.groups.delete(gid); }
    }
    for (const [name, dom] of state.domains) {
      if (!seenDomains.has(name)) { dom.el.remove(); state.domains.delete(name); }
    }
    $("no-groups").hidden = state.groups.size > 0;
    // Drop items of groups that ended before any overview showed them.
    state.overviews++;
    for (const [gid, p] of state.pending) if (state.overviews - p.since > 3) state.pending.delete(gid);
  }

  function newGroupView(g) {
    const parts = {
      name: el("span", { class: "gname" }),
      meta: el("span", { class: "muted" }),
      members: el("span", { class: "badge" }),
      age: el("span"),
      left: el("span"),
      host: el("span"),
    };
    const dissolve = el("button", { type: "button", class: "danger admin-only", text: "Dissolve" });
    Object.assign(dissolve.dataset, { action: "dissolve", gid: g.id, name: g.name });
    const tbody = el("tbody");
    const feed = el("ol", { class: "feed", "data-testid": "feed" });
    const node = el("article", { class: "group card", "data-gid": g.id, "data-testid": "group" },
      el("header", null,
        el("h4", null, parts.name, " ", parts.members),
        dissolve),
      el("p", { class: "gmeta" },
        "host ", parts.host, " · age ", parts.age, " · ends in ", parts.left, " · ", parts.meta),
      el("div", { class: "cols" },
        el("div", { class: "nodes-wrap" },
          el("table", { class: "nodes" },
            el("thead", null, el("tr", null,
              el("th", { text: "node" }), el("th", { text: "transport" }), el("th", { text: "last seen" }),
              el("th", { text: "data" }), el("th", { class: "admin-only" }))),
            tbody)),
        el("div", { class: "feed-wrap" }, el("h5", { text: "live feed" }), feed)));
    return { el: node, parts, tbody, feed, nodes: new Map(), names: new Map(), group: g };
  }

  function updateGroupView(v, g) {
    v.group = g;
    for (const n of g.nodes) v.names.set(n.id, n.name);
    const host = g.nodes.find((n) => n.host);
    setText(v.parts.name, g.name);
    setText(v.parts.members, g.nodes.length + (g.nodes.length === 1 ? " member" : " members"));
    setText(v.parts.host, host ? host.name : g.host);
    setText(v.parts.age, fmtDuration(secondsSince(g.createdAt)));
    setText(v.parts.left, fmtDuration(secondsUntil(g.expiresAt)));
    setText(v.parts.meta, g.id);

    const seen = new Set();
    g.nodes.forEach((n, i) => {
      seen.add(n.id);
      let row = v.nodes.get(n.id);
      if (!row) {
        row = newNodeRow(g, n);
        v.nodes.set(n.id, row);
      }
      // Move a row only when it is out of join order, so a button under the pointer is never
      // detached in the middle of a click.
      const at = v.tbody.children[i];
      if (at !== row.el) v.tbody.insertBefore(row.el, at || null);
      updateNodeRow(row, n);
    });
    for (const [nid, row] of v.nodes) {
      if (!seen.has(nid)) { row.el.remove(); v.nodes.delete(nid); }
    }
  }

  function newNodeRow(g, n) {
    const cells = { name: el("td"), transport: el("td"), seen: el("td", { class: "seen" }), data: el("td", { class: "data" }) };
    const remove = el("button", { type: "button", class: "danger small", text: "Remove" });
    Object.assign(remove.dataset, { action: "remove", gid: g.id, nid: n.id, name: n.name });
    const tr = el("tr", { "data-nid": n.id, "data-testid": "node" },
      cells.name, cells.transport, cells.seen, cells.data, el("td", { class: "admin-only" }, remove));
    return { el: tr, cells, key: "" };
  }

  function updateNodeRow(row, n) {
    setText(row.cells.seen, fmtDuration(secondsSince(n.lastSeen)) + " ago");
    const key = JSON.stringify([n.name, n.host, n.transports, n.data]);
    if (key === row.key) return;
    row.key = key;
    row.cells.name.replaceChildren(n.name, n.host ? el("span", { class: "badge host", text: "host" }) : "");
    const ts = n.transports && n.transports.length ? n.transports : [];
    row.cells.transport.replaceChildren(...(ts.length ? ts.map((t) => el("span", { class: "badge t-" + t, text: t })) : [el("span", { class: "muted", text: "no stream", title: "no stream open right now: a client between long-polls, a Mesh v2 client, or one that only sends" })]));
    const entries = Object.entries(n.data || {}).sort(([a], [b]) => a.localeCompare(b));
    row.cells.data.replaceChildren(...entries.map(([k, val]) => el("span", { class: "kvchip" }, el("b", { text: k }), "=" + val)));
  }

  // ---- items ----------------------------------------------------------------------------

  function describe(v, it) {
    const who = it.node ? (v.names.get(it.node) || it.node) : "";
    switch (it.kind) {
      case "event": return [who, "event " + it.name + (it.payload != null && it.payload !== "" ? " " + it.payload : "")];
      case "data": return [who, "data " + Object.entries(it.data || {}).map(([k, val]) => k + "=" + (val === "" ? "∅" : val)).join(" ")];
      case "join": return [it.name || who, "joined"];
      case "leave": return [who, "left (" + it.reason + ")"];
      case "dissolve": return ["", "group dissolved (" + it.reason + ")"];
      default: return [who, it.kind];
    }
  }

  function addItems(batch) {
    for (const { group, item } of batch) {
      const v = state.groups.get(group);
      if (!v) {
        // The overview naming this group is at most a second away; hold its items until then.
        if (!state.pending.has(group)) {
          if (state.pending.size >= 200) continue;
          state.pending.set(group, { since: state.overviews, items: [] });
        }
        const p = state.pending.get(group).items;
        p.push({ group, item });
        if (p.length > FEED_MAX) p.shift();
        continue;
      }
      if (item.kind === "join" && item.node) v.names.set(item.node, item.name);
      const [who, what] = describe(v, item);
      const t = new Date(item.at);
      const li = el("li", { class: "k-" + item.kind, "data-cursor": String(item.cursor) },
        el("time", { text: t.toLocaleTimeString([], { hour12: false }) }),
        el("b", { text: who }),
        el("span", { text: what }));
      v.feed.prepend(li);
      while (v.feed.childElementCount > FEED_MAX) v.feed.lastElementChild.remove();
    }
  }

  // ---- stream ---------------------------------------------------------------------------

  function setLive(ok, text) {
    $("live-dot").className = "dot " + (ok ? "ok" : "bad");
    setText($("live-text"), text);
  }

  function connect() {
    const es = new EventSource("/api/v1/dashboard/stream");
    es.addEventListener("open", () => setLive(true, "live"));
    es.addEventListener("hello", (e) => {
      const h = JSON.parse(e.data);
      renderJoin(h.joinURLs || []);
    });
    es.addEventListener("overview", (e) => {
      setLive(true, "live");
      renderOverview(JSON.parse(e.data));
    });
    es.addEventListener("items", (e) => addItems(JSON.parse(e.data).items));
    es.addEventListener("reset", () => toast("The dashboard fell behind; some feed items were skipped."));
    es.addEventListener("error", () => setLive(false, "reconnecting…")); // EventSource retries by itself
  }

  renderAdmin();
  updateQR();
  connect();
})();
