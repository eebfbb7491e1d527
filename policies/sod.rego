# Separation of duties (三员分立, GB/T 22239-2019 level 3; docs/compliance.md AUD-08).
#
# The system, security and audit administrators are distinct: no account may hold two
# of these roles, no account may be created holding two, and the auditor changes
# nothing. These are invariants: no grading-matrix data can lift them.
package pdx.sod

import rego.v1

# The three separated administrative duties. (Arrays, not sets: see authz.rego.)
admin_roles := ["system-admin", "security-admin", "auditor"]

# Actions that change no state. The auditor may perform these and no others; an action
# missing here (including any the matrix data adds later) counts as a write.
read_actions := [
	"dataset.read_metadata",
	"dataset.preview",
	"dataset.download",
	"ledger.read",
	"audit.read",
	"policy.read",
	"catalog.read",
	"account.read",
	"ledger.verifier_key",
	"computation.read",
	"contract.read",
	"market.agreement_read",
	"market.statement_read",
	"operator.read",
	"node.read",
	"compliance.read",
	"kms.read",
]

# A person's own second factors (passkeys): every person, the auditor included, manages
# their own; the domain lets no one touch another's (exchange/passkeys.py).
own_authenticator_actions := ["account.second_factor"]

subject_roles contains r if {
	some r in input.subject.roles
	is_string(r)
}

new_account_roles contains r if {
	input.action == "account.create"
	some r in input.resource.roles
	is_string(r)
}

# rego-cpp quotes a builtin-made string that sprintf embeds in longer text, so messages
# that include one are joined with concat (policies/README.md, "regopy and OPA").
violations contains msg if {
	count(subject_roles) > 1
	held := [r | some r in admin_roles; r in subject_roles]
	count(held) > 1
	msg := concat("", [
		"separation of duties (三员分立): an account may hold only one of system-admin, ",
		"security-admin and auditor, but this one holds ",
		concat(" and ", sort(held)),
	])
}

violations contains msg if {
	"auditor" in subject_roles
	not input.action in read_actions
	not input.action in own_authenticator_actions
	msg := sprintf("separation of duties (三员分立): the auditor changes nothing, and '%v' is a write action", [input.action])
}

violations contains msg if {
	input.action == "account.create"
	held := [r | some r in admin_roles; r in new_account_roles]
	count(held) > 1
	msg := concat("", [
		"separation of duties (三员分立): a new account may hold only one of system-admin, ",
		"security-admin and auditor, not ",
		concat(" and ", sort(held)),
	])
}

# -- People (issue 11): duties belong to persons, and nobody serves themselves -----------

subject_person := p if {
	p := input.subject.person_id
	is_string(p)
	p != ""
}

# Creating an organisation's accounts and managing them (deactivate, rotate a secret) are
# the same duty (issue 11). (An array, not a set: see authz.rego.)
account_admin_actions := ["account.create", "account.deactivate", "account.rotate_secret"]

# An organisation's clients and people are created by its own administrator person
# (or a client that person owns); the platform operator creates an organisation and
# its first administrator's invitation, and never acts as it.
violations contains "separation of duties: accounts and people are created by a registered administrator person" if {
	input.action in account_admin_actions
	not "auditor" in subject_roles
	not subject_person
}

violations contains "separation of duties: accounts and people are created by a registered administrator person" if {
	input.action in account_admin_actions
	subject_person
	input.subject.org_admin != true
}

violations contains "separation of duties: an organisation's accounts and people are created only by its own administrator, never by the platform operator" if {
	input.action in account_admin_actions
	not "auditor" in subject_roles
	input.resource.owner_org != input.subject.org
}

# Two-person rule: the second half of a dual-control action (a key destruction) is
# taken by another registered person, and neither is in the other's invitation lineage
# (who invited them, who invited that one, ...; and whoever issued or rotated the secret
# of the client a half acts through, with that person's lineage: they have seen it).
# exchange.people.dual_control_lineages walks them, bounded, and says whether each
# reached the top. So a person cannot approve through anyone they brought in, directly
# or through people those invited, nor through a credential they made for someone else,
# nor approve what those asked for.
dual := input.resource.dual_control

violations contains "two-person rule: the approver must be a registered person" if {
	dual
	not subject_person
}

violations contains "two-person rule: the request was not made by a registered person" if {
	dual
	not is_string(dual.requested_by_person)
}

violations contains "two-person rule: the same person cannot approve their own request, through any client" if {
	dual
	subject_person == dual.requested_by_person
}

# The lineages must have been walked, to the top, for these two people.
violations contains "two-person rule: the invitation lineage of both people could not be checked" if {
	dual
	subject_person
	not dual.lineage_complete == true
}

violations contains "two-person rule: the invitation lineage of both people could not be checked" if {
	dual
	subject_person
	dual.approver_person != subject_person
}

violations contains "two-person rule: the invitation lineage of both people could not be checked" if {
	dual
	subject_person
	not is_array(dual.approver_lineage)
}

violations contains "two-person rule: the invitation lineage of both people could not be checked" if {
	dual
	subject_person
	not is_array(dual.requested_by_lineage)
}

# Everyone above the approver, and above the requester (the direct inviter included,
# however the caller's view and the stored request name them).
approver_ancestors contains p if {
	some p in dual.approver_lineage
	is_string(p)
}

approver_ancestors contains input.subject.created_by if is_string(input.subject.created_by)

requester_ancestors contains p if {
	some p in dual.requested_by_lineage
	is_string(p)
}

requester_ancestors contains dual.requested_by_created_by if is_string(dual.requested_by_created_by)

violations contains "two-person rule: the approver (or the credential it acts with) was created by the requester, directly or through people they invited" if {
	dual
	subject_person
	dual.requested_by_person in approver_ancestors
}

violations contains "two-person rule: the requester (or the credential it acted with) was created by the approver, directly or through people they invited" if {
	dual
	subject_person
	subject_person in requester_ancestors
}
