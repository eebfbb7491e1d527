"""Issue 11, the token endpoint under a credential flood: budgets hold under concurrency.

Through a real `pdx run` (real sockets, so each source address has its own budgets):
guesses sent at once from one address must not run more secret checks than the
address's failure budget allows, and a flood naming a new made-up client id in every
request must not write an audit row per request (each such write took the database's
write lock from the legitimate client's login).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from tests.helpers.s13_token_flood import (
    FloodServer,
    at_once,
    burst_count,
    flood_server,
    token,
)

__all__ = ["flood_server"]  # the fixture, imported for pytest


def test_guesses_sent_at_once_run_no_more_secret_checks_than_the_failure_budget(
    flood_server: Callable[..., FloodServer],
) -> None:
    """The budget was checked before the (slow) check and counted after it: 24 guesses
    sent together all passed the check, and all 24 ran scrypt against a budget of 3."""
    server = flood_server(PDX_AUTH_FAILURE_BURST="3", PDX_AUTH_FAILURES_PER_MIN="1")
    victim = server.creds("enterprise-fintech")

    def guess(i: int) -> int:
        with server.client("127.0.0.6") as c:
            return token(c, victim["client_id"], f"guess-{i}").status_code

    codes = at_once(24, guess)
    # Only the budget's 3 guesses were checked (401); the rest were refused first (429).
    assert sorted(codes) == [401] * 3 + [429] * 21, codes
    # Counted in the audit as well: the refused checks and the rate-limited requests.
    denied = server.audit_rows("event_type = 'auth.token_denied'")
    assert len(denied) == 1 and denied[0]["subject_ip"] == "127.0.0.6"
    limited = server.audit_rows("event_type = 'auth.rate_limited'")
    assert len(limited) == 1 and limited[0]["object_id"] == victim["client_id"]
    # The victim's right secret still works from another address, and its own
    # success gives its slot back: its budget there is whole.
    with server.client("127.0.0.7") as c:
        for _ in range(5):
            r = token(c, victim["client_id"], victim["client_secret"])
            assert r.status_code == 200, r.text
        assert token(c, victim["client_id"], "wrong").status_code == 401
    # Once stopped, the open windows are written: every refusal is in the audit.
    server.stop()
    bursts = server.audit_rows("event_type = 'auth.failure_burst'")
    by_event = {
        event: sum(burst_count(b["detail"]) for b in bursts if f"event={event}" in b["detail"])
        for event in ("auth.token_denied", "auth.rate_limited")
    }
    assert by_event == {"auth.token_denied": 2, "auth.rate_limited": 20}, by_event


def test_a_flood_of_made_up_client_ids_writes_a_bounded_number_of_audit_rows(
    flood_server: Callable[..., FloodServer],
) -> None:
    """Each made-up id opened its own burst window, so each request wrote a row."""
    server = flood_server(
        PDX_AUTH_FAILURE_BURST="5", PDX_AUTH_FAILURES_PER_MIN="1", PDX_AUTH_TARPIT_MS="0"
    )
    sent = 150
    with server.client("127.0.0.8") as c:
        codes = [token(c, f"pdx-{uuid.uuid4().hex[:16]}", "guess").status_code for _ in range(sent)]
    assert codes == [401] * 5 + [429] * (sent - 5), codes
    rows = server.audit_rows("subject_ip = '127.0.0.8'")
    # At most 8 subjects recorded one by one per event type, then one folded window.
    assert len(rows) <= 2 * (8 + 1), len(rows)
    assert {r["event_type"] for r in rows} == {"auth.token_denied", "auth.rate_limited"}
    server.stop()
    rows = server.audit_rows("subject_ip = '127.0.0.8'")
    bursts = [r for r in rows if r["event_type"] == "auth.failure_burst"]
    singles = [r for r in rows if r["event_type"] != "auth.failure_burst"]
    # Nothing is lost: the single records and the burst counts add up to every request.
    assert len(singles) + sum(burst_count(b["detail"]) for b in bursts) == sent
    folded = [b for b in bursts if "folded=" in b["detail"]]
    assert folded and all(b["subject_id"] is None for b in folded)


def test_a_client_elsewhere_is_checked_while_a_flood_waits_for_its_own_check_slots(
    flood_server: Callable[..., FloodServer],
) -> None:
    """Every admitted guess ran its scrypt check at once on the shared thread pool, so a
    login from elsewhere shared the CPU with all of them and finished with the last."""
    # A failure budget big enough that all the guesses are checked (none refused first).
    server = flood_server(PDX_AUTH_FAILURE_BURST="60")
    victim = server.creds("enterprise-fintech")
    guesses = 24
    done: list[str] = []  # completion order: "flood" or "legit"
    first_answer = threading.Event()

    def guess(i: int) -> int:
        with server.client("127.0.0.9") as c:
            status = token(c, victim["client_id"], f"guess-{i}").status_code
        done.append("flood")
        first_answer.set()
        return status

    def legit() -> None:
        # Once the first guess is answered, the others are in the server, waiting.
        assert first_answer.wait(timeout=120)
        with server.client("127.0.0.10") as c:
            r = token(c, victim["client_id"], victim["client_secret"])
        assert r.status_code == 200, r.text
        done.append("legit")

    legit_thread = threading.Thread(target=legit)
    legit_thread.start()
    codes = at_once(guesses, guess)
    legit_thread.join(timeout=120)
    assert codes == [401] * guesses, codes  # every guess was checked, and refused
    assert "legit" in done, done
    # The flood checks two at a time from its address, so most guesses were still
    # waiting when the login from elsewhere completed (before: at most a few).
    assert done[done.index("legit") + 1 :].count("flood") >= guesses // 3, done
    # And every one of the guesses is in the audit.
    server.stop()
    rows = server.audit_rows("subject_ip = '127.0.0.9'")
    singles = [r for r in rows if r["event_type"] == "auth.token_denied"]
    bursts = [r for r in rows if r["event_type"] == "auth.failure_burst"]
    assert len(singles) + sum(burst_count(b["detail"]) for b in bursts) == guesses


def test_refusals_over_the_budget_are_answered_late_and_a_client_elsewhere_at_once(
    flood_server: Callable[..., FloodServer],
) -> None:
    """A flooder over its budget was refused in milliseconds, so 12 users that wait for
    their answers still drove ~780 refusals a second through the event loop."""
    server = flood_server(
        PDX_AUTH_FAILURE_BURST="2", PDX_AUTH_FAILURES_PER_MIN="1", PDX_AUTH_TARPIT_MS="600"
    )
    victim = server.creds("enterprise-fintech")
    with server.client("127.0.0.11") as c:
        assert [token(c, victim["client_id"], "wrong").status_code for _ in range(2)] == [401] * 2
        for _ in range(3):
            started = time.monotonic()
            r = token(c, victim["client_id"], "wrong")
            elapsed = time.monotonic() - started
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert elapsed >= 0.6, elapsed  # held back, not answered at once
    # Only refusals wait: the victim's own login from elsewhere is not held back.
    with server.client("127.0.0.12") as c:
        assert token(c, victim["client_id"], victim["client_secret"]).status_code == 200


def test_person_logins_sent_at_once_run_no_more_checks_than_the_failure_budget(
    flood_server: Callable[..., FloodServer],
) -> None:
    """The person grant had the same check-then-count race as client credentials."""
    server = flood_server(PDX_AUTH_FAILURE_BURST="3", PDX_AUTH_FAILURES_PER_MIN="1")

    def guess(i: int) -> int:
        with server.client("127.0.0.13") as c:
            form = {
                "grant_type": "urn:pdx:params:oauth:grant-type:person",
                "username": "someone",
                "password": f"guess-{i}",
                "totp": "123456",
            }
            return c.post("/v1/auth/token", data=form).status_code

    codes = at_once(16, guess)
    assert sorted(codes) == [400] * 3 + [429] * 13, codes


def test_passkey_sign_in_options_sent_at_once_run_no_more_checks_than_the_budget(
    flood_server: Callable[..., FloodServer],
) -> None:
    """The passkey challenge checks the password first: the same race, the same budget."""
    server = flood_server(PDX_AUTH_FAILURE_BURST="3", PDX_AUTH_FAILURES_PER_MIN="1")

    def guess(i: int) -> int:
        with server.client("127.0.0.14") as c:
            body = {"username": "someone", "password": f"guess-{i}"}
            return c.post("/v1/auth/passkey-options", json=body).status_code

    codes = at_once(16, guess)
    assert sorted(codes) == [400] * 3 + [429] * 13, codes
