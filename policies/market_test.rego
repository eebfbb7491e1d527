# Tests for the market's listing pre-check (market.rego). Cases: see authz_test.rego.
package pdx.market_test

import rego.v1

now := 1800000000

ctx := {"time": now, "token_issued_at": now - 60, "cert_binding": "none"}

provider := {"id": "pdx-p1", "org": "p1", "org_kind": "provider", "roles": ["data-provider"]}

req(resource) := {"subject": provider, "action": "market.list", "resource": resource, "context": ctx}

conditional := [{"id": "d1", "level": "general-2", "open_attribute": "conditional", "pi": false}]

open_pi := [{"id": "d1", "level": "general-1", "open_attribute": "open", "pi": true}]

open_plain := [{"id": "d1", "level": "general-1", "open_attribute": "open", "pi": false}]

product := {
	"type": "product",
	"owner_org": "p1",
	"provenance": true,
	"delivery_modes": ["computation"],
	"offers": [{"delivery": "computation"}],
	"datasets": conditional,
}

cases := {
	"complete_product_is_listed": {"input": req(product), "allow": true},
	"no_provenance_is_refused": {
		"input": req(object.union(product, {"provenance": false})),
		"allow": false,
		"reasons": ["provenance statement and its evidence"],
	},
	"no_offer_is_refused": {
		"input": req(object.union(product, {"offers": []})),
		"allow": false,
		"reasons": ["at least one offer"],
	},
	"download_offer_on_conditional_data_is_refused": {
		"input": req(object.union(product, {"offers": [{"delivery": "download"}]})),
		"allow": false,
		"reasons": ["download is offered only on open data"],
	},
	"download_of_personal_information_is_refused_even_when_open": {
		"input": req(object.union(product, {"delivery_modes": ["download"], "datasets": open_pi})),
		"allow": false,
		"reasons": ["holds personal information"],
	},
	"download_of_open_data_is_listed": {
		"input": req(object.union(product, {"delivery_modes": ["download"], "datasets": open_plain})),
		"allow": true,
	},
	"another_provider_cannot_list": {
		"input": req(object.union(product, {"owner_org": "p2"})),
		"allow": false,
		"reasons": ["only for the subject's own organisation"],
	},
}
