# Tests for pdx.authz. rego-cpp cannot evaluate `with` (it crashes or answers wrongly,
# policies/README.md), so each test is a case: an input, optional overrides of the
# grading-matrix data, and the expected decision. policies/checks.py runs every case
# through the decision point, and every `test_` rule (data-only checks) directly.
package pdx.authz_test

import rego.v1

now := 1800000000

ctx := {
	"time": now,
	"token_issued_at": now - 60,
	"cert_binding": "none",
	"purpose": "traffic planning",
	"legal_basis": "statute:road-traffic-safety-law",
	"ip": "192.0.2.10",
}

consumer := {"id": "pdx-c1", "org": "org-c", "org_kind": "enterprise", "roles": ["data-consumer"]}

provider := {"id": "pdx-p1", "org": "org-p", "org_kind": "provider", "roles": ["data-provider"]}

other_provider := {"id": "pdx-p2", "org": "org-q", "org_kind": "provider", "roles": ["data-provider"]}

auditor := {"id": "pdx-a1", "org": "org-a", "org_kind": "auditor", "roles": ["auditor"]}

security := {"id": "pdx-s1", "org": "org-s", "org_kind": "security", "roles": ["security-admin"]}

sysadmin := {"id": "pdx-o1", "org": "org-o", "org_kind": "operator", "roles": ["system-admin"]}

contract := {
	"id": "ct-1",
	"status": "active",
	"consumer_org": "org-c",
	"provider_org": "org-p",
	"datasets": ["ds-1"],
	"purpose": "traffic planning",
	"dua_reference": "dua-1",
	"not_before": now - 86400,
	"not_after": now + 86400,
}

ds(level, open) := {
	"type": "dataset",
	"id": "ds-1",
	"level": level,
	"open_attribute": open,
	"owner_org": "org-p",
	"pi": true,
	"contract": contract,
}

req(subject, action, resource) := {"subject": subject, "action": action, "resource": resource, "context": ctx}

enabled := {"enabled_computations": {"ds-1": {"orgs": ["org-c"], "by": "pdx-s1", "note": "test"}}}

