# Per-request context checks (NIST SP 800-207; GB/T 43696-2024; docs/compliance.md ZT-03, ZT-04).
#
# Time is an input (context.time, UTC epoch seconds), never time.now_ns(): decisions
# stay deterministic, testable and safe to cache on their exact input.
package pdx.zerotrust

import rego.v1

m := data.pdx.matrix

ctx := object.get(input, "context", {})

now := ctx.time if is_number(ctx.time)

token_age := now - ctx.token_issued_at if is_number(ctx.token_issued_at)

binding := object.get(ctx, "cert_binding", "none")

binding_states := ["bound", "none", "mismatch"]

level_rank := {l: i | some i, l in m.levels}

violations contains "the decision input lacks context.time (UTC epoch seconds)" if not now

violations contains "the access token's issue time (context.token_issued_at) is missing" if {
	not is_number(ctx.token_issued_at)
}

violations contains msg if {
	token_age > m.session.max_token_age_s
	msg := sprintf(
		"the access token is %v s old, over the %v s limit: authenticate again",
		[token_age, m.session.max_token_age_s],
	)
}

violations contains "the access token was issued in the future" if {
	token_age < 0 - m.session.clock_skew_s
}

violations contains msg if {
	binding != "bound"
	not binding in binding_states
	msg := sprintf("unknown certificate binding state '%v'", [binding])
}

violations contains "the client certificate is not the one the access token is bound to" if {
	binding == "mismatch"
}

violations contains msg if {
	binding != "bound"
	binding_required
	msg := sprintf("'%v' here requires an access token bound to the client certificate (mTLS)", [input.action])
}

binding_required if input.action in m.cert_binding.required_actions

binding_required if {
	is_string(m.cert_binding.required_from_level)
	level_rank[input.resource.level] >= level_rank[m.cert_binding.required_from_level]
}
