// pdx console: check a ledger entry's inclusion in the signed checkpoint, in the browser.
// RFC 9162 §2.1.1 hashing with WebCrypto SHA-256: leaf = H(0x00 || entry),
// node = H(0x01 || left || right); the proof is checked as in RFC 9162 §2.1.3.2.
// The server's word is not taken: the browser hashes the entry bytes and the path itself
// and compares with the root in the checkpoint note.
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
      var ok = await verifyInclusion(doc.index, doc.tree_size, b64(doc.leaf),
                                     doc.hashes.map(b64), b64(lines[2]));
      out.textContent = ok ? button.dataset.ok : button.dataset.bad;
      out.className = ok ? "ok" : "bad";
    } catch (e) {
      out.textContent = button.dataset.bad; out.className = "bad";
    }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.verify");
    if (button) { check(button); }
  });
})();
