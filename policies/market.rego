# The market's listing pre-check: what a product must show before it is listed.
#
# Input: action "market.list", resource {type: "product", owner_org, provenance (true when a
# provenance statement with evidence is attached: DSL art. 33, the source of the data),
# delivery_modes, offers: [{delivery}], datasets: [{id, level, open_attribute, pi}]}.
# Download delivers rows, so it is for `open` data without personal information only;
# anything else is computation-only (the grading matrix's row rules say the same).
package pdx.market

import rego.v1

resource := object.get(input, "resource", {})

listing if input.action == "market.list"

delivery_modes := ["computation", "download"]

modes contains m if some m in object.get(resource, "delivery_modes", [])

modes contains o.delivery if some o in object.get(resource, "offers", [])

violations contains "a product is listed only with a provenance statement and its evidence (DSL art. 33)" if {
	listing
	not resource.provenance == true
}

violations contains "a product needs at least one offer" if {
	listing
	count(object.get(resource, "offers", [])) == 0
}

violations contains msg if {
	listing
	some m in modes
	not m in delivery_modes
	msg := sprintf("unknown delivery mode '%v'", [m])
}

violations contains msg if {
	listing
	"download" in modes
	some ds in object.get(resource, "datasets", [])
	ds.open_attribute != "open"
	msg := sprintf(
		"download is offered only on open data, and dataset %v is %v (%v): computation only",
		[ds.id, ds.open_attribute, ds.level],
	)
}

violations contains msg if {
	listing
	"download" in modes
	some ds in object.get(resource, "datasets", [])
	ds.pi == true
	msg := sprintf("dataset %v holds personal information: it is never offered for download", [ds.id])
}

violations contains msg if {
	listing
	some ds in object.get(resource, "datasets", [])
	ds.open_attribute == "closed"
	msg := sprintf("dataset %v is closed (不予开放): it cannot be listed", [ds.id])
}
