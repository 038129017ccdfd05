"""``/v1/audit``: the audit log of authenticated requests, oldest first, paged by cursor
(admin only, ``auth.ACCESS``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from cloud_collector.audit import AuditTrail
from cloud_collector.auth import CallerDep
from cloud_collector.geojson import iso_ms
from cloud_collector.routes.params import CURSOR_MAX, TIME_DOC, bad, int_param, span
from cloud_collector.store.access import MAX_AUDIT_LIMIT, Access, AuditQuery

router = APIRouter()


@router.get("/v1/audit", summary="The audit log of authenticated requests, oldest first")
async def audit(
    request: Request,
    caller: CallerDep,
    since: Annotated[str | None, Query(description=TIME_DOC + "; inclusive")] = None,
    until: Annotated[str | None, Query(description=TIME_DOC + "; exclusive")] = None,
    limit: Annotated[str | None, Query(description="page size, 1 to 10000 (default 100)")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    since_ms, until_ms = span(since, until)
    if cursor is not None and not 0 < len(cursor) <= CURSOR_MAX:
        raise bad("cursor", "not a cursor of this API")
    q = AuditQuery(
        since_ms=since_ms,
        until_ms=until_ms,
        limit=int_param("limit", limit, 100, 1, MAX_AUDIT_LIMIT),
        cursor=cursor,
    )
    trail: AuditTrail = request.app.state.audit
    access: Access = request.app.state.access
    await trail.flush()
    page = await access.audit(q)
    caller.rows = len(page.entries)
    entries = [{**asdict(e), "time": iso_ms(e.time_ms)} for e in page.entries]
    return JSONResponse({"entries": entries, "next_cursor": page.next_cursor})
