// pdx console: the enterprise's own job key, on the three pages that use it.
// - Request form (#jobkey): a Paillier key is made in a worker (jobkey-worker.js) as soon
//   as the option is on; on submit only n and its fingerprint go into the form; p and q
//   stay in this browser's localStorage (never in a request).
// - Computation page (#jobkey-held): the key is filed under the computation's id, and
//   offered as a download.
// - Result page (#sealed-result): the encrypted aggregate is fetched (the console's
//   result.json: the API's own answer), opened and post-processed here (paillier.js),
//   shown as a table and, for histograms, a chart. Without the key, the page says so:
//   the platform holds no plaintext of such a result.
"use strict";
(function () {
  var P = window.PdxPaillier;
  var PREFIX = "pdx.jobkey.";

  function msg(root, name, values) {
    var text = root.getAttribute("data-msg-" + name) || name;
    Object.keys(values || {}).forEach(function (k) { text = text.split("{" + k + "}").join(String(values[k])); });
    return text;
  }

  function load(name) {
    try { return JSON.parse(localStorage.getItem(PREFIX + name) || "null"); } catch (e) { return null; }
  }

  // The key of computation `id` (fingerprint `fp`): filed under the id, or still under its
  // fingerprint from the request form (then moved under the id).
  function keyRecord(id, fp) {
    var rec = load("computation." + id);
    if (rec && rec.fingerprint === fp) { return rec; }
    rec = load("fp." + fp);
    if (!rec || rec.fingerprint !== fp) { return null; }
    rec.computation_id = id;
    localStorage.setItem(PREFIX + "computation." + id, JSON.stringify(rec));
    localStorage.removeItem(PREFIX + "fp." + fp);
    return rec;
  }

  // Keys of requests the API refused stay under their fingerprint: dropped after a day.
  function dropStale() {
    var day = 24 * 3600 * 1000;
    Object.keys(localStorage).forEach(function (name) {
      if (name.indexOf(PREFIX + "fp.") !== 0) { return; }
      var rec = load(name.slice(PREFIX.length));
      if (!rec || !(Date.now() - Date.parse(rec.created) < day)) { localStorage.removeItem(name); }
    });
  }

  // -- the request form ---------------------------------------------------------------------

  function requestForm(box) {
    var form = box.closest("form");
    var on = document.getElementById("jobkey-on");
    var nField = document.getElementById("jobkey-n"), fpField = document.getElementById("jobkey-fp");
    var status = document.getElementById("jobkey-status");
    var button = form.querySelector("button[type=submit]");
    var bits = parseInt(box.getAttribute("data-bits"), 10) || P.MIN_BITS;
    var pending = null;

    function say(text, cls) { status.textContent = text; status.className = cls || ""; }

    function start() {
      if (pending) { return pending; }
      say(msg(box, "generating", { bits: bits }));
      pending = new Promise(function (resolve, reject) {
        var worker = new Worker(box.getAttribute("data-worker"));
        worker.onmessage = function (e) {
          worker.terminate();
          if (e.data && e.data.error) { reject(new Error(e.data.error)); } else { resolve(e.data); }
        };
        worker.onerror = function (e) { worker.terminate(); reject(new Error(e.message || "worker")); };
        worker.postMessage({ bits: bits });
      }).then(async function (made) {
        made.fingerprint = await P.fingerprint(P.SCHEME, BigInt("0x" + made.n));
        say(msg(box, "ready", { bits: made.bits, seconds: (made.ms / 1000).toFixed(1), fingerprint: made.fingerprint }), "ok");
        box.setAttribute("data-key-ms", String(made.ms));
        return made;
      });
      pending.catch(function (err) {
        pending = null;
        say(msg(box, "failed", { error: err.message }), "bad");
      });
      return pending;
    }

    dropStale();
    if (on.checked) { start(); }
    on.addEventListener("change", function () { if (on.checked) { start(); } });
    form.addEventListener("submit", function (event) {
      nField.value = ""; fpField.value = "";
      if (!on.checked) { return; }
      event.preventDefault();
      button.disabled = true;
      start().then(function (made) {
        // The secret half stays here; the form carries the public half only.
        var record = { scheme: P.SCHEME, n: made.n, p: made.p, q: made.q, fingerprint: made.fingerprint,
                       bits: made.bits, created: new Date().toISOString(), computation_id: null };
        localStorage.setItem(PREFIX + "fp." + made.fingerprint, JSON.stringify(record));
        nField.value = made.n;
        fpField.value = made.fingerprint;
        form.submit();
      }, function () { button.disabled = false; });
    });
  }

  // -- the computation page -----------------------------------------------------------------

  function held(box) {
    var id = box.getAttribute("data-computation"), fp = box.getAttribute("data-fingerprint");
    var out = document.getElementById("jobkey-here");
    var rec = keyRecord(id, fp);
    if (!rec) { out.textContent = msg(box, "missing"); out.className = "bad"; return; }
    out.textContent = msg(box, "held"); out.className = "ok";
    var link = document.getElementById("jobkey-download");
    var blob = new Blob([JSON.stringify(rec, null, 2)], { type: "application/json" });
    link.href = URL.createObjectURL(blob);
    link.hidden = false;
  }

  // -- the result page ----------------------------------------------------------------------

  function g6(x) { return typeof x === "number" ? String(Number(x.toPrecision(6))) : String(x); }

  function binLabels(edges, count) {
    var labels = [];
    if (edges && edges.length) {
      labels.push("< " + g6(edges[0]));
      for (var i = 0; i + 1 < edges.length; i++) { labels.push("[" + g6(edges[i]) + ", " + g6(edges[i + 1]) + ")"); }
      labels.push("> " + g6(edges[edges.length - 1]));
    }
    if (labels.length !== count) { labels = []; for (var j = 0; j < count; j++) { labels.push(String(j)); } }
    return labels;
  }

  function cell(tr, text, tag) {
    var td = document.createElement(tag || "td");
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function row(body, group, measure, value, exact) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-group", group);
    tr.setAttribute("data-measure", measure);
    cell(tr, group);
    cell(tr, measure, "th").setAttribute("scope", "row");
    var v = cell(tr, value === null ? "—" : String(value));
    v.setAttribute("data-value", value === null ? "" : String(value));
    cell(tr, exact || "");
    body.appendChild(tr);
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(name, attrs, parent) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(el); }
    return el;
  }

  function histogram(label, labels, cells) { // as gateway/console/plots.py draws it
    var W = 480, H = 160, PAD = 32;
    var chart = svg("svg", { "class": "chart", viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "aria-label": label });
    svg("title", {}, chart).textContent = label;
    svg("line", { x1: PAD, y1: H - PAD, x2: W - 8, y2: H - PAD, stroke: "#555" }, chart);
    svg("line", { x1: PAD, y1: 8, x2: PAD, y2: H - PAD, stroke: "#555" }, chart);
    var top = Math.max.apply(null, cells.map(function (c) { return c || 0; }).concat([1]));
    var slot = (W - PAD - 16) / cells.length;
    cells.forEach(function (c, i) {
      var h = (c || 0) / top * (H - PAD - 20);
      var rect = svg("rect", { x: (PAD + 2 + i * slot).toFixed(1), y: (H - PAD - h).toFixed(1), width: Math.max(slot - 4, 1).toFixed(1), height: h.toFixed(1), fill: "#0b5cad" }, chart);
      svg("title", {}, rect).textContent = labels[i] + ": " + (c === null ? "—" : String(c));
    });
    var t = svg("text", { x: PAD - 4, y: 16, "font-size": 11, fill: "#222", "text-anchor": "end" }, chart);
    t.textContent = g6(top);
    return chart;
  }

  function show(box, result, out) {
    var body = document.querySelector("#sealed-table tbody");
    out.groups.forEach(function (g) {
      if (g.histogram) {
        var labels = binLabels(out.bin_edges, g.histogram.length);
        g.histogram.forEach(function (c, i) { row(body, g.group, labels[i], c, c === null ? msg(box, "suppressed") : ""); });
        document.getElementById("sealed-charts").appendChild(
          histogram(msg(box, "histogram", { group: g.group }), labels, g.histogram));
        return;
      }
      Object.keys(g.values).forEach(function (k) { row(body, g.group, k, g.values[k], g.exact[k]); });
    });
    var table = document.getElementById("sealed-table");
    table.hidden = false;
    table.setAttribute("data-testid", "result"); // named once it holds the values
    var charts = document.getElementById("sealed-charts");
    if (charts.children.length) { charts.setAttribute("data-testid", "result-charts"); }
    var facts = document.getElementById("sealed-facts");
    facts.textContent = msg(box, "facts", {
      epsilon: out.dp_epsilon === null ? "—" : out.dp_epsilon,
      suppressed: out.suppressed.length ? out.suppressed.join(", ") : "—",
      ledger: result.ledger_index === null || result.ledger_index === undefined ? "—" : result.ledger_index,
      digest: String(result.digest || "").slice(0, 30) + "…",
    });
    facts.hidden = false;
  }

  async function sealed(box) {
    var status = document.getElementById("sealed-status");
    function say(text, cls) { status.textContent = text; status.className = cls || ""; box.setAttribute("data-state", cls || "busy"); }
    var id = box.getAttribute("data-computation"), fp = box.getAttribute("data-fingerprint");
    var rec = keyRecord(id, fp);
    if (!rec) { say(msg(box, "missing"), "missing"); return; }
    try {
      var answer = await fetch(box.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } });
      var text = await answer.text();
      if (!answer.ok) {
        var problem = {};
        try { problem = JSON.parse(text); } catch (e) { problem = {}; }
        say(msg(box, "fetch_failed", { error: problem.detail || problem.title || ("HTTP " + answer.status) }), "bad");
        return;
      }
      var result = P.parseJson(text);
      var started = performance.now();
      var key = await P.keyOf(rec);
      var out = P.decrypt(result, key);
      box.setAttribute("data-decrypt-ms", String(Math.round(performance.now() - started)));
      show(box, result, out);
      say(msg(box, "decrypted", { fingerprint: fp }), "ok");
    } catch (err) {
      say(msg(box, "decrypt_failed", { error: err.message }), "bad");
    }
  }

  function ready() {
    var form = document.getElementById("jobkey");
    if (form) { requestForm(form); }
    var box = document.getElementById("jobkey-held");
    if (box) { held(box); }
    var result = document.getElementById("sealed-result");
    if (result) { sealed(result); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
})();
