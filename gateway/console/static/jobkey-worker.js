// pdx console: make a Paillier job key off the page's thread (paillier.js does the work).
"use strict";
importScripts("paillier.js");
self.onmessage = function (event) {
  var started = Date.now();
  try {
    var key = self.PdxPaillier.generate(event.data && event.data.bits);
    self.postMessage({
      n: key.n.toString(16),
      p: key.p.toString(16),
      q: key.q.toString(16),
      bits: self.PdxPaillier.bitLength(key.n),
      ms: Date.now() - started,
    });
  } catch (err) {
    self.postMessage({ error: String((err && err.message) || err) });
  }
};
