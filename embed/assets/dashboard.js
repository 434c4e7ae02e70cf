// meshbox teacher dashboard. One EventSource (/api/v1/dashboard/stream) feeds everything:
// an "overview" snapshot about once a second and "items" batches from every group (for the
// teacher, the first one is each group's recent activity from before the page opened), so the
// browser never opens one connection per group. No libraries, no network beyond this box.
// Every word shown comes from the message catalogs (/assets/i18n/), through i18n.js.
import { setup } from '/assets/i18n.js';

// Plain words for the transports, with the technical name as a tooltip.
const TRANSPORTS = {
  ws: ['transport.ws', 'transport.ws.tip'],
  sse: ['transport.sse', 'transport.sse.tip'],
  longpoll: ['transport.longpoll', 'transport.longpoll.tip'],
  graphql_ws: ['transport.graphql_ws', 'transport.graphql_ws.tip'],
};
// Why a member left or a group ended.
const REASONS = {
  left: 'reason.left', expired: 'reason.expired', removed: 'reason.removed',
  host: 'reason.host', admin: 'reason.admin',
};
// What the join box says when its addresses may not work (web.JoinInfo.warning).
const JOIN_NOTES = {
  loopback: 'dash.join.note.loopback',
  container: 'dash.join.note.container',
  'no-network': 'dash.join.note.nonetwork',
  network: 'dash.join.note.guessed',
};

const i18n = await setup();
const t = (key, params) => i18n.t(key, params);

