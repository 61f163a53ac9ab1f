"""Run the application with uvicorn: one process, or ``workers`` processes on one port."""

from __future__ import annotations

import json
import logging
import os
import socket

from ..errors import ConfigError
from ..models.persistence import read_manifest
from .settings import ServeSettings

logger = logging.getLogger(__name__)

# Worker processes rebuild the app from this (uvicorn starts workers from an import string).
SPEC_ENV = "XMC_SERVE_SPEC"


def parse_model_args(specs: list[str]) -> dict[str, str]:
    """``DIR`` (named by its base name) or ``NAME=DIR`` -> {name: directory}; each a model directory."""
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, directory = spec.partition("=")
        if not sep or os.path.isdir(spec):
            name, directory = os.path.basename(os.path.normpath(spec)), spec
        if not name or "/" in name:
            raise ConfigError(f"{spec}: a model name must be non-empty and have no '/' (use NAME=DIR)")
        if name in models:
            raise ConfigError(f"{spec}: two models named {name!r} (name them with NAME=DIR)")
        read_manifest(directory)  # fails now, with the directory's name, rather than in a worker
        models[name] = directory
    return models


def _check_address(host: str, port: int) -> None:
    """ConfigError unless ``host:port`` can be bound now (in use, or not an address of this machine)."""
    if not 1 <= port <= 65535:  # the socket layer would silently take the number modulo 65536
        raise ConfigError(f"--port {port}: expected a port number from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(infos[0][4])
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def app_from_environment():
    """The app of a worker process (``uvicorn --factory``), from the spec the parent left in the environment."""
    from .app import create_app

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("xmc.serve").setLevel(logging.INFO)  # as the parent's CLI does
    spec = json.loads(os.environ[SPEC_ENV])
    return create_app(spec["models"], ServeSettings.from_dict(spec["settings"]))


def serve(models: dict[str, str], *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          settings: ServeSettings | None = None, access_log: bool = False) -> None:
    """Serve until interrupted. With one worker SIGHUP reloads every model in place; with several,
    uvicorn's supervisor answers SIGHUP by restarting the workers one after another (each loads the
    directories anew) and ``POST .../reload`` reloads only the worker that receives it. ``access_log``
    logs every request (off by default: a log line per request costs latency)."""
    # Idle OpenMP threads (numba's parallel regions, torch) spin by default, on the cores the event
    # loop needs: at 8 clients on 2 cores that made the p99 2-4x worse (BENCHMARKS.md, Serving). A value
    # the user set wins; it must be in the environment before the OpenMP runtimes load, i.e. here.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        logger.info("OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep (set OMP_WAIT_POLICY to choose otherwise)")
    _check_address(host, port)  # before minutes of model loading, not after
    import uvicorn

    settings = settings or ServeSettings()
    if workers == 1:
        from .app import create_app

        app = create_app(models, settings, handle_sighup=True)
        uvicorn.run(app, host=host, port=port, access_log=access_log)
        return
    os.environ[SPEC_ENV] = json.dumps({"models": models, "settings": settings.to_dict()})
    uvicorn.run("xmc.serve.server:app_from_environment", factory=True, host=host, port=port,
                workers=workers, access_log=access_log)
