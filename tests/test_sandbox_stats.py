"""HE statistics over three providers' CSV files, end to end through the sandbox."""

from __future__ import annotations

import json
import random
import statistics
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import phe  # type: ignore[import-untyped]
import pytest

from sandbox import errors
from sandbox.coordinator import SECURITY_MODEL, Coordinator, Envelope
from sandbox.operators import ProviderInput
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from sandbox.stats import MAX_GROUPS, StatsJob, StatsQuery, partial_vector, run_stats

ZONES = ("north", "south", "east")


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> list[ProviderInput]:
    root = tmp_path_factory.mktemp("providers")
    rng = random.Random(5)
    out = []
    for i, rows in enumerate((120, 90, 150)):
        lines = ["trip_id,fare,zone,minutes"]
        for j in range(rows):
            fare = Decimal(rng.randrange(-500, 250_000)) / 100  # includes negatives
            zone = rng.choice(ZONES + ("west",))
            minutes = "" if j % 17 == 0 else str(rng.randrange(1, 90))  # some missing
            lines.append(f"{i}-{j},{fare},{zone},{minutes}")
        path = root / f"p{i}.csv"
        path.write_text("\n".join(lines) + "\n")
        out.append(ProviderInput(f"provider-{i}", f"dataset-{i}", path))
    return out


def _column(providers: list[ProviderInput], name: str, zone: str | None = None) -> list[Fraction]:
    values = []
    for p in providers:
        lines = p.path.read_text().splitlines()
        header = lines[0].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=True))
            if row[name] and (zone is None or row["zone"] == zone):
                values.append(Fraction(Decimal(row[name])))
    return values


def _run(query: StatsQuery, providers: list[ProviderInput], **obligations: Any) -> Any:
    gate = ReleaseGate(InMemoryPrivacyBudget(), rng=np.random.default_rng(0))
    release = run_stats(query, providers, gate=gate, obligations=ReleaseObligations(**obligations))
    return release.value()


def test_count_sum_mean_variance_are_exact(providers: list[ProviderInput]) -> None:
    fares = _column(providers, "fare")
    minutes = _column(providers, "minutes")
    count = _run(StatsQuery("stats.count"), providers).group()
    assert count.exact["count"] == "360"
    total = _run(StatsQuery("stats.sum", ("fare", "minutes")), providers).group()
    assert Fraction(total.exact["sum(fare)"]) == sum(fares)
    assert Fraction(total.exact["sum(minutes)"]) == sum(minutes)
    assert total.exact["count(minutes)"] == str(len(minutes)) != "360"
    mean = _run(StatsQuery("stats.mean", ("fare",)), providers).group()
    assert Fraction(mean.exact["mean(fare)"]) == sum(fares) / len(fares)
    var = _run(StatsQuery("stats.variance", ("fare",)), providers).group()
    assert Fraction(var.exact["variance(fare)"]) == statistics.variance(fares)
    assert var.values["variance(fare)"] == pytest.approx(float(statistics.variance(fares)))


def test_group_by_declared_low_cardinality_column(providers: list[ProviderInput]) -> None:
    q = StatsQuery("stats.mean", ("fare",), group_by="zone", groups=ZONES)
    result = _run(q, providers)
    assert [g.group for g in result.groups] == [*ZONES, "__other__"]
    for zone in ZONES:
        fares = _column(providers, "fare", zone)
        g = result.group(zone)
        assert Fraction(g.exact["mean(fare)"]) == sum(fares) / len(fares)
    assert result.group("__other__").rows == len(_column(providers, "fare", "west"))


def test_small_groups_are_suppressed(providers: list[ProviderInput]) -> None:
    q = StatsQuery("stats.count", group_by="zone", groups=ZONES)
    result = _run(q, providers, min_cohort=95)
    kept = {g.group for g in result.groups}
    counts = {z: len(_column(providers, "fare", z)) for z in (*ZONES, "west")}
    assert kept == {z for z, n in counts.items() if n >= 95} | (
        {"__other__"} if counts["west"] >= 95 else set()
    ) - {"west"}
    assert set(result.suppressed) | kept == {*ZONES, "__other__"}


