"""The operator dashboard: a static bundle (built from ``frontend/``, committed under
``static/``) served by the collector's own app, so running it needs no Node.

``GET /`` is the page; its scripts and styles are under ``/static/``. Nothing is mounted
at ``/`` itself, so no API route added later is shadowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC: Final = Path(__file__).resolve().parent / "static"
INDEX: Final = STATIC / "index.html"


router = APIRouter()


@router.get("/", include_in_schema=False)
async def dashboard() -> Response:
    if not INDEX.is_file():  # a source checkout without the bundle: say how to build it
        message = "dashboard bundle missing: run scripts/build-frontend.sh\n"
        return PlainTextResponse(message, status_code=404)
    return FileResponse(INDEX, headers={"Cache-Control": "no-cache"})


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on ``app`` at ``/`` (page) and ``/static/`` (assets)."""
    app.include_router(router)
    if INDEX.is_file():
        app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")
