"""POST /v1/datasets/scan: a registration's dry run that reports every problem at once."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import exchange
from exchange.scan_only import ScanOnly, ScanReport
from gateway.pep import Enforce, Target
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep
from gateway.upload import check_metadata_depth, registration_body, stream_registration

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _own_registration(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    # Whoever may register for its organisation may ask what registering would meet. The
    # declared grade is not known yet (and may be the very thing the scan finds wrong), so
    # the question is registration at the lowest grade; nothing is stored either way.
    return [
        Target(
            {
                "type": "dataset",
                "owner_org": caller.org_id,
                "level": "general-1",
                "open_attribute": "conditional",
                "pi": False,
            }
        )
    ]


ScanRegistration = Enforce("dataset.register", resources=_own_registration)


@router.post(
    "/scan",
    dependencies=[Depends(ScanRegistration)],
    openapi_extra=registration_body({"type": "string", "description": "JSON metadata"}),
)
async def scan_dataset(request: Request, caller: CallerDep, platform: PlatformDep) -> ScanReport:
    """Run registration's checks (metadata, CSV, sensitivity scan, grading) without storing.

    Answers 200 with every finding (`findings`, each with the problem `type` registration
    would answer with) and the per-field detections; nothing is stored or recorded.
    """
    dry = ScanOnly(caller, max_bytes=platform.settings.max_upload_bytes)

    def metadata(raw: bytes) -> None:
        check_metadata_depth(raw)  # json.loads would recurse out (a 500)
        dry.metadata(raw, platform.session)

    try:
        await stream_registration(
            request,
            max_bytes=platform.settings.max_upload_bytes,
            on_metadata=metadata,
            on_file=dry.write,
        )
        return await run_in_threadpool(dry.complete)
    except BaseException:
        await run_in_threadpool(dry.abort)
        raise
