"""The HTTP API: search, query plans, image thumbnails, merchant product CRUD, and the search page."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from importlib import resources
from typing import Literal

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from PIL import Image
from pydantic import BaseModel, field_validator

from imgsearch_pipeline.analysis.images import BadImage, decode_image
from imgsearch_pipeline.api.security import ApiSecurity, Limits, require_admin
from imgsearch_pipeline.config import load_settings
from imgsearch_pipeline.search.parser import MAX_QUERY_CHARS, QueryTooLong, parse_query
from imgsearch_pipeline.search.plan import QueryPlan
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.search.service import ImageNotFound
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg


class ErrorBody(BaseModel):
    """Every error's body: a message, or (422 from request validation) FastAPI's list of invalid fields."""

    detail: str | list[dict]


# Any operation may be refused for size (413) or rate (429) or find a server away (503); 422 covers both the
# validation errors and the app's own ("query too long", "not a usable image").
router = APIRouter(responses={code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429, 503)})
MAX_UPLOAD_BYTES = 10 * 2**20
_REINDEX = threading.Lock()  # one rebuild at a time: two would race for the same new index generation


def _default_resources() -> dict:
    from imgsearch_pipeline.definitions import build_resources

    return build_resources(load_settings())


def create_app(resources_factory: Callable[[], dict] = _default_resources,
               security: ApiSecurity | None = None) -> FastAPI:
    """The app over a set of Dagster resources (the same objects jobs use); built on first request."""
    app = FastAPI(title="imgsearch", version="0.1.0",
                  description="Search a product-image catalogue by what the photos show.")
    app.state.security = security = security or ApiSecurity.from_env()
    app.add_middleware(Limits, security=security)
    if security.cors_origins:  # browsers elsewhere may search, never change the catalogue
        app.add_middleware(CORSMiddleware, allow_origins=security.cors_origins, allow_methods=["GET"])
    app.state.resources_factory = resources_factory
    app.state.resources = None
    app.include_router(router)
    app.add_exception_handler(OpenSearchConnectionError, _unavailable("the search index (OpenSearch)"))
    app.add_exception_handler(psycopg.OperationalError, _unavailable("the database (PostgreSQL)"))
    return app


def _unavailable(what: str):
    """A 503 that names the missing service and nothing else (no hosts, no credentials)."""
    async def handler(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"{what} is unreachable; try again shortly"},
                            headers={"Retry-After": "5"})

    return handler


def _res(request: Request) -> dict:
    state = request.app.state
    if state.resources is None:
        state.resources = state.resources_factory()
    return state.resources


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> str:
    return resources.files("imgsearch_pipeline.api").joinpath("static/index.html").read_text(encoding="utf-8")


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/parse", response_model=QueryPlan)
def parse(q: str = Query(..., max_length=MAX_QUERY_CHARS)) -> QueryPlan:
    try:
        return parse_query(q)
    except QueryTooLong as e:
        raise HTTPException(status_code=422, detail=str(e)) from e


@router.get("/search", response_model=SearchResponse)
def search(request: Request, q: str = Query("", max_length=MAX_QUERY_CHARS),
           size: int = Query(20, ge=1, le=100),
           mode: Literal["hybrid", "vector", "keyword"] = Query("hybrid", description="vector/keyword: baselines"),
           ) -> SearchResponse:
    try:
        return _res(request)["search"].service().search(q, size=size, mode=mode)
    except QueryTooLong as e:
        raise HTTPException(status_code=422, detail=str(e)) from e


@router.get("/similar", response_model=SearchResponse)
def similar(request: Request, image_id: int, q: str = Query("", max_length=MAX_QUERY_CHARS),
            size: int = Query(20, ge=1, le=100)) -> SearchResponse:
    """More like this: products that look like an indexed image, under the filters of `q`."""
    try:
        return _res(request)["search"].service().similar(image_id=str(image_id), query=q, size=size)
    except ImageNotFound as e:
        raise HTTPException(status_code=404, detail=str(e)) from e
    except QueryTooLong as e:
        raise HTTPException(status_code=422, detail=str(e)) from e


@router.post("/similar", response_model=SearchResponse)
async def similar_to_upload(request: Request, image: UploadFile, q: str = Form("", max_length=MAX_QUERY_CHARS),
                            size: int = Form(20, ge=1, le=100)) -> SearchResponse:
    """Search by photo: an uploaded image, under the filters of `q`."""
    data = await image.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(status_code=413, detail=f"image larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        return _res(request)["search"].service().similar(image=data, query=q, size=size)
    except BadImage as e:
        raise HTTPException(status_code=422, detail=f"not a usable image: {e}") from e
    except QueryTooLong as e:
        raise HTTPException(status_code=422, detail=str(e)) from e


@router.get("/images/{image_id}", responses={200: {"content": {"image/jpeg": {}}}})
def image(request: Request, image_id: int, w: int = Query(320, ge=32, le=1024)) -> Response:
    """A JPEG thumbnail of a catalogue image (looked up by id: no client-chosen S3 keys)."""
    res = _res(request)
    with res["postgres"].connect() as conn:
        key = pg.image_key(conn, image_id)
    if key is None:
        raise HTTPException(status_code=404, detail="no such image")
    try:
        img = decode_image(res["images"].read(key))
    except BadImage as e:
        raise HTTPException(status_code=422, detail=f"stored image cannot be shown: {e}") from e
    img.thumbnail((w, w), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return Response(buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


# Merchant-facing product CRUD ---------------------------------------------------------------------------


class ProductIn(pg.Product):
    """A product as the API accepts it: PostgreSQL text cannot hold NUL, so it is refused here (422), not
    by the database (500)."""

    @field_validator("name", "brand", "department", "shop_category", "source")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


@router.get("/products")
def list_products(request: Request, limit: int = Query(100, ge=1, le=1000),
                  offset: int = Query(0, ge=0, le=10**9)) -> list[dict]:
    with _res(request)["postgres"].connect() as conn:
        return pg.list_products(conn, limit, offset)


@router.get("/products/{product_id}")
def get_product(request: Request, product_id: str) -> dict:
    with _res(request)["postgres"].connect() as conn:
        product = pg.get_product(conn, product_id)
    if product is None:
        raise HTTPException(status_code=404, detail="no such product")
    return product


@router.post("/products", status_code=201, dependencies=[Depends(require_admin)])
def create_product(request: Request, product: ProductIn) -> dict:
    with _res(request)["postgres"].connect() as conn:
        if pg.get_product(conn, product.product_id) is not None:
            raise HTTPException(status_code=409, detail="product exists; use PUT to update it")
        pg.upsert_products(conn, [product.model_copy(update={"source": "api"})])
        return pg.get_product(conn, product.product_id)


@router.put("/products/{product_id}", dependencies=[Depends(require_admin)])
def update_product(request: Request, product_id: str, product: ProductIn) -> dict:
    """Replace a product's catalogue data and refresh its documents in the index (no model call)."""
    if product.product_id != product_id:
        raise HTTPException(status_code=422, detail="product_id in the body differs from the path")
    res = _res(request)
    with res["postgres"].connect() as conn:
        if pg.get_product(conn, product_id) is None:
            raise HTTPException(status_code=404, detail="no such product")
        pg.upsert_products(conn, [product.model_copy(update={"source": "api"})])
        conn.commit()
        _reindex_product(res, conn, product_id)
        return pg.get_product(conn, product_id)


