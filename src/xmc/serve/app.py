"""The FastAPI application: routes, JSON errors and the request body limit."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import XMCError
from .predictor import Job, Options, document_text
from .registry import ModelRegistry
from .schemas import (
    ErrorResponse,
    LabelList,
    ModelInfo,
    ModelList,
    PredictRequest,
    PredictResponse,
    ReloadResponse,
)
from .settings import ServeSettings

logger = logging.getLogger(__name__)


class ApiError(HTTPException):
    """An error answered as JSON ``{"error", "detail"}`` with its status code."""

    def __init__(self, status: int, error: str, detail: Any = None):
        super().__init__(status_code=status, detail=detail)
        self.error = error


def _error(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 before they are read whole.

    A declared ``Content-Length`` over the limit is refused before any of the body is read; a
    body without one (chunked) is counted as it arrives and refused at the first chunk past the limit.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        detail = f"request body over {limit} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            logger.warning("%s %s -> 413: Content-Length %s", scope.get("method"), scope.get("path"), int(length))
            response = _error(413, "request body too large", detail)
            return await response(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, "request body too large", detail)
            return message

        await self.app(scope, limited_receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    def log(request: Request, status: int, detail: Any) -> None:
        logger.warning("%s %s -> %d: %s", request.method, request.url.path, status, detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        error = getattr(exc, "error", None) or {404: "not found", 405: "method not allowed"}.get(
            exc.status_code, "request failed")
        log(request, exc.status_code, exc.detail)
        return _error(exc.status_code, error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and media != "application/json" and not media.endswith("+json"):  # read as no JSON
            detail = f"send the body as application/json, not {media or 'without a Content-Type'}"
            log(request, 415, detail)
            return _error(415, "unsupported media type", detail)
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            detail = "; ".join(f"{p.get('ctx', {}).get('error', p['msg'])} at character {p['loc'][-1]}"
                               for p in problems)
            log(request, 400, detail)
            return _error(400, "invalid JSON", detail)
        detail = [{"loc": [str(x) for x in p["loc"]], "msg": p["msg"]} for p in problems]
        log(request, 422, detail)
        return _error(422, "invalid request", detail)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        logger.error("%s %s -> 500", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error", "the server log has the details")


def create_app(models: Mapping[str, str], settings: ServeSettings | None = None, *,
               handle_sighup: bool = False) -> FastAPI:
    """The application serving ``models`` ({name: model directory}), each loaded now.

    Args:
        models: model name -> directory (the name is the URL's ``{name}``).
        settings: limits and batching (default :class:`ServeSettings`).
        handle_sighup: reload every model on SIGHUP (the CLI server; needs the main thread).

    Raises:
        XMCError: a directory is not a loadable model (the message names it).
    """
    settings = settings or ServeSettings()
    # One thread runs every model call (see xmc.serve.batcher for why).
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xmc-predict")
    registry = ModelRegistry(models, settings, executor)
    registry.load_all()
    state = {"ready": True}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if handle_sighup:
            import asyncio

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(registry.reload_all()))
        try:
            yield
        finally:
            state["ready"] = False
            await registry.close()
            executor.shutdown(wait=True)

    app = FastAPI(
        title="xmc", version=__version__, lifespan=lifespan,
        description="Extreme multi-label text classification: predict labels with saved xmc models.",
        responses={code: {"model": ErrorResponse} for code in (400, 404, 413, 422)},
    )
    app.state.registry = registry
    app.state.settings = settings
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    _install_error_handlers(app)

    def entry(name: str):
        loaded = registry.get(name)
        if loaded is None:
            raise ApiError(404, "unknown model", f"no model named {name!r}; serving: "
                                                 f"{', '.join(m.name for m in registry.all())}")
        return loaded

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Every model is loaded and requests are accepted")
    async def readyz():
        if not state["ready"]:
            raise ApiError(503, "not ready", "shutting down")
        return {"status": "ready", "models": [m.name for m in registry.all()]}

    @app.get("/v1/models", response_model=ModelList, summary="The served models")
    async def list_models():
        return {"models": [m.info() for m in registry.all()]}

    @app.get("/v1/models/{name}", response_model=ModelInfo, summary="A model's kind, labels, config and versions")
    async def model_info(name: str):
        return entry(name).info(with_config=True)

    @app.get("/v1/models/{name}/labels", response_model=LabelList, summary="Label names, optionally by prefix")
    async def labels(name: str, prefix: str = Query("", description="only names starting with this")):
        names = entry(name).model.labels_.names
        matching = [n for n in names if n.startswith(prefix)] if prefix else names
        return {"model": name, "prefix": prefix, "total": len(matching),
                "labels": matching[:settings.max_labels_listed]}

    @app.post("/v1/models/{name}/predict", response_model=PredictResponse,
              summary="Labels of one or many documents, best first")
    async def predict(name: str, body: PredictRequest):
        loaded = entry(name)  # this request runs on this version, even if a reload swaps it meanwhile
        if len(body.documents) > settings.max_documents:
            raise ApiError(422, "too many documents",
                           f"{len(body.documents)} documents; at most {settings.max_documents} a request")
        documents = []
        for i, doc in enumerate(body.documents):
            record = doc.model_dump()
            record["id"] = str(i) if doc.id is None else str(doc.id)
            if not document_text(record):
                raise ApiError(422, "empty document", f"documents[{i}] has no title, description or text")
            documents.append(record)
        allowed = None
        if body.allowed_labels is not None:
            index = loaded.model.labels_.index
            unknown = [n for n in body.allowed_labels if n not in index]
            if unknown:
                raise ApiError(422, "unknown labels", f"allowed_labels not in model {name!r}: {unknown[:10]}")
            allowed = np.unique(np.fromiter((index[n] for n in body.allowed_labels), dtype=np.int64))
        options = Options(topk=body.topk, threshold=body.threshold, beam_size=body.beam_size,
                          constrained=allowed is not None)
        try:
            predictions = await loaded.batcher.submit(Job(documents, options, allowed))
        except (XMCError, ValueError) as exc:  # options the model rejects (e.g. masked-bert and beam_size)
            raise ApiError(422, "cannot predict", f"{loaded.kind}: {exc}") from None
        return JSONResponse({"model": name, "model_version": loaded.version, "predictions": predictions})

    @app.post("/v1/models/{name}/reload", response_model=ReloadResponse,
              summary="Load the model directory again and swap it in (the old version on failure)")
    async def reload(name: str):
        current = entry(name)
        t0 = time.perf_counter()
        try:
            new, old = await registry.reload(name)
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving; say why
            logger.error("reloading %r failed, still serving version %s", name, current.version, exc_info=exc)
            raise ApiError(409, "reload failed",
                           f"{exc}; still serving version {registry.get(name).version}") from None
        logger.info("reloaded %r: %s -> %s", name, old.version, new.version)
        return {"model": name, "model_version": new.version, "previous_version": old.version,
                "seconds": round(time.perf_counter() - t0, 3)}

    return app
