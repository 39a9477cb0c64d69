"""segsvc as a BentoML service: POST an image, get its mask back.

    bentoml serve                  # from the repository root (bentofile.yaml), or `make serve`

Endpoints: POST /segment (PNG mask), POST /segment_json, POST /overlay, GET /model; BentoML's own
/livez, /readyz (ready once the model is loaded and warmed up) and /metrics.
"""

from __future__ import annotations

import base64
import os

import anyio
import bentoml
import numpy as np
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import segsvc
from segsvc.images import ImageError
from segsvc.onnx_backend import make_runner
from segsvc.visualize import overlay, palettized
from service.http import MAX_BYTES, MAX_PIXELS, check_auth, error, png_bytes, read_image
from service.store import ensure_default_model, model_tag

ensure_default_model()
THREADS_PER_WORKER = int(os.environ.get("SEGSVC_THREADS", "1"))
WORKERS = os.environ.get("SEGSVC_WORKERS", "cpu_count")  # one process a core, one thread each


def handler(render):
    """Wrap an endpoint: auth, read the image, run the model off the event loop, JSON errors for bad input."""

    async def endpoint(request: Request) -> Response:
        if (denied := check_auth(request)) is not None:
            return denied
        try:
            image = await read_image(request)
        except ImageError as exc:
            return error(exc.status, str(exc))
        service = bentoml.get_current_service()
        mask = await anyio.to_thread.run_sync(service.predict, image, limiter=service.inference_slot)
        return render(service, image, mask)

    return endpoint


def mask_png(service: Segmenter, mask: np.ndarray) -> bytes:
    return png_bytes(palettized(mask, service.model.palette))


def render_mask(service: Segmenter, image: np.ndarray, mask: np.ndarray) -> Response:
    return Response(mask_png(service, mask), media_type="image/png")


def render_json(service: Segmenter, image: np.ndarray, mask: np.ndarray) -> Response:
    counts = np.bincount(mask.ravel(), minlength=len(service.model.class_names))
    return JSONResponse(
        {
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
            "classes": service.model.class_names,
            "fractions": {name: float(c) / mask.size for name, c in zip(service.model.class_names, counts)},
            "mask_png_base64": base64.b64encode(mask_png(service, mask)).decode(),
        }
    )


def render_overlay(service: Segmenter, image: np.ndarray, mask: np.ndarray) -> Response:
    return Response(png_bytes(Image.fromarray(overlay(image, mask, service.model.palette))), media_type="image/png")


async def model_info(request: Request) -> Response:
    if (denied := check_auth(request)) is not None:
        return denied
    return JSONResponse(bentoml.get_current_service().info())


routes = Starlette(
    routes=[
        Route("/segment", handler(render_mask), methods=["POST"]),
        Route("/segment_json", handler(render_json), methods=["POST"]),
        Route("/overlay", handler(render_overlay), methods=["POST"]),
        Route("/model", model_info, methods=["GET"]),
    ]
)


@bentoml.asgi_app(routes, path="/")
@bentoml.service(
    name="segsvc",
    workers=int(WORKERS) if WORKERS.isdigit() else WORKERS,
    traffic={"timeout": 120},
)
class Segmenter:
    model_ref = bentoml.models.BentoModel(model_tag())

    def __init__(self) -> None:
        torch.set_num_threads(THREADS_PER_WORKER)
        self.ready = False
        # One inference at a time in this worker: concurrent requests queue for the model instead of
        # running side by side on the worker's one thread's worth of CPU, thrashing each other's caches.
        self.inference_slot = anyio.CapacityLimiter(1)
        self.model = segsvc.load_model(self.model_ref.path)
        # ONNX Runtime by default: at one thread a worker it runs this model about 1.8x faster than eager
        # PyTorch, and the service 1.5x the requests/s (README, Speed).
        self.backend = os.environ.get("SEGSVC_BACKEND", "onnx")
        try:
            self.runner = make_runner(self.model, self.backend, THREADS_PER_WORKER)
        except ValueError as exc:
            raise ValueError(f"SEGSVC_BACKEND: {exc}") from exc
        self.predict(np.zeros((360, 480, 3), np.uint8))  # warm-up: first-call allocations happen here
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    def predict(self, image: np.ndarray) -> np.ndarray:
        return segsvc.predict_mask(self.runner, image)

    def info(self) -> dict:
        return {
            "model": str(self.model_ref.tag),
            "version": segsvc.__version__,
            "backend": self.backend,
            "classes": self.model.class_names,
            "palette": [list(c) for c in self.model.palette],
            "input": {
                "field": "multipart field 'image', or the raw body with an image content type",
                "formats": "any Pillow-readable image; EXIF orientation applied; output has the input's size",
                "max_bytes": MAX_BYTES,
                "max_pixels": MAX_PIXELS,
            },
            "output": "/segment: PNG, mode P, one byte per pixel = class id, class palette attached",
        }
