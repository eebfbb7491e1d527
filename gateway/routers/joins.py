"""/v1/datasets/{id}/join-keys: a provider declares which identifier columns may be joined."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from audit.catalogue import Event
from exchange import joinkeys as xj
from exchange import resources
from gateway.pep import Enforce, path_resource
from gateway.security import SessionDep
from gateway.writes import WriteDep

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


_own_dataset = path_resource(resources.policy_resource, "dataset_id")


# Declaring join keys is part of the provider's registration of its own dataset.
DeclareJoinKeys = Enforce("dataset.register", resources=_own_dataset)
ReadJoinKeys = Enforce("dataset.read_metadata", resources=_own_dataset)


class JoinKeysIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[xj.JoinKey] = Field(max_length=16)


@router.put("/{dataset_id}/join-keys", dependencies=[Depends(DeclareJoinKeys)])
def declare_join_keys(dataset_id: str, body: JoinKeysIn, w: WriteDep) -> xj.JoinKeys:
    """Declare the dataset's joinable identifier columns (replaces the previous set).

    Only a declared column may be the key of a private join (`psi.*`, `stats.*` with a
    `join` clause); 422 when a column does not exist.
    """
    w.failing_as(Event.DATASET_JOIN_KEYS_FAILED, dataset_id)
    return w.run(xj.declare_join_keys, dataset_id, body.keys)


@router.get("/{dataset_id}/join-keys", dependencies=[Depends(ReadJoinKeys)])
def get_join_keys(dataset_id: str, session: SessionDep) -> xj.JoinKeys:
    """The dataset's joinable columns."""
    return xj.JoinKeys(keys=xj.join_keys(session, dataset_id))