@router.delete("/products/{product_id}", status_code=204, dependencies=[Depends(require_admin)])
def delete_product(request: Request, product_id: str) -> Response:
    """Delete a product, its images' rows and analyses, and their documents in the search index."""
    res = _res(request)
    with res["postgres"].connect() as conn:
        image_ids = pg.delete_product(conn, product_id)
    if image_ids is None:
        raise HTTPException(status_code=404, detail="no such product")
    if image_ids:
        opensearch = res["opensearch"]
        client = opensearch.client()
        target = osx.alias_target(client, opensearch.alias)
        if target:
            osx.delete_documents(client, target, image_ids)
            client.indices.refresh(index=target)
    return Response(status_code=204)


# Operations ------------------------------------------------------------------------------------------------


class Reindexed(BaseModel):
    alias: str
    index: str
    documents: int


class Released(BaseModel):
    partitions: list[str]
    detail: str


@router.post("/admin/reindex", response_model=Reindexed, dependencies=[Depends(require_admin)])
def reindex(request: Request) -> Reindexed:
    """Rebuild the search index from PostgreSQL alone (the `rebuild_index_job`, no model call); the alias moves
    only when the new generation is complete. Takes as long as the rebuild; 409 while another one runs."""
    from imgsearch_pipeline.jobs import rebuild_index_job

    if not _REINDEX.acquire(blocking=False):
        raise HTTPException(status_code=409, detail="a reindex is already running")
    try:
        res = _res(request)
        rebuild_index_job.execute_in_process(resources={k: res[k] for k in ("postgres", "opensearch", "analysis")})
    finally:
        _REINDEX.release()
    opensearch = res["opensearch"]
    client = opensearch.client()
    target = osx.alias_target(client, opensearch.alias) or ""
    return Reindexed(alias=opensearch.alias, index=target, documents=osx.count(client, target) if target else 0)


@router.post("/admin/failures/replay", response_model=Released, dependencies=[Depends(require_admin)])
def replay_failures(request: Request, partition: str | None = Query(None, max_length=1024)) -> Released:
    """Release recorded permanent failures (all, or one partition's) so the next run of their partitions
    retries them, like `imgsearch failures replay` without the run."""
    with _res(request)["postgres"].connect() as conn:
        partitions = pg.release_failures(conn, partition)
    detail = (f"{len(partitions)} partitions hold released failures; their next run retries them "
              "(imgsearch ingest --partition P, or the replay_failures job)" if partitions else "nothing to replay")
    return Released(partitions=partitions, detail=detail)


def _reindex_product(res: dict, conn, product_id: str) -> None:
    opensearch, provider = res["opensearch"], res["analysis"].get()
    client = opensearch.client()
    target = osx.alias_target(client, opensearch.alias)
    if target:
        osx.bulk_index(client, target, pg.iter_index_rows(conn, provider.model_version, product_id=product_id))
        client.indices.refresh(index=target)


app = create_app()