cases := {
	"open_general_1_download": {
		"input": req(consumer, "dataset.download", ds("general-1", "open")),
		"allow": true,
		"obligations": {"log_delivery": true, "require_provider_approval": false},
	},
	"open_general_1_preview_capped": {
		"input": req(consumer, "dataset.preview", ds("general-1", "open")),
		"allow": true,
		"obligations": {"max_rows": 100},
	},
	"conditional_general_1_no_rows": {
		"input": req(consumer, "dataset.download", ds("general-1", "conditional")),
		"allow": false,
		"reasons": ["not permitted on general-1 conditional"],
	},
	"general_2_download_denied": {
		"input": req(consumer, "dataset.download", ds("general-2", "open")),
		"allow": false,
		"reasons": ["computations only"],
	},
	"general_3_computation_under_contract": {
		"input": req(consumer, "computation.request", ds("general-3", "conditional")),
		"allow": true,
		"obligations": {"min_cohort": 10, "desensitise": true, "require_provider_approval": false, "dp_epsilon": 0.6},
	},
	"general_2_computation_is_differentially_private": {
		"input": req(consumer, "computation.request", ds("general-2", "conditional")),
		"allow": true,
		"obligations": {"dp_epsilon": 0.8, "require_provider_approval": false},
	},
	"general_1_conditional_computation_is_differentially_private": {
		"input": req(consumer, "computation.request", ds("general-1", "conditional")),
		"allow": true,
		"obligations": {"dp_epsilon": 1.0},
	},
	"provider_rules_tighten_cohort_and_epsilon": {
		"input": req(consumer, "computation.request", object.union(
			ds("general-3", "conditional"),
			{"analysis_rules": {"min_cohort": 25, "epsilon_per_query": 0.2}},
		)),
		"allow": true,
		"obligations": {"min_cohort": 25, "dp_epsilon": 0.2},
	},
	"provider_rules_never_loosen": {
		"input": req(consumer, "computation.request", object.union(
			ds("general-3", "conditional"),
			{"analysis_rules": {"min_cohort": 2, "epsilon_per_query": 5}},
		)),
		"allow": true,
		"obligations": {"min_cohort": 10, "dp_epsilon": 0.6},
	},
	"provider_rules_ask_dp_on_open_data": {
		"input": req(consumer, "computation.request", object.union(
			ds("general-1", "open"),
			{"analysis_rules": {"epsilon_per_query": 1.5}},
		)),
		"allow": true,
		"obligations": {"dp_epsilon": 1.5},
	},
	"general_1_open_data_is_released_exactly": {
		"input": req(consumer, "computation.request", ds("general-1", "open")),
		"allow": true,
		"obligations": {"dp_epsilon": null},
	},
	"general_4_computation_needs_approval": {
		"input": req(consumer, "computation.request", ds("general-4", "conditional")),
		"allow": true,
		"obligations": {"require_provider_approval": true, "release_review": true, "dp_epsilon": 0.5},
	},
	"general_4_without_contract": {
		"input": req(consumer, "computation.request", object.remove(ds("general-4", "conditional"), ["contract"])),
		"allow": false,
		"reasons": ["general-4 data requires a contract with the provider"],
	},
	"purpose_mismatch": {
		"input": object.union(
			req(consumer, "computation.request", ds("general-2", "conditional")),
			{"context": object.union(ctx, {"purpose": "advertising"})},
		),
		"allow": false,
		"reasons": ["purpose 'advertising' does not match the contract's purpose 'traffic planning'"],
	},
	"missing_purpose": {
		"input": object.union(
			req(consumer, "computation.request", ds("general-2", "conditional")),
			{"context": object.remove(ctx, ["purpose"])},
		),
		"allow": false,
		"reasons": ["a computation needs a declared purpose"],
	},
	"pi_without_legal_basis": {
		"input": object.union(
			req(consumer, "computation.request", ds("general-2", "conditional")),
			{"context": object.remove(ctx, ["legal_basis"])},
		),
		"allow": false,
		"reasons": ["personal information needs a legal basis"],
	},
	"expired_contract": {
		"input": req(consumer, "computation.request", object.union(
			ds("general-3", "conditional"),
			{"contract": object.union(contract, {"not_after": now - 1})},
		)),
		"allow": false,
		"reasons": ["contract ct-1 is not in force"],
	},
	"contract_with_someone_else": {
		"input": req(consumer, "computation.request", object.union(
			ds("general-3", "conditional"),
			{"contract": object.union(contract, {"consumer_org": "org-x"})},
		)),
		"allow": false,
		"reasons": ["was not made with the requesting organisation"],
	},
	"contract_not_covering_dataset": {
		"input": req(consumer, "computation.request", object.union(
			ds("general-3", "conditional"),
			{"contract": object.union(contract, {"datasets": ["ds-2"]})},
		)),
		"allow": false,
		"reasons": ["does not cover dataset ds-1"],
	},
	"conditional_without_agreement": {
		"input": req(consumer, "computation.request", object.union(
			ds("general-2", "conditional"),
			{"contract": object.remove(contract, ["dua_reference"])},
		)),
		"allow": false,
		"reasons": ["needs a signed data-use agreement"],
	},
	"important_rows_never": {
		"input": req(provider, "dataset.download", ds("important", "conditional")),
		"allow": false,
		"reasons": ["important data never leaves the platform as rows"],
	},
	"important_computation_not_enabled": {
		"input": req(consumer, "computation.request", ds("important", "conditional")),
		"allow": false,
		"reasons": ["the security team has not enabled this important dataset for the requesting organisation"],
	},
	"important_computation_enabled_but_not_cleared": {
		"input": req(consumer, "computation.request", ds("important", "conditional")),
		"matrix": enabled,
		"allow": false,
		"reasons": ["cleared for data up to general-4"],
	},
	"important_computation_enabled_and_cleared": {
		"input": req(consumer, "computation.request", ds("important", "conditional")),
		"matrix": object.union(enabled, {"clearances": {"org-c": "important"}}),
		"allow": true,
		"obligations": {"require_provider_approval": true, "min_cohort": 20, "dp_epsilon": 0.3},
	},
	"core_metadata_hidden": {
		"input": req(consumer, "dataset.read_metadata", ds("core", "conditional")),
		"allow": false,
	},
	"closed_nothing_leaves": {
		"input": req(consumer, "computation.request", ds("general-1", "closed")),
		"allow": false,
		"reasons": ["closed (不予开放) data: nothing leaves the platform"],
	},
	"owner_reads_own_closed_metadata": {
		"input": req(provider, "dataset.read_metadata", ds("core", "closed")),
		"allow": true,
	},
	"owner_previews_own_general_4": {
		"input": req(provider, "dataset.preview", ds("general-4", "conditional")),
		"allow": true,
		"obligations": {"max_rows": 100},
	},
	"provider_approves_own": {
		"input": req(provider, "computation.approve", ds("general-4", "conditional")),
		"allow": true,
	},
	"provider_cannot_approve_others": {
		"input": req(other_provider, "computation.approve", ds("general-4", "conditional")),
		"allow": false,
		"reasons": ["providers approve computations on their own data only"],
	},
	"provider_approves_enabled_important": {
		"input": req(provider, "computation.approve", object.union(
			ds("important", "conditional"),
			{"computation": {"id": "job-1", "requester_org": "org-c"}},
		)),
		"matrix": enabled,
		"allow": true,
	},
	"register_own": {
		"input": req(provider, "dataset.register", ds("general-2", "open")),
		"allow": true,
	},
	"register_for_another_org": {
		"input": req(other_provider, "dataset.register", ds("general-2", "open")),
		"allow": false,
		"reasons": ["only for the subject's own organisation"],
	},
	"consumer_cannot_register": {
		"input": req(consumer, "dataset.register", object.union(ds("general-2", "open"), {"owner_org": "org-c"})),
		"allow": false,
		"reasons": ["no role of this subject (data-consumer) may perform 'dataset.register'"],
	},
	"ledger_party": {
		"input": req(consumer, "ledger.read", {"type": "ledger.entry", "id": "7", "parties": ["org-c", "org-p"]}),
		"allow": true,
	},
	"ledger_not_party": {
		"input": req(consumer, "ledger.read", {"type": "ledger.entry", "id": "7", "parties": ["org-p"]}),
		"allow": false,
		"reasons": ["concerns other organisations only"],
	},
	"unknown_action": {
		"input": req(security, "dataset.delete", ds("general-1", "open")),
		"allow": false,
		"reasons": ["unknown action 'dataset.delete': denied by default"],
	},
	"empty_input": {
		"input": {},
		"allow": false,
		"reasons": ["no authenticated subject"],
	},
	"unknown_level": {
		"input": req(consumer, "dataset.preview", ds("secret", "open")),
		"allow": false,
		"reasons": ["unknown grading"],
	},
	"register_unknown_grade": {
		"input": req(provider, "dataset.register", ds("top-secret", "open")),
		"allow": false,
		"reasons": ["unknown data level 'top-secret'"],
	},
	"owner_metadata_unknown_open_attribute": {
		"input": req(provider, "dataset.read_metadata", ds("general-1", "public")),
		"allow": false,
		"reasons": ["unknown open attribute 'public'"],
	},
	"security_writes_policy": {
		"input": req(security, "policy.write", {"type": "policy"}),
		"allow": true,
	},
	"security_runs_compliance_checks": {
		"input": req(security, "compliance.run", {"type": "compliance"}),
		"allow": true,
	},
	"security_reads_compliance_runs": {
		"input": req(security, "compliance.read", {"type": "compliance"}),
		"allow": true,
	},
	"auditor_reads_compliance_runs": {
		"input": req(auditor, "compliance.read", {"type": "compliance"}),
		"allow": true,
	},
	"auditor_cannot_run_compliance_checks": {
		"input": req(auditor, "compliance.run", {"type": "compliance"}),
		"allow": false,
		"reasons": ["the auditor changes nothing"],
	},
	"sysadmin_cannot_read_compliance_runs": {
		"input": req(sysadmin, "compliance.read", {"type": "compliance"}),
		"allow": false,
	},
	"consumer_cannot_run_compliance_checks": {
		"input": req(consumer, "compliance.run", {"type": "compliance"}),
		"allow": false,
	},
	"sysadmin_cannot_write_policy": {
		"input": req(sysadmin, "policy.write", {"type": "policy"}),
		"allow": false,
	},
	"sysadmin_cannot_create_provider_account": {
		"input": req(object.union(sysadmin, {"person_id": "psn-o1", "org_admin": true}), "account.create", {
			"type": "account", "org_kind": "provider", "owner_org": "org-p", "roles": ["data-provider"],
		}),
		"allow": false,
		"reasons": ["never by the platform operator", "issued by the data-provider"],
	},
	"provider_admin_creates_own_account": {
		"input": req(object.union(provider, {"person_id": "psn-p1", "org_admin": true}), "account.create", {
			"type": "account", "org_kind": "provider", "owner_org": "org-p", "roles": ["data-provider"],
		}),
		"allow": true,
	},
	"sysadmin_cannot_create_security_account": {
		"input": req(sysadmin, "account.create", {
			"type": "account", "org_kind": "security", "owner_org": "org-s", "roles": ["security-admin"],
		}),
		"allow": false,
		"reasons": ["issued by the security-admin"],
	},
	"security_creates_own_org_account": {
		"input": req(object.union(security, {"person_id": "psn-s1", "org_admin": true}), "account.create", {
			"type": "account", "org_kind": "security", "owner_org": "org-s", "roles": ["security-admin"],
		}),
		"allow": true,
	},
	"security_cannot_create_for_another_security_org": {
		"input": req(security, "account.create", {
			"type": "account", "org_kind": "security", "owner_org": "org-s2", "roles": ["security-admin"],
		}),
		"allow": false,
		"reasons": ["only the security-admin's own organisation issues its accounts"],
	},
	"wrong_role_for_kind_on_new_account": {
		"input": req(sysadmin, "account.create", {
			"type": "account", "org_kind": "enterprise", "owner_org": "org-c", "roles": ["data-provider"],
		}),
		"allow": false,
		"reasons": ["role 'data-provider' cannot be given to an account of a 'enterprise' organisation"],
	},
	# Client lifecycle (issue 11): whoever issues an organisation's accounts manages them:
	# its own administrator person, never the platform operator.
	"sysadmin_cannot_deactivate_provider_account": {
		"input": req(object.union(sysadmin, {"person_id": "psn-o1", "org_admin": true}), "account.deactivate", {
			"type": "account", "org_kind": "provider", "owner_org": "org-p", "roles": ["data-provider"],
		}),
		"allow": false,
		"reasons": ["never by the platform operator"],
	},
	"provider_admin_deactivates_own_account": {
		"input": req(object.union(provider, {"person_id": "psn-p1", "org_admin": true}), "account.deactivate", {
			"type": "account", "org_kind": "provider", "owner_org": "org-p", "roles": ["data-provider"],
		}),
		"allow": true,
	},
	"sysadmin_cannot_rotate_security_account": {
		"input": req(sysadmin, "account.rotate_secret", {
			"type": "account", "org_kind": "security", "owner_org": "org-s", "roles": ["security-admin"],
		}),
		"allow": false,
		"reasons": ["issued by the security-admin"],
	},
	"security_rotates_own_org_account": {
		"input": req(object.union(security, {"person_id": "psn-s1", "org_admin": true}), "account.rotate_secret", {
			"type": "account", "org_kind": "security", "owner_org": "org-s", "roles": ["security-admin"],
		}),
		"allow": true,
	},
	"security_cannot_deactivate_another_security_org_account": {
		"input": req(security, "account.deactivate", {
			"type": "account", "org_kind": "security", "owner_org": "org-s2", "roles": ["security-admin"],
		}),
		"allow": false,
		"reasons": ["only the security-admin's own organisation issues its accounts"],
	},
	"provider_cannot_deactivate_accounts": {
		"input": req(provider, "account.deactivate", {
			"type": "account", "org_kind": "provider", "owner_org": "org-p", "roles": ["data-provider"],
		}),
		"allow": false,
	},
	"unknown_account_cannot_be_rotated": {
		"input": req(sysadmin, "account.rotate_secret", {
			"type": "account", "org_kind": null, "owner_org": null, "roles": [],
		}),
		"allow": false,
	},
}

