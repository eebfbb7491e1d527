# Tests for separation of duties (三员分立). Cases: see authz_test.rego for the format.
package pdx.sod_test

import rego.v1

now := 1800000000

ctx := {"time": now, "token_issued_at": now - 60, "cert_binding": "none"}

req(subject, action, resource) := {"subject": subject, "action": action, "resource": resource, "context": ctx}

auditor := {"id": "pdx-a1", "org": "org-a", "org_kind": "auditor", "roles": ["auditor"]}

two_hats := {"id": "pdx-x1", "org": "org-s", "org_kind": "security", "roles": ["security-admin", "auditor"]}

cases := {
	"auditor_reads_ledger": {
		"input": req(auditor, "ledger.read", {"type": "ledger.entry", "id": "1"}),
		"allow": true,
	},
	"auditor_reads_audit_log": {
		"input": req(auditor, "audit.read", {"type": "audit"}),
		"allow": true,
	},
	"auditor_writes_nothing": {
		"input": req(auditor, "policy.write", {"type": "policy"}),
		"allow": false,
		"reasons": ["the auditor changes nothing, and 'policy.write' is a write action"],
	},
	"auditor_cannot_administer_keys": {
		"input": req(auditor, "kms.admin", {"type": "key"}),
		"allow": false,
		"reasons": ["the auditor changes nothing"],
	},
	"auditor_creates_no_accounts": {
		"input": req(auditor, "account.create", {
			"type": "account", "org_kind": "auditor", "owner_org": "org-a", "roles": ["auditor"],
		}),
		"allow": false,
		"reasons": ["the auditor changes nothing"],
	},
	"auditor_deactivates_no_accounts": {
		"input": req(auditor, "account.deactivate", {
			"type": "account", "org_kind": "auditor", "owner_org": "org-a", "roles": ["auditor"],
		}),
		"allow": false,
		"reasons": ["the auditor changes nothing"],
	},
	"two_admin_roles_denied": {
		"input": req(two_hats, "audit.read", {"type": "audit"}),
		"allow": false,
		"reasons": ["an account may hold only one of system-admin, security-admin and auditor, but this one holds auditor and security-admin"],
	},
	"new_account_with_two_admin_roles": {
		"input": req(
			{"id": "pdx-o1", "org": "org-o", "org_kind": "operator", "roles": ["system-admin"]},
			"account.create",
			{"type": "account", "org_kind": "operator", "owner_org": "org-o", "roles": ["system-admin", "security-admin"]},
		),
		"allow": false,
		"reasons": ["a new account may hold only one of system-admin, security-admin and auditor, not security-admin and system-admin"],
	},
}

# The three duties are the three roles named in the policy.
test_three_duties if {
	data.pdx.sod.admin_roles == ["system-admin", "security-admin", "auditor"]
}

# Every write action the matrix knows is outside the auditor's read set.
test_writes_are_not_reads if {
	every a in ["dataset.register", "computation.request", "computation.approve", "policy.write", "kms.admin", "account.create"] {
		not a in data.pdx.sod.read_actions
	}
}
