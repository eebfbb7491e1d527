"""What each list check says, by rule id: its pass wording and its fail wording.

A check that passes when nothing offends (`base.verdict`) reports the pass wording as its
summary, or the count of offenders followed by the fail wording. A wording may name one of
the check's evidence fields in braces (PI-06 names its `floor`). Rule ids are those of
docs/compliance.md, in its order.
"""

from __future__ import annotations

from typing import NamedTuple


class Wording(NamedTuple):
    """A list check's summary when it passes, and what follows the offender count when not."""

    good: str
    bad: str


VERDICTS: dict[str, Wording] = {
    "GRD-01": Wording(
        "every dataset and field has one of the six levels", "datasets with an unknown level"
    ),
    "GRD-02": Wording("every dataset record is complete", "datasets with missing metadata"),
    "GRD-03": Wording(
        "every dataset is graded at least as its content",
        "datasets graded below their scan or fields",
    ),
    "GRD-04": Wording(
        "PI flags follow the field detections", "datasets whose PI flags contradict their content"
    ),
    "GRD-05": Wording(
        "important-catalogue data is important or core, never open",
        "datasets that break the important-data rules",
    ),
    "GRD-06": Wording(
        "every computation carries its highest input level",
        "computations graded below their inputs",
    ),
    "GRD-07": Wording("no grade review is overdue", "datasets overdue for review"),
    "GRD-08": Wording(
        "no important, core or closed cell lets rows leave; the invariant's tests pass",
        "cells grant raw delivery",
    ),
    "GRD-09": Wording(
        "conditional data needs contract, agreement, purpose and desensitised inputs",
        "conditional cells are too permissive",
    ),
    "GRD-10": Wording("the closed cell grants nothing", "actions granted on closed"),
    "PI-01": Wording(
        "every computation's purpose is recorded and bound",
        "computations without a matching purpose",
    ),
    "PI-02": Wording(
        "every computation on PI records a legal basis", "computations on PI without a legal basis"
    ),
    "PI-05": Wording(
        "every dataset with PI fields is flagged PI (no anonymity is claimed)",
        "datasets with PI fields registered as not PI, without a re-identification assessment",
    ),
    "PI-06": Wording("every cell's min_cohort is at least {floor}", "cells below the cohort floor"),
    "PI-07": Wording(
        "every budget account holds: charges = spent <= limit <= cap",
        "budget accounts break the budget",
    ),
    "PI-09": Wording(
        "the operator catalogue offers every de-identification technique",
        "techniques of GB/T 37964-2019 Annex A are not offered",
    ),
    "PI-10": Wording(
        "every non-open computation cell obliges desensitise",
        "cells allow computations on PI fields without desensitise",
    ),
    "DSL-01": Wording(
        "every listing states its provenance with evidence documents and their digests",
        "listings without provenance, evidence or evidence digests",
    ),
    "DSL-03": Wording(
        "every computation transition is on the ledger",
        "computations with transitions missing from the ledger",
    ),
    "CRY-02": Wording(
        "signed access tokens; every administrator person has a second factor",
        "callers without a cryptographic factor",
    ),
    "CRY-08": Wording(
        "every key version's lifecycle is audited and on the ledger",
        "key versions without key.* ledger entries",
    ),
    "CRY-10": Wording("every key has one known purpose", "keys with an unknown purpose"),
    "CRY-11": Wording("no key is past its rotation age", "keys due for rotation"),
    "CRY-12": Wording(
        "every destroyed key's data keys are gone", "destroyed keys whose data is still readable"
    ),
    "CRY-13": Wording("no account holds two key roles", "accounts holding two key roles"),
    "CRY-14": Wording(
        "the key inventory is complete", "key versions with missing inventory fields"
    ),
    "AUD-02": Wording(
        "every ledger entry has its audit record", "ledger entries without an audit record"
    ),
    "AUD-08": Wording(
        "no account holds two administrative roles",
        "accounts holding two of system-admin, security-admin and auditor",
    ),
    "AUD-09": Wording(
        "every audit read is itself audited", "audit reads without their own audit record"
    ),
    "AUD-10": Wording(
        "every cited decision is in the decision log",
        "audit records cite decisions that were not logged",
    ),
    "PCE-01": Wording(
        "every computation has a complete job record", "computations without a complete job record"
    ),
    "PCE-02": Wording(
        "every non-open cell obliges DP and every release carries its gate facts",
        "releases or cells without the release gate's DP",
    ),
    "PCE-03": Wording(
        "every job record names its scheme and key holder",
        "job records without scheme or key holder",
    ),
    "PCE-07": Wording(
        "released outputs are salted commitments",
        "release entries carry a plain digest (no salted commitment yet)",
    ),
    "ZT-05": Wording(
        "decisions are made from per-request attributes", "attributes missing from decision inputs"
    ),
    "MKT-01": Wording(
        "products record the rights they hold and agreements the rights they grant",
        "products or agreements without their rights",
    ),
    "MKT-02": Wording(
        "every listing passed its pre-check, carries provenance and fits its delivery modes",
        "listings break the listing rules",
    ),
    "MKT-03": Wording(
        "every listed product is on the ledger and each offer defines its scope of use",
        "listings whose source or scope of use is not defined",
    ),
    "MKT-04": Wording(
        "only general open data leaves as rows", "cells let other data leave as rows"
    ),
    "MKT-05": Wording(
        "every offer is tagged free or paid with its price model", "offers without a free/paid tag"
    ),
    "MKT-06": Wording(
        "on every dataset the ε shares in force stay within its budget",
        "datasets whose ε shares exceed their budget",
    ),
}
