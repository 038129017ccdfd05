"""The operator dashboard: a static bundle (built from ``frontend/``, committed under
``static/``) served by the collector's own app, so running it needs no Node.

``GET /`` is the page; its scripts and styles are under ``/static/``. Nothing is mounted
at ``/`` itself, so no API route added later is shadowed. ``GET /dashboard/config.json``
tells the page the basemap (``[dashboard]`` of the collector's configuration).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from cloud_collector.config import DashboardConfig

STATIC: Final = Path(__file__).resolve().parent / "static"
INDEX: Final = STATIC / "index.html"


router = APIRouter()


@router.get("/", include_in_schema=False)
async def dashboard() -> Response:
    if not INDEX.is_file():  # a source checkout without the bundle: say how to build it
        message = "dashboard bundle missing: run scripts/build-frontend.sh\n"
        return PlainTextResponse(message, status_code=404)
    return FileResponse(INDEX, headers={"Cache-Control": "no-cache"})


def page_config(cfg: DashboardConfig) -> dict[str, object]:
    """What the page reads: the basemap as a raster source (None: draw the fleet's roads)."""
    if cfg.basemap_tiles is None:
        return {"basemap": None}
    basemap = {
        "tiles": [cfg.basemap_tiles],
        "attribution": cfg.basemap_attribution,
        "maxzoom": cfg.basemap_max_zoom,
    }
    return {"basemap": basemap}


@router.get("/dashboard/config.json", include_in_schema=False)
async def dashboard_config(request: Request) -> JSONResponse:
    cfg = getattr(request.app.state, "dashboard", None)
    if not isinstance(cfg, DashboardConfig):
        cfg = DashboardConfig()
    return JSONResponse(page_config(cfg), headers={"Cache-Control": "no-cache"})


def mount_dashboard(app: FastAPI, cfg: DashboardConfig | None = None) -> None:
    """Serve the dashboard on ``app`` at ``/`` (page) and ``/static/`` (assets), with the
    map's settings ``cfg`` (default: no basemap server)."""
    app.state.dashboard = cfg if cfg is not None else DashboardConfig()
    app.include_router(router)
    if INDEX.is_file():
        app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")
