# pdx authorisation: who may do what to which resource. Deny by default.
#
# Entry point: data.pdx.authz.decision = {"allow", "reasons", "obligations"}.
#
# Grants come from data (data.pdx.matrix, shipped as policies/data/grading_matrix.json):
# the role table in `actions` says which roles may attempt an action and under which
# scope; the grading cells say what each grade of data permits. The security team
# changes that data without touching Rego. The invariants below (separation of duties,
# no rows of important/core/closed data, owner-only approval, context checks) hold
# whatever the data says.
#
# A request is allowed when at least one grant holds and no rule denies it. `reasons`
# explains the outcome: every denial when denied, the grants that held when allowed.
package pdx.authz

import rego.v1

import data.pdx.market
import data.pdx.joins
import data.pdx.sod
import data.pdx.zerotrust

m := data.pdx.matrix

subject := object.get(input, "subject", {})

resource := object.get(input, "resource", {})

ctx := object.get(input, "context", {})

action := object.get(input, "action", null)

org := subject.org if is_string(subject.org)

roles contains r if {
	some r in subject.roles
	is_string(r)
}

level_rank := {l: i | some i, l in m.levels}

# Constant collections are arrays, not sets: rego-cpp builds a set literal on every
# evaluation at ~5 µs per element, an array for a fraction of that (README, "Measurements").

# Rows of these levels never leave the platform, whoever asks (docs/compliance.md GRD-08).
rows_never_leave := ["important", "core"]

row_actions := ["dataset.preview", "dataset.download"]

computation_actions := ["computation.request", "computation.approve"]

is_owner if {
	is_string(resource.owner_org)
	resource.owner_org == org
}

# ---------------------------------------------------------------------------------
# The decision.

default allow := false

allow if {
	count(deny) == 0
	count(granted) > 0
}

decision := {"allow": true, "reasons": sort(granted), "obligations": obligations} if {
	allow
} else := {"allow": false, "reasons": sort(deny), "obligations": {}}

# ---------------------------------------------------------------------------------
# Invariants: each denies whatever the grants say.

deny contains "the request has no authenticated subject" if not is_string(subject.id)

deny contains "the request names no organisation for its subject" if not org

deny contains "the subject holds no role" if count(roles) == 0

deny contains msg if {
	not m.actions[action]
	msg := sprintf("unknown action '%v': denied by default", [action])
}

kind_roles := object.get(m.roles_by_kind, object.get(subject, "org_kind", ""), [])

deny contains msg if {
	some r in roles
	not r in kind_roles
	msg := sprintf("role '%v' is not valid for a '%v' organisation", [r, object.get(subject, "org_kind", null)])
}

deny contains msg if some msg in sod.violations

deny contains msg if some msg in zerotrust.violations

deny contains msg if some msg in market.violations
deny contains msg if some msg in joins.violations

deny contains msg if {
	action in row_actions
	resource.level in rows_never_leave
	msg := sprintf("%v data never leaves the platform as rows, whoever asks", [resource.level])
}

leaving_actions := array.concat(row_actions, computation_actions)

# Actions on a graded dataset: its grade must be one the matrix knows.
graded_actions := array.concat(leaving_actions, ["dataset.register", "dataset.read_metadata"])

deny contains msg if {
	not resource.level in m.levels
	action in graded_actions
	msg := sprintf("unknown data level '%v'", [object.get(resource, "level", null)])
}

deny contains msg if {
	not resource.open_attribute in m.open_attributes
	action in graded_actions
	msg := sprintf("unknown open attribute '%v'", [object.get(resource, "open_attribute", null)])
}

deny contains "closed (不予开放) data: nothing leaves the platform, not even computation results" if {
	resource.open_attribute == "closed"
	action in leaving_actions
}

deny contains msg if {
	resource.level in rows_never_leave
	action in computation_actions
	not enabled_for(enablement_org)
	msg := sprintf(
		"the security team has not enabled this %v dataset for the requesting organisation",
		[resource.level],
	)
}

deny contains "providers approve computations on their own data only" if {
	action == "computation.approve"
	not is_owner
}

deny contains msg if {
	some r in sod.new_account_roles
	not r in object.get(m.roles_by_kind, object.get(resource, "org_kind", ""), [])
	msg := sprintf("role '%v' cannot be given to an account of a '%v' organisation", [r, object.get(resource, "org_kind", null)])
}

deny contains "a new account needs at least one role" if {
	action == "account.create"
	count(sod.new_account_roles) == 0
}

# No grant holds: say why each grant that the subject's roles could use failed.
deny contains msg if {
	count(granted) == 0
	some [_, msg] in refusal
}

deny contains msg if {
	count(granted) == 0
	count(refusal) == 0
	m.actions[action]
	msg := concat("", [
		"no role of this subject (", concat(", ", sort(roles)), ") ",
		sprintf("may perform '%v'", [action]),
	])
}

# ---------------------------------------------------------------------------------
# Grants: the role table in data.pdx.matrix.actions, each entry with a scope.

known_scopes := ["any", "own_org", "owner", "party", "matrix", "issuer"]

