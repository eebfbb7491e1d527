# Tests for private joins (pdx.joins through pdx.authz). Cases: see authz_test.rego.
package pdx.joins_test

import rego.v1

now := 1800000000

ctx := {
	"time": now,
	"token_issued_at": now - 60,
	"cert_binding": "none",
	"purpose": "credit risk",
	"legal_basis": "consent:C-1",
}

consumer := {"id": "pdx-c1", "org": "org-c", "org_kind": "enterprise", "roles": ["data-consumer"]}

contract := {
	"id": "ct-1",
	"status": "active",
	"consumer_org": "org-c",
	"provider_org": "org-p",
	"datasets": ["ds-1"],
	"purpose": "credit risk",
	"dua_reference": "dua-1",
	"not_before": now - 86400,
	"not_after": now + 86400,
}

declared := {
	"operator": "psi.sum",
	"side": "values",
	"key": "msisdn",
	"kind": "phone",
	"key_declared": true,
	"reveals_members": false,
}

undeclared := object.union(declared, {"key_declared": false})

revealing := object.union(declared, {"reveals_members": true})

dataset := {
	"type": "dataset",
	"id": "ds-1",
	"level": "general-3",
	"open_attribute": "conditional",
	"owner_org": "org-p",
	"pi": true,
	"contract": contract,
}

own_party := object.union(declared, {"requester_own": true, "custody": "node"})

own_reason := "may not be a party of a vertical computation"

own(extra) := {"subject": consumer, "action": "computation.request", "context": ctx, "resource": object.union(dataset, {"join": object.union(own_party, extra)})}

platform_held := {"custody": "platform"}

# general-1 open data: an exact cell (no DP; the exact counts are released).
open_dataset := object.union(dataset, {"level": "general-1", "open_attribute": "open", "pi": false})

join_obligations := {"require_provider_approval": true, "min_intersection": 20, "dp_epsilon": 0.6}

cases := {
	# The requester's own legal person is no party beside another provider from its own
	# node, in any role: it would read that party's sandbox.
	"own_matcher_on_its_node_is_denied": {
		"input": own({"side": "cohort"}),
		"allow": false,
		"reasons": [own_reason],
	},
	"own_value_party_on_its_node_is_denied": {
		"input": own({}),
		"allow": false,
		"reasons": [own_reason],
	},
	"own_hetero_guest_on_its_node_is_denied": {
		"input": own({"operator": "fl.hetero_logreg", "side": "guest"}),
		"allow": false,
		"reasons": [own_reason],
	},
	"own_hetero_host_on_its_node_is_denied": {
		"input": own({"operator": "fl.hetero_logreg", "side": "host"}),
		"allow": false,
		"reasons": [own_reason],
	},
	# Fail closed: an own input whose custody is not said is treated as node-held.
	"own_input_of_unknown_custody_is_denied": {
		"input": own({"custody": null}),
		"allow": false,
		"reasons": [own_reason],
	},
	# Held by the platform it may be a party in every role: the minimum is decided on a
	# noised count under DP, and the join's obligations (DP among them) apply as to any.
	"own_platform_held_matcher_joins": {
		"input": own(object.union(platform_held, {"side": "cohort"})),
		"allow": true,
		"obligations": join_obligations,
	},
	"own_platform_held_value_party_joins": {
		"input": own(platform_held),
		"allow": true,
		"obligations": join_obligations,
	},
	"own_platform_held_hetero_guest_joins": {
		"input": own(object.union(platform_held, {"operator": "fl.hetero_logreg", "side": "guest"})),
		"allow": true,
		"obligations": join_obligations,
	},
	"own_platform_held_hetero_host_joins": {
		"input": own(object.union(platform_held, {"operator": "fl.hetero_logreg", "side": "host"})),
		"allow": true,
		"obligations": join_obligations,
	},
	# An exact cell: no DP, the exact count is released, so the exact decision tells no more.
	"own_platform_held_exact_cell_joins_without_dp": {
		"input": {"subject": consumer, "action": "computation.request", "context": ctx, "resource": object.union(open_dataset, {"join": object.union(own_party, platform_held)})},
		"allow": true,
		"obligations": {"require_provider_approval": true, "min_intersection": 20, "dp_epsilon": null},
	},
	# With the requester's own cohort (its SDK) no other party's data is involved.
	"own_dataset_against_its_own_cohort_joins": {
		"input": own({"operator": "stats.count", "cohort": "requester"}),
		"allow": true,
		"obligations": {"require_provider_approval": true, "min_intersection": 20},
	},
	"another_legal_persons_matcher_joins": {
		"input": own({"side": "cohort", "requester_own": false}),
		"allow": true,
	},
	# general-3 conditional data: the grade's own ε per query (0.6) is stricter than the join's 1.0.
	"declared_key_joins_with_join_obligations": {
		"input": {"subject": consumer, "action": "computation.request", "context": ctx, "resource": object.union(dataset, {"join": declared})},
		"allow": true,
		"obligations": {"require_provider_approval": true, "min_intersection": 20, "dp_epsilon": 0.6},
	},
	"undeclared_key_is_denied": {
		"input": {"subject": consumer, "action": "computation.request", "context": ctx, "resource": object.union(dataset, {"join": undeclared})},
		"allow": false,
		"reasons": ["is not declared joinable (as phone) by its provider"],
	},
	"members_are_never_revealed": {
		"input": {"subject": consumer, "action": "computation.request", "context": ctx, "resource": object.union(dataset, {"join": revealing})},
		"allow": false,
		"reasons": ["a join may not reveal who is in the intersection"],
	},
	"no_join_no_join_obligations": {
		"input": {"subject": consumer, "action": "computation.request", "context": ctx, "resource": dataset},
		"allow": true,
		"obligations": {"require_provider_approval": false, "min_cohort": 10},
	},
}

test_min_intersection_default if {
	data.pdx.joins.defaults.min_intersection == 20
}
