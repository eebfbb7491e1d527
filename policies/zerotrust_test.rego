# Tests for the per-request context checks. Cases: see authz_test.rego for the format.
package pdx.zerotrust_test

import rego.v1

now := 1800000000

security := {"id": "pdx-s1", "org": "org-s", "org_kind": "security", "roles": ["security-admin"]}

req(context) := {"subject": security, "action": "policy.read", "resource": {"type": "policy"}, "context": context}

cases := {
	"fresh_token": {
		"input": req({"time": now, "token_issued_at": now - 899}),
		"allow": true,
	},
	"old_token": {
		"input": req({"time": now, "token_issued_at": now - 901}),
		"allow": false,
		"reasons": ["the access token is 901 s old, over the 900 s limit"],
	},
	"token_from_the_future": {
		"input": req({"time": now, "token_issued_at": now + 3600}),
		"allow": false,
		"reasons": ["issued in the future"],
	},
	"no_time": {
		"input": req({"token_issued_at": now}),
		"allow": false,
		"reasons": ["lacks context.time"],
	},
	"time_as_string": {
		"input": req({"time": "2027-01-15T00:00:00Z", "token_issued_at": now}),
		"allow": false,
		"reasons": ["lacks context.time"],
	},
	"no_token_time": {
		"input": req({"time": now}),
		"allow": false,
		"reasons": ["issue time (context.token_issued_at) is missing"],
	},
	"certificate_mismatch": {
		"input": req({"time": now, "token_issued_at": now, "cert_binding": "mismatch"}),
		"allow": false,
		"reasons": ["not the one the access token is bound to"],
	},
	"unknown_binding_state": {
		"input": req({"time": now, "token_issued_at": now, "cert_binding": "maybe"}),
		"allow": false,
		"reasons": ["unknown certificate binding state 'maybe'"],
	},
	"binding_required_for_action": {
		"input": req({"time": now, "token_issued_at": now, "cert_binding": "none"}),
		"matrix": {"cert_binding": {"required_actions": ["policy.read"], "required_from_level": null}},
		"allow": false,
		"reasons": ["'policy.read' here requires an access token bound to the client certificate"],
	},
	"binding_present_when_required": {
		"input": req({"time": now, "token_issued_at": now, "cert_binding": "bound"}),
		"matrix": {"cert_binding": {"required_actions": ["policy.read"], "required_from_level": null}},
		"allow": true,
	},
	"binding_required_from_level": {
		"input": {
			"subject": {"id": "pdx-c1", "org": "org-c", "org_kind": "enterprise", "roles": ["data-consumer"]},
			"action": "dataset.read_metadata",
			"resource": {"type": "dataset", "id": "ds-1", "level": "general-3", "open_attribute": "open", "owner_org": "org-p"},
			"context": {"time": now, "token_issued_at": now},
		},
		"matrix": {"cert_binding": {"required_actions": [], "required_from_level": "general-3"}},
		"allow": false,
		"reasons": ["requires an access token bound to the client certificate"],
	},
}

test_token_limit_is_fifteen_minutes if {
	data.pdx.matrix.session.max_token_age_s <= 900
}
