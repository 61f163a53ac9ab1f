"""``xmc serve``: an HTTP server for saved models (FastAPI + uvicorn, the ``serve`` extra).

Layout: :mod:`.settings` (typed server settings), :mod:`.schemas` (request / response bodies),
:mod:`.predictor` (documents -> dataset -> the model's own predict, constraints), :mod:`.batcher`
(micro-batching of concurrent requests), :mod:`.registry` (name -> loaded model, atomic reload),
:mod:`.app` (``create_app``: routes, errors, body limit) and :mod:`.server` (uvicorn, workers).
"""

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(models, settings: ServeSettings | None = None):
    """The FastAPI application serving ``models`` ({name: model directory}); see :func:`.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(models, settings)
