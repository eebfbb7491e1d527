"""Privacy routes: a dataset's analysis rules and budget, and the query a computation binds.

Thin: the rules, budgets, bindings and commitments live in `exchange` (analysis_rules,
budgets, approval_binding, commitments). Every route passes the enforcement point: the
rules are set under `dataset.register` (the provider's own dataset metadata) and read,
with the budget, under `dataset.read_metadata`; a computation's query under
`computation.read`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel

from audit.catalogue import Event
from exchange import analysis_rules, budgets, commitments, resources
from exchange.approval_binding import binding_for
from exchange.computations.state import load
from exchange.errors import NotFound
from gateway.pep import Enforce, path_resource
from gateway.security import CallerDep, ComputeDep

router = APIRouter(prefix="/v1", tags=["privacy"])


_dataset = path_resource(resources.policy_resource, "dataset_id")
_computation = path_resource(resources.computation_resource, "computation_id")


SetRules = Enforce("dataset.register", resources=_dataset)
ReadDataset = Enforce("dataset.read_metadata", resources=_dataset)
ReadComputation = Enforce("computation.read", resources=_computation)


class QueryPublic(BaseModel):
    """What a computation's approvals bind, its digest, and the caller's openings."""

    computation_id: str
    binding: dict[str, Any]
    query_digest: str
    openings: list[dict[str, str]]


@router.put("/datasets/{dataset_id}/analysis-rules", dependencies=[Depends(SetRules)])
def set_analysis_rules(
    dataset_id: str,
    rules: Annotated[dict[str, Any], Body()],
    request: Request,
    caller: CallerDep,
    compute: ComputeDep,
) -> analysis_rules.AnalysisRulesPublic:
    """Replace the dataset's analysis rules (its provider only); on the ledger."""
    request.state.audit_event = Event.DATASET_ANALYSIS_RULES_FAILED
    request.state.object_id = dataset_id
    with compute.sessions() as session, session.begin():
        return analysis_rules.set_rules(
            session, compute.trail, caller, dataset_id, rules, now=compute.clock()
        )


@router.get("/datasets/{dataset_id}/analysis-rules", dependencies=[Depends(ReadDataset)])
def get_analysis_rules(dataset_id: str, compute: ComputeDep) -> analysis_rules.AnalysisRulesPublic:
    """The dataset's analysis rules: what may be asked of it, within which bounds."""
    with compute.sessions() as session:
        return analysis_rules.get_rules(session, dataset_id)


@router.get("/datasets/{dataset_id}/privacy-budget", dependencies=[Depends(ReadDataset)])
def privacy_budget(dataset_id: str, caller: CallerDep, compute: ComputeDep) -> budgets.BudgetPublic:
    """Spent and remaining ε on the dataset's lineage: a requester sees its own, providers all."""
    with compute.sessions() as session:
        return budgets.budget_view(
            session,
            compute.catalog,
            caller,
            dataset_id,
            limits=compute.budget_limits,
            now=compute.clock(),
        )


@router.get("/computations/{computation_id}/query", dependencies=[Depends(ReadComputation)])
def computation_query(computation_id: str, caller: CallerDep, compute: ComputeDep) -> QueryPublic:
    """The query a provider approves (`query_digest`), and the ledger openings the caller holds.

    The requester opens its computation's `query` and `result` commitments; each provider
    the `query` one (and `result` when it reviews the release). Overseers see no opening.
    """
    with compute.sessions() as session:
        comp = load(session, computation_id)
        providers = {i.provider_org for i in comp.inputs}
        if caller.org_id == comp.requester_org:
            kinds: tuple[str, ...] = ("query", "result")
        elif caller.org_id in providers:
            review = any(i.release_approval != "not-required" for i in comp.inputs)
            kinds = ("query", "result") if review else ("query",)
        elif resources.sees_everything(caller):
            kinds = ()
        else:
            raise NotFound("no such computation", computation_id=computation_id)
        binding = binding_for(session, comp)
        return QueryPublic(
            computation_id=comp.id,
            binding=binding.as_dict(),
            query_digest=binding.digest(),
            openings=commitments.openings(session, comp.id, kinds),
        )
