"""The requester of `fl.logreg` with sealed models, as its own process, and a relay that cheats.

`sealed_requester_script()` is `tests.helpers.i15_keys.REQUESTER`'s set-up (no server
package importable) followed by one job per body in REQUEST_BODIES, each under a fresh
key, its rounds closed by `pdx_client.fl.drive` with the providers' party keys pinned
(`PDX_TRUSTED_PARTIES`). It records every plaintext message the SDK sealed, every body it
posted and every round document it fetched. A body may carry `_attack`: the requester's
HTTP layer then does to the first step what a platform would do to what it relays:

* `alter`: flips one bit of node 0's sealed model;
* `substitute_model`: replaces node 0's sealed model by one the "platform" sealed to
  node 0's relayed public key under an X25519 key of its own and a guessed challenge;
* `substitute_key`: replaces node 1's relayed mask key by a key of the "platform's" own
  before the SDK sees it (the SDK must refuse to seal for it).
"""

from __future__ import annotations

from tests.helpers.i15_keys import REQUESTER


def sealed_requester_script() -> str:
    preamble = REQUESTER.split("url, token =", 1)[0]
    return preamble + _BODY


_BODY = r"""
import base64
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, PublicFormat)
import pdx_client.flseal as flseal
from pdx_client.errors import ApiError
from pdx_client.fl import drive

url, token = os.environ["PDX_URL"], os.environ["PDX_TOKEN"]
out = os.environ["REQUESTER_OUT"]
headers = {"Authorization": f"Bearer {token}"}
assert os.environ.get("PDX_TRUSTED_PARTIES")

models = []
_seal = flseal.Sealer.seal


def recording_seal(self, round_, message, own):
    models.append(json.loads(json.dumps(message)))
    return _seal(self, round_, message, own)


flseal.Sealer.seal = recording_seal


def raw(private):
    return private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


class Http:
    def __init__(self, attack):
        self.attack, self.posts, self.steps, self.fetched = attack, [], [], []
        self.node0 = None

    def _json(self, r):
        if r.status_code >= 400:
            raise ApiError(r.text[:300], status=r.status_code)
        return r.json()

    def get(self, path, **params):
        body = self._json(httpx.get(url + path, headers=headers, params=params, timeout=120))
        if path.endswith("/fl-round") and not body["posted"]:
            self.fetched.append(json.loads(json.dumps(body)))
            doc = body["aggregate"]
            if doc["step"] == 0:
                self.node0 = doc["seal"]["nodes"][0]
                if self.attack == "substitute_key":
                    mine = X25519PrivateKey.generate().public_key()
                    pub = mine.public_bytes(Encoding.Raw, PublicFormat.Raw)
                    doc["seal"]["nodes"][1]["public"] = pub.hex()
            self.steps.append(doc)
        return body

    def post(self, path, json=None, **kw):
        sealed = (json or {}).get("sealed")
        first = sealed is not None and path.endswith("/fl-round/0")
        if first and self.attack == "alter":
            blob = bytearray(base64.b64decode(sealed["nodes"][0]))
            blob[7] ^= 1
            sealed["nodes"][0] = base64.b64encode(bytes(blob)).decode()
        if first and self.attack == "substitute_model":
            mine = X25519PrivateKey.generate()
            job_id, fp = self.job_id, self.fingerprint
            key = flseal.model_key(raw(mine), bytes.fromhex(self.node0["public"]), bytes(32),
                                   f"{job_id}:{fp}:0".encode())
            forged = {"weights": [5.0, -5.0, 5.0], "standardisation": {"n_total": 1.0,
                      "mean": [0.0, 0.0], "scale": [1.0, 1.0]}}
            body = AESGCM(key).encrypt(bytes(12), globals()["json"].dumps(forged).encode(),
                                       f"pdx:fl:model:{job_id}:0:0".encode())
            sealed["requester_key"] = mine.public_key().public_bytes(
                Encoding.Raw, PublicFormat.Raw).hex()
            sealed["nodes"][0] = base64.b64encode(body).decode()
        self.posts.append(json)
        return self._json(httpx.post(url + path, headers=headers, json=json, timeout=120))


facts = []
keys = []
for body in json.loads(os.environ["REQUEST_BODIES"]):
    attack = body.pop("_attack", None)
    key = JobKey.generate()
    keys.append(key)
    body["job_key"] = key.public()
    r = httpx.post(url + "/v1/computations", headers=headers, json=body, timeout=60)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    print("ID", comp_id, flush=True)
    http = Http(attack)
    http.job_id, http.fingerprint = comp_id, key.fingerprint
    models.clear()
    refused = None
    trainer = None
    try:
        trainer = drive(http, comp_id, key, timeout=600)
    except flseal.NodeKeyUnverified as exc:
        refused = str(exc)
    deadline = time.monotonic() + 600
    while True:
        state = http.get(f"/v1/computations/{comp_id}")
        if state["state"] in ("released", "failed", "rejected"):
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    fact = {"id": comp_id, "attack": attack, "state": state["state"], "error": state.get("error"),
            "refused": refused, "p": str(key._sk.p), "q": str(key._sk.q), "n": str(key.n),
            "models": list(models), "posts": http.posts, "fetched": http.fetched,
            "verified": trainer.verified if trainer is not None else None}
    if attack is None:
        assert state["state"] == "released", state
        result = http.get(f"/v1/computations/{comp_id}/result")
        fact["result"] = result
        fact["model"] = key.decrypt(result)
        fact["history"] = trainer.history
        fact["sums"] = [key.open_vector(doc) for doc in http.steps]
        fact["final_sum"] = key.open_vector(result["output"]["final"])
    facts.append(fact)
with open(os.path.join(out, "requester.json"), "w") as f:
    json.dump(facts, f)
print("DONE", flush=True)
sys.stdin.read()  # stay alive (holding the keys) until the test has dumped this process
"""
