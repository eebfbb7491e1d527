# Private joins (issue 18): which joins may be asked for and what they oblige.
#
# A join request's resources carry `resource.join` (exchange/computations/joins.py):
# the operator, the side (cohort or values), the key column, the identifier kind, and
# whether the dataset's provider declared that column joinable for that kind. Rules come
# from data.pdx.matrix.joins where the security team sets them, else the defaults below.
package pdx.joins

import rego.v1

m := data.pdx.matrix

resource := object.get(input, "resource", {})

join := resource.join if is_object(resource.join)

defaults := {
	"allowed_levels": ["general-1", "general-2", "general-3", "general-4", "important"],
	"min_intersection": 20,
	"dp_epsilon": 1.0,
	"exact_cells": ["general-1/open"],
}

rules := object.union(defaults, object.get(m, "joins", {}))

cell_name := concat("/", [resource.level, resource.open_attribute]) if {
	is_string(resource.level)
	is_string(resource.open_attribute)
}

violations contains msg if {
	join
	input.action == "computation.request"
	not join.key_declared == true
	msg := sprintf(
		"column '%v' of dataset %v is not declared joinable (as %v) by its provider",
		[join.key, object.get(resource, "id", null), join.kind],
	)
}

# The members of an intersection of personal identifiers are themselves personal
# information (who is a patient of which hospital): no request may have them released.
violations contains "a join may not reveal who is in the intersection (personal identifiers)" if {
	join
	join.reveals_members == true
}

# The requester's own legal person (`requester_own`: the operator verified both
# organisations with one credit code) may not be a party of a join or vertical LR with
# another provider from its own node (`custody: node`): it would read that party's
# sandbox, where the matcher holds the value party's per-record ciphertexts under the
# requester's key and the seed that unseals them, the value party the cohort's exact group
# sizes, a hetero-LR guest or host its per-round gradient and its weights before noise.
# None of that is DP. Held by the platform it may be a party in any role: its rows still
# choose the intersection, but the minimum is decided on a noised count under DP (the
# matcher's own noise share, the hetero guest's Laplace count), so refuse-or-release is
# post-processing of the DP release; without DP (an exact cell) the exact count is what
# is released anyway, so the exact decision tells no more. Its own identifiers may also
# join as `params.cohort` (`cohort: requester`, its SDK: no other party's sandbox).
violations contains msg if {
	join
	input.action == "computation.request"
	join.requester_own == true
	not join.cohort == "requester"
	not join.custody == "platform"
	msg := sprintf(
		"dataset %v is the requester's own (one verified legal person) and held on its node: it may not be a party of a vertical computation with another provider (%v side); register it with the platform or join your own identifiers as params.cohort",
		[object.get(resource, "id", null), join.side],
	)
}

violations contains msg if {
	join
	not resource.level in rules.allowed_levels
	msg := sprintf("%v data may not be joined with another provider's", [resource.level])
}

# The decision's obligations with a join's added: both providers approve the run, the
# released intersection is at least `min_intersection`, and its counts and sums carry DP
# noise (the cell's ε when stricter) unless the cell releases exact values.
with_obligations(base) := base if not join

with_obligations(base) := object.union(base, {
	"require_provider_approval": true,
	"min_intersection": max([rules.min_intersection, cohort(base)]),
	"dp_epsilon": join_epsilon(base),
}) if join

cohort(base) := base.min_cohort if is_number(base.min_cohort)

cohort(base) := 0 if not is_number(base.min_cohort)

join_epsilon(base) := base.dp_epsilon if {
	is_number(base.dp_epsilon)
	base.dp_epsilon <= rules.dp_epsilon
} else := null if {
	cell_name in rules.exact_cells
} else := rules.dp_epsilon
