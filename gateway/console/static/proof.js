// pdx console: check the ledger in the browser, taking none of the server's word for it.
// - A checkpoint (C2SP signed note) is checked against the log's verifier key with
//   WebCrypto Ed25519 (RFC 8032); where the browser has no Ed25519 (or the log signs with
//   SM2), the page says the signature was not checked, never that it was.
// - Inclusion: RFC 9162 §2.1.1 hashing with WebCrypto SHA-256, leaf = H(0x00 || entry),
//   node = H(0x01 || left || right), the path checked as in RFC 9162 §2.1.3.2 against the
//   root of the signed checkpoint.
// - Consistency: an older block's checkpoint against the newest, RFC 9162 §2.1.4.2.
"use strict";
(function () {
  function b64(text) {
    var raw = atob(text), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  function join(prefix, a, b) {
    var out = new Uint8Array(1 + a.length + (b ? b.length : 0));
    out[0] = prefix; out.set(a, 1); if (b) { out.set(b, 1 + a.length); }
    return out;
  }
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }
  function equal(a, b) {
    if (a.length !== b.length) { return false; }
    var d = 0;
    for (var i = 0; i < a.length; i++) { d |= a[i] ^ b[i]; }
    return d === 0;
  }
  // RFC 9162 §2.1.3.2, steps 1-6 (BigInt: indexes may exceed 2^32).
  async function verifyInclusion(index, size, leaf, path, root) {
    var fn = BigInt(index), sn = BigInt(size) - 1n;
    if (fn > sn) { return false; }
    var r = await sha256(join(0, leaf));
    for (var i = 0; i < path.length; i++) {
      var p = path[i];
      if (sn === 0n) { return false; }
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(join(1, p, r));
        if ((fn & 1n) === 0n) {
          while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
        }
      } else {
        r = await sha256(join(1, r, p));
      }
      fn >>= 1n; sn >>= 1n;
    }
    return sn === 0n && equal(r, root);
  }
  // RFC 9162 §2.1.4.2, steps 1-6: the tree of `first` leaves with root `root1` is a prefix
  // of the tree of `second` leaves with root `root2`.
  async function verifyConsistency(first, second, path, root1, root2) {
    var m = BigInt(first), n = BigInt(second);
    if (m > n) { return false; }
    if (m === n) { return path.length === 0 && equal(root1, root2); }
    if (m === 0n) { return path.length === 0; }
    if (path.length === 0) { return false; }
    // 1. If first is an exact power of 2, prepend first_hash to the path.
    if ((m & (m - 1n)) === 0n) { path = [root1].concat(path); }
    // 2-3. fn = first - 1, sn = second - 1; shift both while fn's lowest bit is set.
    var fn = m - 1n, sn = n - 1n;
    while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
    // 4. fr and sr start at the first element.
    var fr = path[0], sr = path[0];
    // 5. For each further element c.
    for (var i = 1; i < path.length; i++) {
      var c = path[i];
      if (sn === 0n) { return false; }
      if ((fn & 1n) === 1n || fn === sn) {
        fr = await sha256(join(1, c, fr));
        sr = await sha256(join(1, c, sr));
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        sr = await sha256(join(1, sr, c));
      }
      fn >>= 1n; sn >>= 1n;
    }
    // 6. Both roots match and sn reached 0.
    return equal(fr, root1) && equal(sr, root2) && sn === 0n;
  }
  // A verifier key `name+hash+base64(alg || key)`; base64 may hold '+', so split twice only.
  function parseKey(text) {
    var a = text.indexOf("+"), b = text.indexOf("+", a + 1);
    if (a < 1 || b < 0) { throw new Error("verifier key"); }
    var raw = b64(text.slice(b + 1));
    return { name: text.slice(0, a), hash: parseInt(text.slice(a + 1, b), 16),
             alg: raw[0], key: raw.slice(1) };
  }
  // The note's signature by the verifier key: true, false, or null where this browser
  // cannot check it (no Ed25519 in WebCrypto, or a key of another algorithm).
  async function verifyNote(note, keyText) {
    var vk = parseKey(keyText);
    var split = note.lastIndexOf("\n\n");
    if (split < 0) { return false; }
    var text = new TextEncoder().encode(note.slice(0, split + 1));
    // C2SP key ID: SHA-256(name || 0x0A || alg || key)[:4], big-endian.
    var id = await sha256(concat(new TextEncoder().encode(vk.name + "\n"),
                                 join(vk.alg, vk.key, null)));
    var idNum = ((id[0] << 24) | (id[1] << 16) | (id[2] << 8) | id[3]) >>> 0;
    if (idNum !== vk.hash) { return false; }
    if (vk.alg !== 1) { return null; }
    var lines = note.slice(split + 2).split("\n"), sig = null;
    for (var i = 0; i < lines.length; i++) {
      if (lines[i].indexOf("\u2014 " + vk.name + " ") !== 0) { continue; }
      var raw = b64(lines[i].slice(vk.name.length + 3));
      var hash = ((raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3]) >>> 0;
      if (hash === vk.hash) { sig = raw.slice(4); }
    }
    if (sig === null) { return false; }
    var key;
    try {
      key = await crypto.subtle.importKey("raw", vk.key, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      return null;  // NotSupportedError: this browser has no Ed25519
    }
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig, text);
  }
  function concat(a, b) {
    var out = new Uint8Array(a.length + b.length);
    out.set(a, 0); out.set(b, a.length);
    return out;
  }
  function show(out, button, ok, signed) {
    var word = ok ? button.dataset.ok : button.dataset.bad;
    if (ok && signed === null) { word += " · " + button.dataset.unchecked; }
    out.textContent = word;
    out.className = ok ? "ok" : "bad";
  }
  async function checkConsistency(button) {
    var out = document.getElementById("cons-" + button.dataset.height);
    out.textContent = "…";
    try {
      var res = await fetch("/console/auditor/consistency?height=" +
                            encodeURIComponent(button.dataset.height), { credentials: "same-origin" });
      var doc = await res.json();
      var older = doc.old_checkpoint.split("\n"), newer = doc.checkpoint.split("\n");
      if (BigInt(older[1]) !== BigInt(doc.first) || BigInt(newer[1]) !== BigInt(doc.second)) {
        throw new Error("size");
      }
      var s1 = await verifyNote(doc.old_checkpoint, doc.verifier_key);
      var s2 = await verifyNote(doc.checkpoint, doc.verifier_key);
      var proof = await verifyConsistency(doc.first, doc.second, doc.hashes.map(b64),
                                          b64(older[2]), b64(newer[2]));
      var signed = (s1 === false || s2 === false) ? false : (s1 === null || s2 === null ? null : true);
      show(out, button, proof && signed !== false, signed);
    } catch (e) {
      out.textContent = button.dataset.bad; out.className = "bad";
    }
  }
  async function check(button) {
    var out = document.getElementById("proof-" + button.dataset.index);
    out.textContent = "…";
    try {
      var res = await fetch("/console/auditor/proof?index=" + encodeURIComponent(button.dataset.index),
                            { credentials: "same-origin" });
      var doc = await res.json();
      if (!doc.sealed) { out.textContent = button.dataset.unsealed; out.className = ""; return; }
      var lines = doc.checkpoint.split("\n");   // C2SP checkpoint: origin, size, root
      if (BigInt(lines[1]) !== BigInt(doc.tree_size)) { throw new Error("size"); }
      var signed = await verifyNote(doc.checkpoint, doc.verifier_key);
      var ok = await verifyInclusion(doc.index, doc.tree_size, b64(doc.leaf),
                                     doc.hashes.map(b64), b64(lines[2]));
      show(out, button, ok && signed !== false, signed);
    } catch (e) {
      out.textContent = button.dataset.bad; out.className = "bad";
    }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.verify");
    if (button) { check(button); return; }
    var other = event.target.closest("button.consistency");
    if (other) { checkConsistency(other); }
  });
})();