def test_high_cardinality_group_column_is_refused(providers: list[ProviderInput]) -> None:
    q = StatsQuery("stats.count", group_by="trip_id", groups=("0-1",))
    with pytest.raises(errors.GroupCardinalityExceeded):
        _run(q, providers)
    with pytest.raises(errors.GroupCardinalityExceeded):
        StatsQuery(
            "stats.count", group_by="zone", groups=tuple(str(i) for i in range(MAX_GROUPS + 1))
        )


def test_histogram_matches_numpy(providers: list[ProviderInput]) -> None:
    fares = np.array([float(f) for f in _column(providers, "fare")])
    q = StatsQuery("stats.histogram", ("fare",), bins=8, range=(0.0, 2000.0))
    result = _run(q, providers, min_cohort=1)
    assert result.bin_edges == tuple(np.linspace(0, 2000, 9))
    counts, _ = np.histogram(fares, bins=8, range=(0, 2000))
    expected = (int(np.sum(fares < 0)), *counts.tolist(), int(np.sum(fares > 2000)))
    assert result.group().histogram == expected
    assert result.tolerance == 0.0  # CKKS counts are rounded: exact


def test_ckks_scheme_sum_within_tolerance(providers: list[ProviderInput]) -> None:
    fares = _column(providers, "fare")
    result = _run(StatsQuery("stats.sum", ("fare",), scheme="ckks"), providers)
    g = result.group()
    assert g.exact == {}  # approximate: no exact text
    assert abs(g.values["sum(fare)"] - float(sum(fares))) <= result.tolerance + 1e-9 * abs(
        float(sum(fares))
    )
    assert g.values["count(fare)"] == len(fares)


def test_bad_queries_are_refused(providers: list[ProviderInput]) -> None:
    with pytest.raises(errors.InvalidParameters):
        StatsQuery("stats.histogram", ("fare",))
    with pytest.raises(errors.InvalidParameters):
        StatsQuery("stats.sum")
    with pytest.raises(errors.InvalidParameters):
        StatsQuery("stats.mean", ("fare",), group_by="zone")  # groups must be declared
    with pytest.raises(errors.InvalidParameters) as info:
        _run(StatsQuery("stats.sum", ("no_such_column",)), providers)
    assert info.value.code == "sandbox-invalid-parameters"
    with pytest.raises(errors.InvalidParameters):
        _run(StatsQuery("stats.sum", ("zone",)), providers)  # not numeric


def test_cohort_checked_on_the_aggregate_only(providers: list[ProviderInput]) -> None:
    # Every provider is below 200 rows, the total (360) is not: released.
    assert _run(StatsQuery("stats.count"), providers, min_cohort=200).group().rows == 360
    with pytest.raises(errors.CohortTooSmall):
        _run(StatsQuery("stats.count"), providers, min_cohort=361)


def test_dp_release_charges_budget_and_adds_noise(providers: list[ProviderInput]) -> None:
    budget = InMemoryPrivacyBudget(default=(1.0, 0.0))
    gate = ReleaseGate(budget, rng=np.random.default_rng(1))
    q = StatsQuery("stats.mean", ("fare",), clip=(0.0, 3000.0))
    ob = ReleaseObligations(min_cohort=10, dp_epsilon=0.6)
    release = run_stats(q, providers, gate=gate, obligations=ob)
    g = release.value().group()
    assert g.exact == {} and release.epsilon_spent == 0.6
    assert g.rows != 360  # noisy count
    assert budget.remaining("dataset-0")[0] == pytest.approx(0.4)
    with pytest.raises(errors.PrivacyBudgetExhausted):
        run_stats(q, providers, gate=gate, obligations=ob)
    with pytest.raises(errors.InvalidParameters):  # DP needs bounded values
        run_stats(StatsQuery("stats.sum", ("fare",)), providers, gate=gate, obligations=ob)


def test_provider_review_holds_the_result(providers: list[ProviderInput]) -> None:
    gate = ReleaseGate(InMemoryPrivacyBudget())
    ob = ReleaseObligations(min_cohort=10, provider_review_required=True)
    release = run_stats(StatsQuery("stats.count"), providers, gate=gate, obligations=ob)
    with pytest.raises(errors.ProviderReviewRequired):
        release.value()
    assert release.review().group().rows == 360
    for p in providers:
        release.approve(p.provider_id)
    assert release.released and release.value().group().rows == 360
    assert release.security_model == SECURITY_MODEL.as_dict()
    json.dumps(release.security_model)