grants := m.actions[action].grants

# Indexes of the grants whose roles the subject holds (indexes, not the grant
# objects: rego-cpp compares and hashes whole objects slowly).
applicable contains i if {
	some i, g in grants
	some r in g.roles
	r in roles
}

scopes contains grants[i].scope if some i in applicable

refused_scopes contains s if some [s, _] in refusal

holding contains i if {
	some i in applicable
	grants[i].scope in known_scopes
	not grants[i].scope in refused_scopes
}

granted contains grant_text(grants[i]) if some i in holding

# concat, not sprintf: rego-cpp quotes a builtin-made string that sprintf embeds in
# longer text (policies/README.md, "regopy and OPA").
grant_text(g) := concat("", [
	concat("/", sort(roles & {r | some r in g.roles})),
	sprintf(" may perform '%v'", [action]),
	scope_text(g.scope),
])

scope_text("any") := ""

scope_text("own_org") := " for its own organisation"

scope_text("owner") := " on its own organisation's data"

scope_text("party") := " on ledger entries its organisation is party to"

scope_text("matrix") := sprintf(" on %v", [cell.label])

scope_text("issuer") := sprintf(" for a '%v' organisation", [resource.org_kind])

# Obligations come from the first grant that holds (owner grants come first in the
# table), on top of the defaults; a matrix grant takes the grading cell's obligations.
chosen := grants[min(holding)]

chosen_obligations := object.get(rule, "obligations", {}) if chosen.scope == "matrix"

chosen_obligations := object.get(chosen, "obligations", {}) if chosen.scope != "matrix"

base_obligations := object.union(m.obligation_defaults, chosen_obligations)

# A dataset's provider tightens a computation's obligations with its analysis rules
# (docs/privacy.md §3, `resource.analysis_rules`): a larger minimum cohort, a smaller ε
# per query (which asks for DP where the cell asks none). Rules never loosen them.
provider_rules := object.get(resource, "analysis_rules", {})

rule_cohort := provider_rules.min_cohort if is_number(provider_rules.min_cohort)

rule_epsilon := provider_rules.epsilon_per_query if is_number(provider_rules.epsilon_per_query)

cell_cohort := base_obligations.min_cohort if is_number(base_obligations.min_cohort)

cell_epsilon := base_obligations.dp_epsilon if is_number(base_obligations.dp_epsilon)

tightened["min_cohort"] := rule_cohort if {
	action == "computation.request"
	not cell_cohort
}

tightened["min_cohort"] := rule_cohort if {
	action == "computation.request"
	rule_cohort > cell_cohort
}

tightened["dp_epsilon"] := rule_epsilon if {
	action == "computation.request"
	not cell_epsilon
}

tightened["dp_epsilon"] := rule_epsilon if {
	action == "computation.request"
	rule_epsilon < cell_epsilon
}

obligations := joins.with_obligations(object.union(base_obligations, tightened))

# ---------------------------------------------------------------------------------
# Scope refusals, computed only for scopes some applicable grant uses.

refusal contains ["own_org", msg] if {
	"own_org" in scopes
	not is_owner
	msg := sprintf("'%v' is allowed only for the subject's own organisation", [action])
}

refusal contains ["owner", "the subject's organisation does not own this dataset"] if {
	"owner" in scopes
	not is_owner
}

refusal contains ["party", "this ledger entry concerns other organisations only"] if {
	"party" in scopes
	not org in object.get(resource, "parties", [])
}

issuer := m.account_issuers[resource.org_kind]

refusal contains ["issuer", msg] if {
	"issuer" in scopes
	not issuer
	msg := sprintf(
		"accounts of a '%v' organisation are issued by the platform itself, not through the API",
		[object.get(resource, "org_kind", null)],
	)
}

refusal contains ["issuer", msg] if {
	"issuer" in scopes
	issuer
	not issuer in roles
	msg := sprintf("accounts of a '%v' organisation are issued by the %v", [resource.org_kind, issuer])
}

refusal contains ["issuer", msg] if {
	"issuer" in scopes
	issuer in roles
	issuer != "system-admin"
	not is_owner
	msg := sprintf("only the %v's own organisation issues its accounts", [issuer])
}

# The grading cell: "closed" overrides the level (不予开放: nothing leaves).
cell_name := "closed" if resource.open_attribute == "closed"

cell_name := concat("/", [resource.level, resource.open_attribute]) if {
	is_string(resource.level)
	is_string(resource.open_attribute)
	resource.open_attribute != "closed"
}

cell := m.cells[cell_name]

rule := cell.actions[action]

# Matrix refusals are computed only when a matrix grant applies.
refusal contains ["matrix", msg] if {
	"matrix" in scopes
	some msg in matrix_refusal
}

matrix_refusal contains msg if {
	not cell
	msg := sprintf(
		"unknown grading: level '%v' with open attribute '%v' is in no grading cell",
		[object.get(resource, "level", null), object.get(resource, "open_attribute", null)],
	)
}

matrix_refusal contains msg if {
	not rule.allow == true
	cell
	msg := sprintf("'%v' is not permitted on %v: %v", [action, cell.label, cell.note])
}