{
  const FEED_MAX = 60; // items kept per group feed
  const CHART_SECONDS = 300; // the server keeps five minutes of one-second rates
  const TOKEN_KEY = "meshbox.adminToken";
  const $ = (id) => document.getElementById(id);

  // A one-click link (printed at first start) carries the token in the fragment, which is
  // never sent to the server: keep it for this tab and take it out of the address bar.
  {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  const state = {
    adminEnabled: false,
    admin: false, // the stream carries the details (the server accepted the token)
    es: null,
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

  const fmtBytes = (n) => i18n.bytes(n);
  const fmtDuration = (sec) => i18n.duration(sec);
  const fmtRate = (v) => i18n.rate(v);
  const fmtNum = (n) => i18n.num(n);

  // linkQuality grades a node's round trip: poor rows are highlighted, a stalled socket (it
  // stopped reading; the pinger will drop it) is flagged above all.
  function linkQuality(l) {
    if (!l) return "";
    if (l.stalled) return "stalled";
    if (!l.samples) return "";
    if (l.medianMs >= 300) return "poor";
    if (l.medianMs >= 100) return "slow";
    return "good";
  }
  const QUALITIES = { good: "dash.link.good", slow: "dash.link.slow", poor: "dash.link.poor", stalled: "dash.link.stalled" };
  const MEASURES = { ping: "dash.link.measure.ping", echo: "dash.link.measure.echo", "poll gap": "dash.link.measure.gap" };
  function linkTip(l) {
    if (l.stalled && !l.samples) return t("dash.link.tip.stalled");
    const tip = t("dash.link.tip", { measure: t(MEASURES[l.measure] || "dash.link.measure.ping"), median: Math.round(l.medianMs), worst: Math.round(l.worstMs), samples: l.samples });
    return l.stalled ? t("dash.link.tip.stalled") + " " + tip : tip;
  }

  // transportBadge shows a transport in plain words, its technical name in the tooltip.
  function transportLabel(tr) {
    const k = TRANSPORTS[tr];
    return k ? [t(k[0]), t(k[1])] : [tr, tr];
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
    // Without the token the server sends figures only; say why the groups are not listed.
    $("locked-banner").hidden = state.admin;
    $("domains").hidden = !state.admin;
    if (!state.admin) $("no-groups").hidden = true;
    $("admin-token").hidden = !enabled || !!state.token;
    $("admin-unlock").hidden = !enabled || !!state.token;
    $("admin-lock").hidden = !enabled || !state.token;
    const s = $("admin-state");
    const st = !enabled ? "read-only" : state.token && state.admin ? "admin" : "locked";
    s.dataset.state = st;
    setText(s, t(st === "read-only" ? "dash.admin.readonly" : st === "admin" ? "dash.admin.on" : "dash.admin.locked"));
    s.title = st === "read-only" ? t("dash.admin.readonly.tip") : "";
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
        toast(t("dash.toast.badtoken"), "error");
        return;
      }
    } catch (e) {
      toast(t("dash.toast.unreachable", { detail: e.message }), "error");
      return;
    }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("admin-token").value = "";
    connect(); // again, with the token: the details come with it
    toast(t("dash.toast.unlocked"));
  });

  $("admin-lock").addEventListener("click", () => {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    state.admin = false;
    renderGroups([]);
    renderAdmin();
    connect();
  });

  async function adminAction(method, path, what) {
    const headers = {};
    if (state.token) headers.Authorization = "Bearer " + state.token;
    let r;
    try {
      r = await fetch(path, { method, headers });
    } catch (e) {
      toast(t("dash.toast.failed", { what, detail: e.message }), "error");
      return;
    }
    if (r.ok) {
      toast(t("dash.toast.done", { what }));
      return;
    }
    let msg = r.status + " " + r.statusText;
    try {
      const body = await r.json();
      if (body && body.error && body.error.message) msg = body.error.message;
    } catch (_) { /* not JSON; keep the status line */ }
    if (r.status === 401) {
      toast(t("dash.toast.refused", { what }), "error");
      return;
    }
    toast(t("dash.toast.failed", { what, detail: msg }), "error");
  }

  // Buttons arm on the first click and act on the second, so a stray tap on a phone or a
  // projector remote never dissolves a class's group (no blocking confirm() dialogs).
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    if (b.dataset.armed !== "1") {
      b.dataset.armed = "1";
      b.dataset.label = b.textContent;
      b.textContent = t("dash.confirm", { action: b.dataset.label });
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
      adminAction("DELETE", "/api/v1/groups/" + gid, t("dash.action.dissolve", { name: b.dataset.name }));
    } else if (b.dataset.action === "remove") {
      adminAction("DELETE", "/api/v1/groups/" + gid + "/nodes/" + encodeURIComponent(b.dataset.nid), t("dash.action.remove", { name: b.dataset.name }));
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
    for (const [tr, n] of Object.entries(conns)) {
      total += n;
      let dd = dl.querySelector('dd[data-transport="' + tr + '"]');
      if (!dd) {
        dl.append(el("dt", { "data-transport": tr }), (dd = el("dd", { "data-transport": tr })));
      }
      const [label, tip] = transportLabel(tr);
      const dt = dd.previousElementSibling;
      setText(dt, label);
      dt.title = tip;
      setText(dd, fmtNum(n));
    }
    setText($("conn-total"), fmtNum(total));
    setText($("groups-live"), fmtNum(o.groupsLive));
    setText($("nodes-live"), fmtNum(o.nodesLive));
    renderUnits(o.groupsLive, o.nodesLive);

    const ev = o.rates.events, dv = o.rates.deliveries;
    setText($("events-rate"), fmtRate(recent(ev)));
    setText($("deliveries-rate"), fmtRate(recent(dv)));
    setText($("rejected-total"), fmtNum(o.totals.rejected));
    drawChart(ev, dv, o.rates.intervalSeconds, Date.parse(o.now));

    const st = o.storage;
    // Which storage state the box is in and since when: ok, under pressure (items purged
    // before their TTL), full (writes refused) or recovering.
    const stateEl = $("storage-state");
    if (st.state) {
      const since = st.stateSince ? fmtDuration(secondsSince(st.stateSince)) : "";
      const name = STORAGE_STATES[st.state] ? t(STORAGE_STATES[st.state]) : st.state;
      setText(stateEl, name + (since ? " · " + t("dash.storage.since", { d: since }) : ""));
      stateEl.dataset.state = st.state;
    } else {
      setText(stateEl, "–");
    }
    setText($("db-size"), fmtBytes(st.databaseBytes) + (st.budgetBytes ? " / " + fmtBytes(st.budgetBytes) : ""));
    setText($("wal-size"), fmtBytes(st.walBytes));
    setText($("retained"), fmtNum(st.retainedItems));
    setText($("oldest"), st.retainedItems ? fmtDuration(st.oldestItemAgeSeconds) : "–");

    const p = o.purge;
    setText($("purge-last"), p.lastAt ? i18n.ago(secondsSince(p.lastAt)) : t("dash.purge.never"));
    setText($("purge-took"), p.lastAt ? t("dash.purge.ms", { ms: i18n.num(p.lastDurationMs, 1) }) : "–");
    setText($("purge-items"), fmtNum(p.items));
    setText($("purge-gn"), fmtNum(p.groups) + " / " + fmtNum(p.nodes));
    setText($("purge-runs"), fmtNum(p.runs));

    if (o.join) renderJoin(o.join);
    renderGroups(o.domains || []);
    renderKinds();
  }

  // The storage states' names (keys spelled out, so the catalog check finds them).
  const STORAGE_STATES = {
    ok: "dash.storage.state.ok",
    pressure: "dash.storage.state.pressure",
    full: "dash.storage.state.full",
    recovering: "dash.storage.state.recovering",
  };

  // renderUnits words the figures' units for their numbers ("1 group", "2 groups"), by the
  // plural rules of the page's language (Intl.PluralRules, in i18n.tp).
  function renderUnits(groups, nodes) {
    setText($("groups-unit"), i18n.tp("dash.groups.unit", groups));
    setText($("nodes-unit"), i18n.tp("dash.members.unit", nodes));
  }

  // recent averages the last three samples so the number does not flicker.
  function recent(series) {
    const tail = series.slice(-3);
    return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : 0;
  }

  // drawChart plots the whole window (five minutes), newest on the right, so a young box
  // shows a short line at the right edge rather than stretching a few seconds across.
  // The value axis is labelled at the peak, half of it and zero; the time axis at the window's
  // start, middle and "now", as clock times of the server.
  function drawChart(ev, dv, step, now) {
    const n = Math.max(CHART_SECONDS / step, ev.length, dv.length, 2);
    const peak = niceCeil(Math.max(1, ...ev, ...dv));
    const pts = (s) => s.map((v, i) => ((i + n - s.length) * 300 / (n - 1)).toFixed(1) + "," + (100 - v * 95 / peak).toFixed(1)).join(" ");
    $("line-events").setAttribute("points", pts(ev));
    $("line-deliveries").setAttribute("points", pts(dv));
    setText($("y-max"), fmtRate(peak));
    setText($("y-mid"), fmtRate(peak / 2));
    setText($("y-zero"), fmtNum(0));
    const span = (n - 1) * step * 1000;
    setText($("x-start"), i18n.timeShort(new Date(now - span)));
    setText($("x-mid"), i18n.timeShort(new Date(now - span / 2)));
  }

  // niceCeil rounds a peak up to 1, 2 or 5 times a power of ten, so axis labels are round.
  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function renderJoin(join) {
    state.join = join;
    renderKinds();
    const note = $("join-note");
    const key = JOIN_NOTES[join.warning || join.source];
    note.hidden = !key;
    note.dataset.warning = join.warning || "";
    if (key) setText(note, t(key));
    const urls = join.urls || [];
    if (urls.join("\n") === state.joinURLs.join("\n")) return;
    state.joinURLs = urls;
    const sel = $("join-url");
    const keep = sel.value;
    sel.replaceChildren(...urls.map((u) => el("option", { value: u, text: u })));
    if (urls.includes(keep)) sel.value = keep;
    updateQR();
  }

  // The Smalruby editor's link per domain (web.JoinInfo.smalruby): this page's domain first,
  // then, for the teacher, every domain that has groups. The editor is what a Smalruby lesson
  // opens, so it is the page offered until the teacher picks another.
  function renderKinds() {
    const join = state.join;
    const sel = $("join-kind");
    const want = [];
    if (join && join.smalruby) {
      const doms = [join.domain, ...state.domains.keys()].filter((d, i, a) => d && a.indexOf(d) === i);
      for (const d of doms) want.push([join.smalruby + "?mesh=" + encodeURIComponent(d), t("dash.join.kind.smalruby", { domain: d })]);
    }
    const key = want.map((w) => w.join("\t")).join("\n");
    if (key === state.kindsKey) return;
    state.kindsKey = key;
    const keep = sel.value;
    sel.querySelectorAll("option[data-smalruby]").forEach((o) => o.remove());
    sel.prepend(...want.map(([value, text]) => el("option", { value, text, "data-smalruby": "1" })));
    if (!state.kindChosen && want.length) sel.value = want[0][0];
    else if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
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
  $("join-kind").addEventListener("change", () => { state.kindChosen = true; updateQR(); });

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
        const h3 = el("h3", { "data-i18n-title": "dash.domain.tip" });
        dom = { el: el("section", { class: "domain", "data-domain": d.domain }, h3, list), list, h3 };
        state.domains.set(d.domain, dom);
        root.append(dom.el);
      }
      setText(dom.h3, t("dash.domain", { domain: d.domain }));
      dom.h3.title = t("dash.domain.tip");
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
    $("no-groups").hidden = !state.admin || state.groups.size > 0;
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
    const dissolve = el("button", { type: "button", class: "danger admin-only", "data-i18n": "dash.group.dissolve", text: t("dash.group.dissolve") });
    Object.assign(dissolve.dataset, { action: "dissolve", gid: g.id, name: g.name });
    const tbody = el("tbody");
    const feed = el("ol", { class: "feed", "data-testid": "feed" });
    const node = el("article", { class: "group card", "data-gid": g.id, "data-testid": "group" },
      el("header", null,
        el("h4", null, parts.name, " ", parts.members),
        dissolve),
      el("p", { class: "gmeta" },
        el("span", { "data-i18n": "dash.group.host", text: t("dash.group.host") }), " ", parts.host, " · ",
        el("span", { "data-i18n": "dash.group.age", text: t("dash.group.age") }), " ", parts.age, " · ",
        el("span", { "data-i18n": "dash.group.left", text: t("dash.group.left") }), " ", parts.left, " · ",
        el("span", { "data-i18n": "dash.group.code", text: t("dash.group.code") }), " ", parts.meta),
      el("div", { class: "cols" },
        el("div", { class: "nodes-wrap" },
          el("table", { class: "nodes" },
            el("thead", null, el("tr", null,
              el("th", { "data-i18n": "dash.node.name", text: t("dash.node.name") }),
              el("th", { "data-i18n": "dash.node.transport", text: t("dash.node.transport") }),
              el("th", { "data-i18n": "dash.node.seen", text: t("dash.node.seen") }),
              el("th", { "data-i18n": "dash.node.data", text: t("dash.node.data") }), el("th", { class: "admin-only" }))),
            tbody)),
        el("div", { class: "feed-wrap" }, el("h5", { "data-i18n": "dash.feed", text: t("dash.feed") }), feed)));
    return { el: node, parts, tbody, feed, nodes: new Map(), names: new Map(), group: g, last: 0 };
  }

  function updateGroupView(v, g) {
    v.group = g;
    for (const n of g.nodes) v.names.set(n.id, n.name);
    const host = g.nodes.find((n) => n.host);
    setText(v.parts.name, g.name);
    setText(v.parts.members, i18n.tp("dash.group.members", g.nodes.length));
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
    const remove = el("button", { type: "button", class: "danger small", "data-i18n": "dash.node.remove", text: t("dash.node.remove") });
    Object.assign(remove.dataset, { action: "remove", gid: g.id, nid: n.id, name: n.name });
    const tr = el("tr", { "data-nid": n.id, "data-testid": "node" },
      cells.name, cells.transport, cells.seen, cells.data, el("td", { class: "admin-only" }, remove));
    return { el: tr, cells, key: "" };
  }

  function updateNodeRow(row, n) {
    setText(row.cells.seen, i18n.ago(secondsSince(n.lastSeen)));
    const key = JSON.stringify([i18n.lang, n.name, n.host, n.transports, n.data, n.link]);
    if (key === row.key) return;
    row.key = key;
    row.cells.name.replaceChildren(n.name, n.host ? el("span", { class: "badge host", text: t("dash.node.host") }) : "");
    const ts = n.transports && n.transports.length ? n.transports : [];
    row.cells.transport.replaceChildren(...(ts.length ? ts.map((tr) => {
      const [label, tip] = transportLabel(tr);
      return el("span", { class: "badge t-" + tr, "data-transport": tr, text: label, title: tip });
    }) : [el("span", { class: "muted", "data-transport": "", text: t("dash.node.idle"), title: t("dash.node.idle.tip") })]));
    const q = linkQuality(n.link);
    row.el.dataset.link = q;
    if (q) row.cells.transport.append(" ", el("span", { class: "badge link-" + q, "data-testid": "link", text: t(QUALITIES[q]), title: linkTip(n.link) }));
    const entries = Object.entries(n.data || {}).sort(([a], [b]) => a.localeCompare(b));
    row.cells.data.replaceChildren(...entries.map(([k, val]) => el("span", { class: "kvchip" }, el("b", { text: k }), "=" + val)));
  }

  // ---- items ----------------------------------------------------------------------------

  const reason = (r) => (REASONS[r] ? t(REASONS[r]) : r);

  function describe(v, it) {
    const who = it.node ? (v.names.get(it.node) || it.node) : "";
    switch (it.kind) {
      case "event": return [who, t("dash.item.event", { name: it.name, payload: it.payload != null ? it.payload : "" }).trim()];
      case "data": return [who, t("dash.item.data", { changes: Object.entries(it.data || {}).map(([k, val]) => k + "=" + (val === "" ? "∅" : val)).join(" ") })];
      case "join": return [it.name || who, t("dash.item.join")];
      case "leave": return [who, t("dash.item.leave", { reason: reason(it.reason) })];
      case "dissolve": return ["", t("dash.item.dissolve", { reason: reason(it.reason) })];
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
      // Cursors only grow: an item at or before the newest one shown is already in the feed
      // (the backfill a reconnected stream opens with repeats what the page has).
      if (item.cursor <= v.last) continue;
      v.last = item.cursor;
      if (item.kind === "join" && item.node) v.names.set(item.node, item.name);
      const [who, what] = describe(v, item);
      const at = new Date(item.at);
      const li = el("li", { class: "k-" + item.kind, "data-kind": item.kind, "data-cursor": String(item.cursor), "data-reason": item.reason || "" },
        el("time", { text: i18n.time(at) }),
        el("b", { text: who }),
        el("span", { text: what }));
      v.feed.prepend(li);
      while (v.feed.childElementCount > FEED_MAX) v.feed.lastElementChild.remove();
    }
  }

  // ---- stream ---------------------------------------------------------------------------

  const LIVE = { live: "dash.live.on", connecting: "dash.live.connecting", reconnecting: "dash.live.retry" };

  function setLive(st) {
    $("live-dot").className = "dot " + (st === "live" ? "ok" : st === "reconnecting" ? "bad" : "");
    $("live-text").dataset.state = st;
    setText($("live-text"), t(LIVE[st]));
  }

  function connect() {
    if (state.es) state.es.close();
    // EventSource cannot send headers: the token goes in the query.
    const url = "/api/v1/dashboard/stream" + (state.token ? "?token=" + encodeURIComponent(state.token) : "");
    const es = (state.es = new EventSource(url));
    es.addEventListener("open", () => setLive("live"));
    es.addEventListener("hello", (e) => {
      const h = JSON.parse(e.data);
      if (h.join) renderJoin(h.join);
      state.adminEnabled = h.adminEnabled;
      state.admin = !!h.admin;
      if (state.token && !state.admin) {
        // A token from an earlier box, or one changed since: forget it.
        state.token = "";
        sessionStorage.removeItem(TOKEN_KEY);
        toast(t("dash.toast.badtoken"), "error");
      }
      if (!state.admin) renderGroups([]);
      renderAdmin();
    });
    es.addEventListener("overview", (e) => {
      setLive("live");
      state.last = JSON.parse(e.data);
      renderOverview(state.last);
    });
    es.addEventListener("items", (e) => addItems(JSON.parse(e.data).items));
    es.addEventListener("reset", () => toast(t("dash.toast.behind")));
    es.addEventListener("error", () => setLive("reconnecting")); // EventSource retries by itself
  }

  // A new language: redraw what this script wrote (the rest carries data-i18n attributes).
  i18n.onChange(() => {
    renderAdmin();
    setLive($("live-text").dataset.state);
    if (state.join) renderJoin(state.join);
    if (state.last) renderOverview(state.last);
    else renderUnits(0, 0);
  });

  setLive("connecting");
  renderUnits(0, 0);
  renderAdmin();
  updateQR();
  document.body.classList.remove("loading");
  connect();
}