# -- what the coordinator sees ---------------------------------------------------------------


def _encodings(value: int) -> list[bytes]:
    """Ways a plaintext integer could sit in a byte string."""
    out = [str(value).encode(), format(value, "x").encode(), format(value, "X").encode()]
    signed = value < 0
    length = max(1, (value.bit_length() + 7 + signed) // 8)
    for width in {length, 8, 16, 32}:
        if width >= length:
            for order in ("big", "little"):
                out.append(value.to_bytes(width, order, signed=signed))
    if abs(value) < 2**53:
        out += [np.float64(value).tobytes(), np.float64(value).byteswap().tobytes()]
    return out


def _walk(obj: Any, depth: int = 0, seen: set[int] | None = None) -> list[Any]:
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 6:
        return []
    seen.add(id(obj))
    found = [obj]
    children: list[Any] = []
    if isinstance(obj, dict):
        children = list(obj.keys()) + list(obj.values())
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    elif hasattr(obj, "__slots__"):
        children = [getattr(obj, s) for s in obj.__slots__ if hasattr(obj, s)]
    for c in children:
        found += _walk(c, depth + 1, seen)
    return found


@pytest.mark.parametrize(
    "query",
    [
        StatsQuery("stats.variance", ("fare", "minutes"), group_by="zone", groups=ZONES),
        StatsQuery("stats.histogram", ("fare",), bins=10, range=(0.0, 2500.0)),
    ],
    ids=["paillier", "ckks"],
)
def test_coordinator_never_sees_a_partial_in_plaintext(
    providers: list[ProviderInput], query: StatsQuery
) -> None:
    job = StatsJob(query, providers)
    partials = job.compute_partials()
    aggregate = job.aggregate(partials)
    coordinator: Coordinator = job.coordinator

    # 1. Everything the coordinator was given, byte for byte.
    received = b"".join(data for _, data in coordinator.received)
    assert [party for party, _ in coordinator.received] == [p.provider_id for p in providers]

    for provider in providers:
        plain = partial_vector(query, [provider.path])
        # Whole-vector encodings.
        assert np.asarray(plain, dtype="<f8").tobytes() not in received
        assert json.dumps(plain).encode() not in received
        # Every entry large enough not to occur by chance (counts such as 3 appear in
        # any JSON header) in every integer and float encoding.
        for value in plain:
            if abs(int(value)) >= 10_000:
                for enc in _encodings(int(value)):
                    assert enc not in received, (provider.provider_id, value)
        # The packed Paillier plaintexts (the integers actually encrypted).
        if job.result_party.public.paillier_n:
            n = job.result_party.public.paillier_n
            for m in job.result_party.public.packing.pack([int(v) for v in plain], n):
                for enc in _encodings(m):
                    assert enc not in received
        # No row value either.
        for line in provider.path.read_text().splitlines()[1:6]:
            fare = line.split(",")[1].encode()
            assert b"," + fare + b"," not in received

    # 2. The public layout is the query's, the same for every provider.
    for _, data in coordinator.received:
        env = Envelope.from_bytes(data)
        assert env.layout == query.layout()
        assert env.scheme == job.result_party.public.scheme

    # 3. The coordinator holds no secret key material.
    reachable = _walk(coordinator)
    assert not any(isinstance(o, phe.PaillierPrivateKey) for o in reachable)
    contexts = [o for o in reachable if hasattr(o, "is_private") and callable(o.is_private)]
    assert all(not c.is_private() for c in contexts)
    if query.job_scheme == "ckks":
        assert contexts  # it does hold the public context, to add
    sk = job.result_party._paillier_sk
    if sk is not None:
        factors = {sk.p, sk.q}
        assert not any(isinstance(o, int) and o in factors for o in reachable)
        for f in factors:
            assert f.to_bytes(128, "big") not in received and str(f).encode() not in received

    # 4. And yet the aggregate decrypts to the sum of the partials.
    total = list(job.decrypt(aggregate).values)
    parts = [partial_vector(query, [p.path]) for p in providers]
    sums = [sum(col) for col in zip(*parts, strict=True)]
    if query.job_scheme == "paillier-packed":
        assert total == sums  # exact
    else:
        assert np.allclose(total, sums, atol=job.result_party.tolerance(3))