# What the cell requires before it permits the action.
required := object.get(rule, "requires", []) if rule.allow == true

# Clearance: the subject's own, else the one the security team set for its
# organisation, else the default. Owners act on their own data whatever its grade.
clearance := object.get(subject, "clearance", object.get(m.clearances, org, m.default_clearance))

matrix_refusal contains msg if {
	not level_rank[resource.level] <= level_rank[clearance]
	rule.allow == true
	not is_owner
	msg := sprintf("the subject is cleared for data up to %v, and this is %v data", [clearance, resource.level])
}

# Security-team enablement (important/core data, or any cell that asks for it).
enablement_org := resource.computation.requester_org if action == "computation.approve"

enablement_org := org if action != "computation.approve"

enabled_for(o) if {
	is_string(o)
	o in m.enabled_computations[resource.id].orgs
}

matrix_refusal contains msg if {
	"security_enablement" in required
	not enabled_for(enablement_org)
	msg := sprintf(
		"the security team has not enabled this %v dataset for the requesting organisation",
		[resource.level],
	)
}

# Contract with the provider (数据二十条; DSL art. 33). Missing fields compare as null,
# so an incomplete contract fails every check it cannot pass.
# Since issue 17 `resource.contract` is the market agreement covering the input (status
# "finalized"), or a deprecated contract (status "active") during the transition; its
# `dua_reference` names the external data-use agreement (formerly `agreement_id`).
contract := object.union(
	{
		"id": null, "status": null, "consumer_org": null, "provider_org": null,
		"datasets": [], "purpose": null, "dua_reference": null, "legal_basis": null,
		"not_before": null, "not_after": null,
	},
	resource.contract,
) if is_object(resource.contract)

in_force_states := ["active", "finalized"]

matrix_refusal contains msg if {
	"contract" in required
	some msg in contract_refusal
}

contract_refusal contains msg if {
	not contract
	msg := sprintf("%v requires a contract with the provider", [cell.label])
}

contract_refusal contains msg if {
	not contract.status in in_force_states
	msg := sprintf("contract %v is not active (status: %v)", [contract.id, contract.status])
}

contract_refusal contains msg if {
	contract.consumer_org != org
	msg := sprintf("contract %v was not made with the requesting organisation", [contract.id])
}

contract_refusal contains msg if {
	contract.provider_org != resource.owner_org
	msg := sprintf("contract %v is not with this dataset's provider", [contract.id])
}

contract_refusal contains msg if {
	not resource.id in contract.datasets
	contract
	msg := sprintf("contract %v does not cover dataset %v", [contract.id, object.get(resource, "id", null)])
}

contract_refusal contains msg if {
	not in_force
	contract
	msg := sprintf("contract %v is not in force at this time", [contract.id])
}

in_force if {
	is_number(contract.not_before)
	is_number(contract.not_after)
	zerotrust.now >= contract.not_before
	zerotrust.now < contract.not_after
}

matrix_refusal contains msg if {
	not is_string(contract.dua_reference)
	"agreement" in required
	contract
	msg := sprintf("%v needs a signed data-use agreement, and contract %v names none", [cell.label, contract.id])
}

matrix_refusal contains msg if {
	contract.dua_reference == ""
	"agreement" in required
	msg := sprintf("%v needs a signed data-use agreement, and contract %v names none", [cell.label, contract.id])
}

# Purpose and legal basis (PIPL art. 6, 13; docs/compliance.md PI-01, PI-02).
matrix_refusal contains "a computation needs a declared purpose" if {
	not is_string(ctx.purpose)
	"purpose" in required
}

matrix_refusal contains "a computation needs a declared purpose" if {
	ctx.purpose == ""
	"purpose" in required
}

matrix_refusal contains msg if {
	contract.purpose != ctx.purpose
	"purpose" in required
	non_empty(ctx.purpose)
	msg := sprintf("purpose '%v' does not match the contract's purpose '%v'", [ctx.purpose, contract.purpose])
}

# An agreement that names a legal basis binds its computations to that basis.
matrix_refusal contains msg if {
	is_string(contract.legal_basis)
	contract.legal_basis != ""
	ctx.legal_basis != contract.legal_basis
	"purpose" in required
	msg := sprintf("the legal basis must be the agreement's ('%v')", [contract.legal_basis])
}

matrix_refusal contains msg if {
	is_string(contract.legal_basis)
	contract.legal_basis != ""
	not is_string(ctx.legal_basis)
	"purpose" in required
	msg := sprintf("the legal basis must be the agreement's ('%v')", [contract.legal_basis])
}

matrix_refusal contains "personal information needs a legal basis (a consent id or a statute)" if {
	not is_string(ctx.legal_basis)
	"legal_basis" in required
	resource.pi == true
}

matrix_refusal contains "personal information needs a legal basis (a consent id or a statute)" if {
	ctx.legal_basis == ""
	"legal_basis" in required
	resource.pi == true
}

non_empty(s) if {
	is_string(s)
	s != ""
}
