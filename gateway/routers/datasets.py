"""/v1/datasets: registration (streaming multipart), catalogue, detail, synthetic preview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

import exchange
from exchange.levels import Level
from gateway.security import CallerDep, PlatformDep
from gateway.upload import stream_registration

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_REGISTER_DOC = """Register a dataset: multipart/form-data with a `metadata` part (JSON,
COMPLIANCE.md §1 fields) and a `file` part (UTF-8 CSV with a header row).

The file is scanned for sensitive values while it streams (ID numbers, mobiles,
bank cards, e-mail, plates, names next to ID columns) and stored encrypted. A
declared `level` below the most sensitive field's level is refused (就高从严)."""


@router.post(
    "",
    status_code=201,
    response_model=exchange.DatasetPublic,
    description=_REGISTER_DOC,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["metadata", "file"],
                        "properties": {
                            "metadata": exchange.DatasetCreate.model_json_schema(),
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
)
async def register_dataset(
    request: Request, caller: CallerDep, platform: PlatformDep
) -> exchange.DatasetPublic:
    request.state.audit_event = "dataset.registration_failed"
    registration = exchange.Registration(platform.catalog, caller, now=platform.now())
    request.state.object_id = registration.dataset_id
    try:
        await stream_registration(
            request,
            max_bytes=platform.settings.max_upload_bytes,
            on_metadata=lambda raw: registration.metadata(raw, platform.session),
            on_file=registration.write,
        )
        return await run_in_threadpool(registration.complete, platform.session)
    except BaseException:
        await run_in_threadpool(registration.abort)
        raise


@router.get("", response_model=list[exchange.DatasetSummary])
def list_datasets(
    caller: CallerDep,
    platform: PlatformDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    owner_org: str | None = None,
    level: Level | None = None,
) -> list[exchange.DatasetSummary]:
    with platform.session() as session:
        return exchange.list_datasets(
            session, limit=limit, offset=offset, owner_org=owner_org, level=level
        )


@router.get("/{dataset_id}", response_model=exchange.DatasetPublic)
def get_dataset(
    dataset_id: str, caller: CallerDep, platform: PlatformDep
) -> exchange.DatasetPublic:
    with platform.session() as session:
        return exchange.get_dataset(session, dataset_id, viewer=caller)


@router.get("/{dataset_id}/preview", response_model=exchange.PreviewPublic)
def preview_dataset(
    dataset_id: str,
    caller: CallerDep,
    platform: PlatformDep,
    rows: Annotated[int, Query(ge=1, le=200)] = 20,
) -> exchange.PreviewPublic:
    with platform.session() as session:
        return exchange.preview(session, dataset_id, rows=rows)
