// pdx console: the enterprise's Paillier job key, made and used in this browser (BigInt).
// The same arithmetic as sdk/pdx_client/jobkeys.py, so a result opened here equals what
// the SDK opens for the same ciphertext and key:
// - generate(bits): p and q of bits/2 bits each (top two bits set, so n = pq has exactly
//   `bits` bits), random odd starts from crypto.getRandomValues, a sieve of small primes,
//   then Miller-Rabin with ROUNDS random bases.
// - fingerprint(n): "sha256:" + WebCrypto SHA-256 over the canonical public key, the
//   compact sorted JSON {"n":"<lowercase hex>","scheme":"paillier"} (canonical_public).
// - open(doc, key): the "pdx-encrypted-aggregate/1" layout (JobKey._open: CRT decryption
//   as phe does it, slots unpacked, the addends' bias removed).
// - finish(doc, values): JobKey's _finish with exact fractions (noisy counts kept >= 0,
//   sums clamped to [lo*n, hi*n] of their noisy count, groups below the minimum cohort
//   suppressed on noisy counts, means and variances from the noisy sums); floats rounded
//   as Python's float(Fraction) does, exact decimals as _text gives them.
// Works in a window and in a worker (self.PdxPaillier). No eval, no network.
"use strict";
(function (root) {
  var MIN_BITS = 2048; // pdx_client.jobkeys.MIN_PAILLIER_BITS
  var ROUNDS = 40; // Miller-Rabin rounds for a candidate that passed the sieve
  var FORMAT = "pdx-encrypted-aggregate/1";
  var SCHEME = "paillier";

  function JobKeyError(message) {
    var e = new Error(message);
    e.name = "JobKeyError";
    return e;
  }

  // -- integers ---------------------------------------------------------------------------

  function bitLength(x) {
    if (x < 0n) { x = -x; }
    if (x === 0n) { return 0; }
    var h = x.toString(16);
    return (h.length - 1) * 4 + (32 - Math.clz32(parseInt(h[0], 16)));
  }

  function toHex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) { out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16); }
    return out;
  }

  function big(v, what) {
    if (typeof v === "bigint") { return v; }
    if (typeof v === "number" && Number.isSafeInteger(v)) { return BigInt(v); }
    if (typeof v === "string" && /^-?[0-9]+$/.test(v)) { return BigInt(v); }
    throw JobKeyError("malformed encrypted aggregate (" + what + ")");
  }

  function small(v, what) {
    var b = big(v, what);
    if (b < 0n || b > 1000000n) { throw JobKeyError("malformed encrypted aggregate (" + what + ")"); }
    return Number(b);
  }

  function modPow(b, e, m) { // fixed 4-bit window
    if (m === 1n) { return 0n; }
    b %= m;
    if (b < 0n) { b += m; }
    var table = [1n, b];
    for (var i = 2; i < 16; i++) { table.push(table[i - 1] * b % m); }
    var hex = e.toString(16), r = 1n;
    for (var j = 0; j < hex.length; j++) {
      if (j > 0) { r = r * r % m; r = r * r % m; r = r * r % m; r = r * r % m; }
      var d = parseInt(hex[j], 16);
      if (d) { r = r * table[d] % m; }
    }
    return r;
  }

  function modInv(a, m) {
    var r0 = ((a % m) + m) % m, r1 = m, s0 = 1n, s1 = 0n;
    while (r1 !== 0n) {
      var q = r0 / r1, t = r0 - q * r1;
      r0 = r1; r1 = t;
      t = s0 - q * s1; s0 = s1; s1 = t;
    }
    if (r0 !== 1n) { throw JobKeyError("not invertible"); }
    return ((s0 % m) + m) % m;
  }

  function randomBits(bits) { // uniform in [0, 2^bits)
    var bytes = new Uint8Array(Math.ceil(bits / 8));
    crypto.getRandomValues(bytes);
    bytes[0] &= 0xff >> (bytes.length * 8 - bits);
    return BigInt("0x0" + toHex(bytes));
  }

  function randomBelow(n) { // uniform in [0, n)
    var bits = bitLength(n);
    for (;;) {
      var x = randomBits(bits);
      if (x < n) { return x; }
    }
  }

  var SMALL = (function () { // odd primes below 2^14
    var limit = 16384, sieve = new Uint8Array(limit), out = [];
    for (var i = 3; i < limit; i += 2) {
      if (!sieve[i]) {
        out.push(i);
        for (var j = i * i; j < limit; j += 2 * i) { sieve[j] = 1; }
      }
    }
    return out;
  })();
  var SMALL_BIG = SMALL.map(function (p) { return BigInt(p); });

  function millerRabin(n, rounds) { // n odd, n > 3
    var d = n - 1n, s = 0;
    while ((d & 1n) === 0n) { d >>= 1n; s++; }
    for (var k = 0; k < rounds; k++) {
      var a = 2n + randomBelow(n - 3n); // [2, n - 2]
      var x = modPow(a, d, n);
      if (x === 1n || x === n - 1n) { continue; }
      var composite = true;
      for (var i = 1; i < s; i++) {
        x = x * x % n;
        if (x === n - 1n) { composite = false; break; }
      }
      if (composite) { return false; }
    }
    return true;
  }

  function randomPrime(bits) {
    var top = 3n << BigInt(bits - 2);
    for (;;) {
      var start = randomBits(bits) | top | 1n;
      var rest = SMALL_BIG.map(function (p) { return Number(start % p); });
      for (var delta = 0; delta < 65536; delta += 2) {
        var sieved = true;
        for (var i = 0; i < SMALL.length; i++) {
          if ((rest[i] + delta) % SMALL[i] === 0) { sieved = false; break; }
        }
        if (!sieved) { continue; }
        var c = start + BigInt(delta);
        if (bitLength(c) !== bits) { break; }
        if (millerRabin(c, ROUNDS)) { return c; }
      }
    }
  }

  function generate(bits) {
    bits = bits || MIN_BITS;
    if (bits < MIN_BITS || bits % 2 !== 0) {
      throw JobKeyError("a Paillier job key needs an even number of bits, at least " + MIN_BITS);
    }
    for (;;) {
      var p = randomPrime(bits / 2), q = randomPrime(bits / 2);
      if (p === q) { continue; }
      var n = p * q;
      if (bitLength(n) === bits) { return { n: n, p: p, q: q }; }
    }
  }

  // -- the public key's fingerprint (pdx_client.jobkeys.canonical_public / fingerprint_of) ---

  function canonical(scheme, n) {
    return '{"n":"' + n.toString(16) + '","scheme":"' + scheme + '"}';
  }

  async function fingerprint(scheme, n) {
    var bytes = new TextEncoder().encode(canonical(scheme, n));
    return "sha256:" + toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
  }

  // -- decryption (phe's raw_decrypt with the CRT) -------------------------------------------

  function privateKey(p, q) {
    var n = p * q, g = n + 1n;
    function h(x, xsq) { return modInv((modPow(g, x - 1n, xsq) - 1n) / x, x); }
    var psq = p * p, qsq = q * q;
    return { n: n, p: p, q: q, psq: psq, qsq: qsq, hp: h(p, psq), hq: h(q, qsq), pInv: modInv(p, q) };
  }

  function rawDecrypt(k, c) {
    var mp = (modPow(c, k.p - 1n, k.psq) - 1n) / k.p * k.hp % k.p;
    var mq = (modPow(c, k.q - 1n, k.qsq) - 1n) / k.q * k.hq % k.q;
    var u = (((mq - mp) % k.q) + k.q) % k.q * k.pInv % k.q;
    return mp + u * k.p;
  }

  function open(result, key) {
    var doc = (result && result.output !== undefined) ? result.output : result;
    if (!doc || typeof doc !== "object" || doc.format !== FORMAT) {
      throw JobKeyError("the result is not an encrypted pdx aggregate");
    }
    if (doc.key_fingerprint !== key.fingerprint) {
      throw JobKeyError("the result was encrypted under another job key");
    }
    var packing = doc.packing || {};
    var slotBits = small(packing.slot_bits, "slot_bits"), headroom = small(packing.headroom_bits, "headroom");
    var length = small(doc.length, "length"), addends = big(doc.addends, "addends");
    if (!Array.isArray(doc.ciphertexts) || slotBits < 2 || headroom >= slotBits - 1) {
      throw JobKeyError("malformed encrypted aggregate");
    }
    var k = key.secret, n2 = k.n * k.n;
    var cts = doc.ciphertexts.map(function (h) {
      if (typeof h !== "string" || !/^[0-9a-fA-F]+$/.test(h)) { throw JobKeyError("malformed encrypted aggregate"); }
      return BigInt("0x" + h);
    });
    if (!cts.length || cts.some(function (c) { return !(c > 0n && c < n2); })) {
      throw JobKeyError("malformed encrypted aggregate");
    }
    var bias = 1n << BigInt(slotBits - headroom - 1), shift = BigInt(slotBits);
    var per = Math.floor((bitLength(k.n) - 1) / slotBits), mask = (1n << shift) - 1n;
    var out = [];
    for (var i = 0; i < cts.length; i++) {
      var m = rawDecrypt(k, cts[i]);
      for (var j = 0; j < per && out.length < length; j++) {
        out.push((m & mask) - addends * bias);
        m >>= shift;
      }
    }
    if (out.length !== length) { throw JobKeyError("encrypted aggregate is shorter than its layout"); }
    return out;
  }

  // -- exact fractions [numerator, denominator > 0], reduced ----------------------------------

  function gcd(a, b) {
    if (a < 0n) { a = -a; }
    while (b !== 0n) { var t = a % b; a = b; b = t; }
    return a;
  }
  function F(a, b) {
    if (b === undefined) { b = 1n; }
    if (b === 0n) { throw JobKeyError("division by zero"); }
    if (b < 0n) { a = -a; b = -b; }
    var g = gcd(a, b);
    return g > 1n ? [a / g, b / g] : [a, b];
  }
  function add(x, y) { return F(x[0] * y[1] + y[0] * x[1], x[1] * y[1]); }
  function sub(x, y) { return F(x[0] * y[1] - y[0] * x[1], x[1] * y[1]); }
  function mul(x, y) { return F(x[0] * y[0], x[1] * y[1]); }
  function div(x, y) { return F(x[0] * y[1], x[1] * y[0]); }
  function cmp(x, y) { var d = x[0] * y[1] - y[0] * x[1]; return d < 0n ? -1 : d > 0n ? 1 : 0; }
  function fmax(x, y) { return cmp(x, y) >= 0 ? x : y; }
  function fmin(x, y) { return cmp(x, y) <= 0 ? x : y; }
  var ZERO = F(0n), ONE = F(1n);

  function ofNumber(x) { // Fraction(float): the double's exact value
    if (!Number.isFinite(x)) { throw JobKeyError("not a finite number"); }
    if (Number.isInteger(x)) { return F(BigInt(x)); }
    var view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, x);
    var hi = view.getUint32(0), lo = view.getUint32(4);
    var exp = (hi >>> 20) & 0x7ff, mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
    if (exp === 0) { exp = 1; } else { mant |= 1n << 52n; }
    if (hi >>> 31) { mant = -mant; }
    var e = exp - 1075;
    return e >= 0 ? F(mant << BigInt(e)) : F(mant, 1n << BigInt(-e));
  }

  function toNumber(x) { // float(Fraction): correctly rounded, ties to even
    var a = x[0], b = x[1];
    if (a === 0n) { return 0; }
    var neg = a < 0n;
    if (neg) { a = -a; }
    var shift = 55 - (bitLength(a) - bitLength(b));
    var num = shift >= 0 ? a << BigInt(shift) : a, den = shift >= 0 ? b : b << BigInt(-shift);
    var q = num / den, rem = num % den;
    var extra = bitLength(q) - 53;
    var low = q & ((1n << BigInt(extra)) - 1n), half = 1n << BigInt(extra - 1);
    q >>= BigInt(extra);
    if (low > half || (low === half && (rem !== 0n || (q & 1n) === 1n))) { q += 1n; }
    var e = extra - shift, v = Number(q);
    while (e > 1000) { v *= Math.pow(2, 1000); e -= 1000; }
    while (e < -1000) { v *= Math.pow(2, -1000); e += 1000; }
    v *= Math.pow(2, e);
    return neg ? -v : v;
  }

  function text(x) { // jobkeys._text: an integer, an exact decimal, or "n/d"
    var a = x[0], b = x[1];
    if (b === 1n) { return a.toString(); }
    var d = b, twos = 0, fives = 0;
    while (d % 2n === 0n) { d /= 2n; twos++; }
    while (d % 5n === 0n) { d /= 5n; fives++; }
    if (d !== 1n) { return a.toString() + "/" + b.toString(); }
    var k = Math.max(twos, fives), neg = a < 0n;
    var s = ((neg ? -a : a) * 10n ** BigInt(k) / b).toString().padStart(k + 1, "0");
    return (neg ? "-" : "") + s.slice(0, s.length - k) + "." + s.slice(s.length - k);
  }

  // -- post-processing (jobkeys._finish and _group) -------------------------------------------

  function fieldsOf(names) {
    return names.map(function (name) {
      var at = name.indexOf(":");
      var kind = at < 0 ? name : name.slice(0, at), column = at < 0 ? "" : name.slice(at + 1);
      if (kind === "rows" || kind === "n" || kind === "bin") {
        return { name: name, kind: "count", column: column || null };
      }
      if (kind === "sum" || kind === "sumsq") { return { name: name, kind: kind, column: column }; }
      throw JobKeyError("unknown field " + JSON.stringify(name) + " in the layout");
    });
  }

  function unitsOf(doc, names) {
    var d = doc.decimals === undefined ? 6 : small(doc.decimals, "decimals");
    var plan = doc.noise || {};
    if (plan.units !== undefined && plan.units !== null) {
      return plan.units.map(function (u) { return F(big(u[0], "unit"), big(u[1], "unit")); });
    }
    return fieldsOf(names).map(function (f) {
      var power = f.kind === "sum" ? 1 : f.kind === "sumsq" ? 2 : 0;
      return F(1n, 10n ** BigInt(d * power));
    });
  }

  function boundsOf(clip, kind) {
    if (clip === null || clip === undefined) { return null; }
    var lo = ofNumber(clip[0]), hi = ofNumber(clip[1]);
    if (kind === "sum") { return [lo, hi]; }
    var lo2 = mul(lo, lo), hi2 = mul(hi, hi);
    var inside = cmp(lo, ZERO) <= 0 && cmp(ZERO, hi) <= 0;
    return [inside ? ZERO : fmin(lo2, hi2), fmax(lo2, hi2)];
  }

  function finish(doc, values) {
    var names = doc.fields.map(String), groups = doc.groups.map(String);
    var fields = fieldsOf(names), units = unitsOf(doc, names), width = names.length;
    if (values.length !== width * groups.length) { throw JobKeyError("aggregate does not match its layout"); }
    var dp = doc.dp === undefined ? null : doc.dp;
    var dpOn = dp !== null && typeof dp === "object" && Object.keys(dp).length > 0;
    var minCohort = F(doc.min_cohort === undefined ? 1n : big(doc.min_cohort, "min_cohort"));
    var clip = doc.clip === undefined ? null : doc.clip;
    var hist = doc.operator === "stats.histogram";
    var rows = [];
    for (var gi = 0; gi < groups.length; gi++) {
      var vals = new Map();
      fields.forEach(function (f, fi) {
        var v = mul(units[fi], F(values[gi * width + fi]));
        vals.set(f.name, f.kind === "count" ? fmax(v, ZERO) : v);
      });
      fields.forEach(function (f) {
        var b = f.kind !== "count" ? boundsOf(clip, f.kind) : null;
        if (b !== null && f.column !== null) {
          var n = vals.get("n:" + f.column);
          vals.set(f.name, fmin(fmax(vals.get(f.name), mul(b[0], n)), mul(b[1], n)));
        }
      });
      rows.push(vals);
    }
    var total = ZERO;
    rows.forEach(function (r) {
      if (hist) { r.forEach(function (v) { total = add(total, v); }); } else { total = add(total, r.get("rows")); }
    });
    if (cmp(total, minCohort) < 0) {
      throw JobKeyError("the aggregate covers fewer records than the minimum cohort (" + text(minCohort) + ")");
    }
    var outGroups = [], suppressed = [], exact = dp === null;
    groups.forEach(function (g, gi) {
      var vals = rows[gi];
      if (hist) {
        var cells = [], keys = [];
        vals.forEach(function (v, k) {
          keys.push(k);
          cells.push(cmp(v, minCohort) < 0 && (dpOn || cmp(v, ZERO) !== 0) ? null : toNumber(v));
        });
        cells.forEach(function (c, i) { if (c === null) { suppressed.push(g + "|" + keys[i]); } });
        if (cells.every(function (c) { return c === null; })) { return; }
        var count = 0;
        cells.forEach(function (c) { if (c !== null) { count += c; } });
        outGroups.push({ group: g, rows: count, values: {}, histogram: cells });
        return;
      }
      if (cmp(vals.get("rows"), minCohort) < 0) { suppressed.push(g); return; }
      outGroups.push(groupOf(doc, g, vals, exact));
    });
    if (!outGroups.length) { throw JobKeyError("every group is below the minimum cohort"); }
    return {
      operator: doc.operator,
      columns: (doc.columns || []).slice(),
      group_by: doc.group_by === undefined ? null : doc.group_by,
      groups: outGroups,
      bin_edges: doc.bin_edges === undefined ? null : doc.bin_edges,
      dp_epsilon: dp ? (dp.epsilon === undefined ? null : dp.epsilon) : null,
      suppressed: suppressed,
      decrypted_by: "requester",
    };
  }

  function groupOf(doc, g, vals, exact) {
    var op = doc.operator, result = [];
    if (op === "stats.count") { result.push(["count", vals.get("rows")]); }
    var columns = op === "stats.count" ? [] : (doc.columns || []);
    columns.forEach(function (c) {
      var n = vals.get("n:" + c), s = vals.get("sum:" + c);
      result.push(["count(" + c + ")", n]);
      if (op === "stats.sum") { result.push(["sum(" + c + ")", s]); return; }
      result.push(["mean(" + c + ")", cmp(n, ZERO) > 0 ? div(s, n) : null]);
      if (op === "stats.variance") {
        var q = vals.get("sumsq:" + c);
        var v = cmp(n, ONE) > 0 ? div(sub(q, div(mul(s, s), n)), sub(n, ONE)) : null;
        if (v !== null && doc.clip !== null && doc.clip !== undefined) {
          var w = sub(ofNumber(doc.clip[1]), ofNumber(doc.clip[0]));
          v = fmin(v, div(mul(div(mul(w, w), F(4n)), n), sub(n, ONE)));
        }
        result.push(["variance(" + c + ")", v !== null ? fmax(v, ZERO) : null]);
      }
    });
    var values = {}, texts = {};
    result.forEach(function (kv) {
      var v = kv[1];
      values[kv[0]] = v !== null ? toNumber(v) : null;
      if (exact && v !== null && Number.isFinite(values[kv[0]])) { texts[kv[0]] = text(v); }
    });
    return { group: g, rows: toNumber(vals.get("rows")), values: values, exact: texts };
  }

  // -- the key as this browser keeps it -------------------------------------------------------

  async function keyOf(record) { // {scheme, n, p, q (hex), fingerprint} -> usable key
    var p = BigInt("0x" + record.p), q = BigInt("0x" + record.q), n = p * q;
    if (record.n !== undefined && BigInt("0x" + record.n) !== n) { throw JobKeyError("the stored key is inconsistent"); }
    var fp = await fingerprint(record.scheme || SCHEME, n);
    return { fingerprint: fp, secret: privateKey(p, q) };
  }

  // Parse a result body keeping integers beyond 2^53 exact where the browser allows it.
  function parseJson(textBody) {
    return JSON.parse(textBody, function (k, v, context) {
      if (typeof v === "number" && Number.isInteger(v) && !Number.isSafeInteger(v)) {
        if (context && typeof context.source === "string") { return BigInt(context.source); }
        throw JobKeyError("an integer in the result is too large to read exactly here");
      }
      return v;
    });
  }

  root.PdxPaillier = {
    MIN_BITS: MIN_BITS,
    ROUNDS: ROUNDS,
    FORMAT: FORMAT,
    SCHEME: SCHEME,
    bitLength: bitLength,
    modPow: modPow,
    millerRabin: millerRabin,
    generate: generate,
    canonical: canonical,
    fingerprint: fingerprint,
    keyOf: keyOf,
    open: open,
    finish: finish,
    decrypt: function (result, key) {
      var doc = (result && result.output !== undefined) ? result.output : result;
      return finish(doc, open(result, key));
    },
    parseJson: parseJson,
  };
})(typeof self !== "undefined" ? self : this);