# The shipped matrix never lets rows of important, core or closed data out, even before
# the Rego invariants look at a request.
test_matrix_keeps_rows_in if {
	every name, cell in data.pdx.matrix.cells {
		every action in ["dataset.preview", "dataset.download"] {
			not leaks_rows(name, cell, action)
		}
	}
}

leaks_rows(name, cell, action) if {
	not startswith(name, "general-")
	cell.actions[action].allow == true
}

# Every computation on data that is not `open` general-1 (public rows) is differentially
# private, and ε per query never grows with the grade (docs/privacy.md §2).
test_every_computation_on_non_open_data_is_dp if {
	every name, cell in data.pdx.matrix.cells {
		not exact_release(name, cell)
	}
}

exact_release(name, cell) if {
	name != "general-1/open"
	cell.actions["computation.request"].allow == true
	not cell.actions["computation.request"].obligations.dp_epsilon
}

test_epsilon_per_query_falls_with_the_grade if {
	eps := [e |
		some level in ["general-1", "general-2", "general-3", "general-4", "important", "core"]
		e := data.pdx.matrix.cells[concat("/", [level, "conditional"])].actions["computation.request"].obligations.dp_epsilon
	]
	count(eps) == 6
	every i in numbers.range(1, 5) {
		eps[i] <= eps[i - 1]
	}
}

# Closed data permits nothing at all.
test_closed_cell_is_empty if {
	count(data.pdx.matrix.cells.closed.actions) == 0
}

# Every grant in the role table names a scope the policy knows.
test_every_grant_scope_is_known if {
	every _, spec in data.pdx.matrix.actions {
		every g in spec.grants {
			g.scope in {"any", "own_org", "owner", "party", "matrix", "issuer"}
		}
	}
}
