"""The console's in-browser Paillier (gateway/console/static/paillier.js) run by Node against
the SDK (`pdx_client.jobkeys`): the same fingerprint for the same n, and for encrypted
aggregates of every statistics operator, with and without DP (noisy negative counts, sums
beyond their clip, groups about the minimum cohort, histograms), the same decrypted and
post-processed output, or the same refusal. The browser test shows it in the page; this
one covers the layouts a single end-to-end run cannot reach."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pdx_client.jobkeys import ENCRYPTED_FORMAT, JobKey, JobKeyError, fingerprint_of

from sandbox._stats_query import StatsQuery
from sandbox.noise_shares import NoisePlan

STATIC = Path(__file__).resolve().parents[1] / "gateway" / "console" / "static"
DRIVER = r"""
const fs = require("fs");
globalThis.self = globalThis;
require(process.argv[2]);
const P = globalThis.PdxPaillier;
(async () => {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const out = {fingerprints: [], opened: []};
  for (const n of input.moduli) {
    out.fingerprints.push(await P.fingerprint("paillier", BigInt("0x" + n)));
  }
  const key = await P.keyOf(input.key);
  for (const text of input.results) {
    try { out.opened.push({ok: P.decrypt(P.parseJson(text), key)}); }
    catch (e) { out.opened.push({error: e.message}); }
  }
  if (input.generate) {
    const t0 = Date.now();
    const made = P.generate(input.generate);
    out.generated = {n: made.n.toString(16), p: made.p.toString(16), q: made.q.toString(16),
                     ms: Date.now() - t0};
  }
  process.stdout.write(JSON.stringify(out));
})();
"""
SLOT_BITS, HEADROOM, ADDENDS = 64, 8, 3


def _node() -> str:
    found = shutil.which("node") or shutil.which("nodejs")
    if found is None:
        pytest.skip("node is not installed (the browser test covers the page)")
    return found


def _run(tmp: Path, payload: dict[str, Any]) -> dict[str, Any]:
    driver = tmp / "driver.js"
    driver.write_text(DRIVER)
    done = subprocess.run(
        [_node(), str(driver), str(STATIC / "paillier.js")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def encrypted_aggregate(key: JobKey, query: StatsQuery, values: list[int], **facts: Any) -> str:
    """An encrypted aggregate as `sandbox.party_stats.encrypted_result` lays it out."""
    bias = 1 << (SLOT_BITS - HEADROOM - 1)
    per = (key.n.bit_length() - 1) // SLOT_BITS
    cts = []
    for at in range(0, len(values), per):
        m = sum(
            (v + ADDENDS * bias) << (j * SLOT_BITS) for j, v in enumerate(values[at : at + per])
        )
        cts.append(format(key._pk.raw_encrypt(m), "x"))
    doc = {
        "format": ENCRYPTED_FORMAT,
        "scheme": "paillier",
        "key_fingerprint": key.fingerprint,
        "operator": query.op,
        "columns": list(query.columns),
        "group_by": query.group_by,
        "groups": list(query.group_keys),
        "fields": list(query.fields()),
        "decimals": query.decimals,
        "clip": list(query.clip) if query.clip else None,
        "bin_edges": query.edges() if query.op == "stats.histogram" else None,
        "providers": 2,
        "packing": {"slot_bits": SLOT_BITS, "headroom_bits": HEADROOM},
        "length": len(values),
        "addends": ADDENDS,
        "ciphertexts": cts,
        **facts,
    }
    return json.dumps({"computation_id": "c", "output": doc, "digest": "sha256:00"})


def _cases(key: JobKey, rng: random.Random) -> list[str]:
    out = []
    for i in range(24):
        op = ("stats.count", "stats.sum", "stats.mean", "stats.variance", "stats.histogram")[i % 5]
        dp = i % 2 == 0
        grouped = i % 3 != 0
        params: dict[str, Any] = {"op": op, "columns": [] if op == "stats.count" else ["bp"]}
        if grouped:
            params |= {"group_by": "ward", "groups": ["A", "B", "C"]}
        if op == "stats.histogram":
            params |= {"bins": 4, "range": [80.0, 180.0]}
        if dp or i % 4 == 1:
            params["clip"] = [60.0, 240.5] if i % 3 else [-3.25, 10.0]
        query = StatsQuery.from_params(params)
        fields, groups = query.fields(), query.group_keys
        facts: dict[str, Any] = {"min_cohort": rng.choice([1, 10]), "dp": None, "noise": None}
        if dp:
            plan = NoisePlan.build(
                fields,
                clip=query.clip,
                epsilon=0.5,
                delta=0.0,
                mechanism="laplace",
                providers=2,
                per_partition=1 if op == "stats.histogram" else None,
            )
            facts |= {"dp": {"epsilon": 0.5, "delta": 0.0, "mechanism": "laplace"},
                      "noise": plan.params()}  # fmt: skip
        values = []
        for _ in groups:
            rows = rng.choice([rng.randrange(-3, 12), rng.randrange(5, 400)])
            for f in fields:
                kind = f.split(":", 1)[0]
                if kind in ("rows", "n", "bin"):
                    values.append(
                        rows + rng.randrange(-4, 5) if kind != "bin" else rng.randrange(-3, 40)
                    )
                else:  # a fixed-point sum, sometimes beyond what the clip allows
                    values.append(rng.randrange(-(10**12), 10**14))
        out.append(encrypted_aggregate(key, query, values, **facts))
    return out


def test_the_browser_opens_what_the_sdk_opens(tmp_path: Path) -> None:
    key = JobKey.generate()
    other = JobKey.generate()
    rng = random.Random(20)
    results = _cases(key, rng)
    results.append(encrypted_aggregate(other, StatsQuery.from_params({"op": "stats.count"}), [40]))
    bad = json.loads(results[0])
    bad["output"]["format"] = "something else"
    results.append(json.dumps(bad))
    secret = {"scheme": "paillier", "n": format(key.n, "x"),
              "p": format(key._sk.p, "x"), "q": format(key._sk.q, "x")}  # fmt: skip
    got = _run(tmp_path, {"moduli": [format(key.n, "x"), format(other.n, "x")],
                          "key": secret, "results": results})  # fmt: skip
    assert got["fingerprints"] == [key.fingerprint, other.fingerprint]
    opened = 0
    for text, js in zip(results, got["opened"], strict=True):
        try:
            want: dict[str, Any] = {"ok": json.loads(json.dumps(key.decrypt(json.loads(text))))}
        except JobKeyError as exc:
            want = {"error": exc.detail}
        assert js == want, (json.loads(text)["output"]["operator"], js, want)
        opened += "ok" in want
    assert opened >= 12  # most cases release something; the others are refused alike
    assert got["opened"][-2] == {"error": "the result was encrypted under another job key"}


def test_a_key_made_by_the_browser_code_is_a_valid_2048_bit_paillier_key(tmp_path: Path) -> None:
    made = _run(tmp_path, {"moduli": [], "key": {"p": "b", "q": "d"}, "results": [],
                           "generate": 2048})["generated"]  # fmt: skip
    n, p, q = (int(made[k], 16) for k in ("n", "p", "q"))
    assert n == p * q and n.bit_length() == 2048 and p != q
    assert p.bit_length() == q.bit_length() == 1024
    for prime in (p, q):  # Fermat in several bases: a composite would fail (almost surely)
        assert all(pow(a, prime - 1, prime) == 1 for a in (2, 3, 5, 7, 11, 13))
    # The SDK opens with it what it encrypts under it (phe arithmetic on the browser's key).
    import phe  # type: ignore[import-untyped]

    pk = phe.PaillierPublicKey(n)
    sk = phe.PaillierPrivateKey(pk, p, q)
    assert sk.decrypt(pk.encrypt(123456789)) == 123456789
    print(f"node generated a 2048-bit key in {made['ms']} ms")
    assert fingerprint_of("paillier", n).startswith("sha256:")
