"""segsvc as a BentoML service: POST an image, get its mask back.

    bentoml serve                  # from the repository root (bentofile.yaml), or `make serve`

APIs (typed, so the page at / runs them and `bentoml.SyncHTTPClient` calls them): POST /segment (mask or
confidence PNG), POST /segment_json (fractions, mask, and by parameter COCO RLE, polygons, confidence),
POST /overlay, POST /model. GET /model and GET /demo (a page for people) are mounted beside them;
BentoML's own /livez, /readyz (ready once the model is loaded and warmed up) and /metrics stay.
Under overload each worker admits requests by their pixels and answers the rest 503 (service.admission).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import bentoml
import numpy as np
from PIL import Image
from bentoml.exceptions import InvalidArgument
from pydantic import BeforeValidator, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

import segsvc
import segsvc.runtime.auto
from segsvc.io import encodings
from segsvc.io.images import ImageError, decode_image
from segsvc.io.modelfolder import read_config
from segsvc.io.visualize import overlay, palettized
from segsvc.runtime.cpu import cpu_description
from segsvc.runtime.predict import TILE_ABOVE_PIXELS
from . import settings
from .admission import CURRENT, QUEUE, Dropped, Ticket
from .http import MAX_BYTES, MAX_PIXELS, Busy, PayloadTooLarge, RequestGate, describe, form_values, http_error
from .store import ensure_default_model


def ask_for_huge_pages() -> None:
    """Transparent huge pages for glibc's large allocations (glibc >= 2.35), in the workers started after this.

    A tile of a large image allocates activations of up to ~60 MB, which glibc maps fresh for every tile and
    the kernel then faults in 4 KB at a time: with 2 MB pages a 7200x5400 request took 15% less time
    (Performance, Large images); 480x360 requests measured the same. The workers inherit the environment of
    `bentoml serve`. A GLIBC_TUNABLES that already names glibc.malloc.hugetlb (=0 turns this off) is left alone.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        os.environ["GLIBC_TUNABLES"] = ":".join(filter(None, (tunables, "glibc.malloc.hugetlb=1")))


def model_folder() -> Path:
    """The served model's folder in the store; a tag the store does not have stops the process with one line."""
    try:
        return Path(bentoml.models.get(SETTINGS.model_tag).path)
    except bentoml.exceptions.NotFound as error:
        raise SystemExit(f"segsvc: SEGSVC_MODEL_TAG: {error}") from None


def check_backend() -> None:
    """An unavailable SEGSVC_BACKEND stops `bentoml serve` with one line naming the available ones."""
    try:
        segsvc.runtime.check_backend(model_folder(), SETTINGS.backend)
    except ValueError as error:
        raise SystemExit(f"segsvc: SEGSVC_BACKEND: {error}") from None


def decide_backend() -> None:
    """With backend auto, time the forms once, before the workers start (they inherit the environment), so
    that every worker serves the same form: a mask must not depend on which worker took the request. The
    timing runs in a child process on a quiet machine; a worker then loads the winner alone."""
    if SETTINGS.backend == "auto" and SETTINGS.auto_decision is None:
        try:
            decision = segsvc.runtime.auto.decide(model_folder(), SETTINGS.threads)
        except ValueError as error:  # no form can serve this model folder: say why, in one line
            raise SystemExit(f"segsvc: SEGSVC_BACKEND=auto: {str(error).removeprefix('segsvc: ')}") from None
        os.environ[settings.AUTO_DECISION] = json.dumps(decision)


def start_up() -> None:
    """What `bentoml serve` does once, before it starts the workers (`Segmenter.on_deployment`)."""
    ask_for_huge_pages()
    check_backend()
    decide_backend()


SETTINGS = settings.CURRENT
# The store must hold the default model before BentoML resolves `Segmenter.model_ref`, which it does before
# any deployment hook runs; the OpenAPI document lists the model's classes.
ensure_default_model()
CLASS_NAMES = read_config(model_folder())["class_names"]
TIMEOUT_S = 120  # BentoML answers 504 past this; a request still queued then is dropped first (service.admission)
DEMO_PAGE = (Path(__file__).parent / "demo" / "index.html").read_bytes()


def split_names(value: Any) -> Any:
    """`classes` as a JSON list (the clients) or as "road,car" (a form field or query parameter)."""
    return [name.strip() for name in value.split(",")] if isinstance(value, str) else value  # "" is no class name


MAX_TOLERANCE = 10_000  # pixels: more simplifies nothing further, and OpenCV refuses huge ones
ImageFile = Annotated[Path, Field(description="the image: any Pillow-readable format, any mode")]
ClassNames = Annotated[
    list[Annotated[str, Field(json_schema_extra={"enum": CLASS_NAMES})]] | None,
    BeforeValidator(split_names),
    Field(description="only these classes in fractions, rle and polygons (default: all)"),
]


async def model_page(request: Request) -> Response:
    return JSONResponse(bentoml.get_current_service().info())


async def demo_page(request: Request) -> Response:
    return HTMLResponse(DEMO_PAGE)


pages = Starlette(routes=[Route("/model", model_page, methods=["GET"]), Route("/demo", demo_page, methods=["GET"])])


@bentoml.asgi_app(pages, path="/")
@bentoml.service(
    name="segsvc",
    workers=SETTINGS.workers,  # default: one process a core, one engine thread each
    traffic={"timeout": TIMEOUT_S},
)
class Segmenter:
    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag)

    @bentoml.on_deployment
    def on_deployment() -> None:
        start_up()

    def __init__(self) -> None:
        # The engine hands the GIL back and forth with the event loop at each step of an inference; at
        # Python's default 5 ms switch interval each step can wait that long while the loop runs Python.
        # At 1 ms an OpenVINO inference beside a busy thread took 11 ms, not 20 (9 ms alone).
        sys.setswitchinterval(0.001)
        self.ready = False
        self.config = read_config(self.model_ref.path)  # classes and palette; the graphs carry the rest
        # auto (the default): the fastest eligible form on this CPU, as `decide_backend` timed it.
        # No form but the explicit "torch" imports torch.
        warm_up = np.zeros((360, 480, 3), np.uint8)
        backend, threads = SETTINGS.backend, SETTINGS.threads
        try:
            if backend == "auto":
                self.runtime = segsvc.runtime.auto.from_decision(self.model_ref.path, SETTINGS.auto_decision, threads)
            else:
                self.runtime = segsvc.load_runtime(self.model_ref.path, backend, threads, shape_free=True)
        except ValueError as exc:
            raise ValueError(f"SEGSVC_BACKEND: {exc}") from exc
        # The warm-up frame's shape is compiled now (a camera's frames run on it from the first request);
        # other sizes run at once on a shape-free engine and compile once they repeat (segsvc.runtime.openvino_engine).
        self.runtime.prepare(segsvc.preprocess(warm_up).shape)
        segsvc.predict_mask(self.runtime, warm_up)  # first-call allocations happen here
        QUEUE.report()  # the queue's series on /metrics from the start, at 0
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api
    async def segment(self, image: ImageFile, output: Literal["mask", "confidence"] = "mask") -> Image.Image:
        """The mask as a PNG of the input's size (mode P: one byte per pixel = class id, class colours attached),
        or with output=confidence the per-pixel confidence (max softmax probability x 255, 8-bit grayscale)."""
        _, mask, confidence = await self.infer(image, confidence=output == "confidence")
        if confidence is not None:
            return encodings.fast_png(encodings.confidence_image(confidence))
        return encodings.fast_png(palettized(mask, self.palette))

    @bentoml.api
    async def segment_json(
        self,
        image: ImageFile,
        classes: ClassNames = None,
        rle: Annotated[bool, Field(strict=True, description="per-class COCO RLE (pycocotools)")] = False,
        polygons: Annotated[bool, Field(strict=True, description="per-class polygons: [exterior, holes...] rings of [x, y]")] = False,
        tolerance: Annotated[float, Field(strict=True, ge=0, le=MAX_TOLERANCE, description="polygon simplification, pixels (0: exact)")] = 1.0,
        confidence: Annotated[bool, Field(strict=True, description="the confidence as a base64 8-bit PNG")] = False,
    ) -> dict[str, Any]:
        """Size, class names, per-class pixel fractions and the mask as a base64 PNG; more by parameter."""
        names = self.config["class_names"]
        if unknown := [name for name in classes or () if name not in names]:
            raise http_error(ImageError(f"unknown classes {unknown}; the classes are {names}"))
        _, mask, probability = await self.infer(image, confidence=confidence)
        chosen = [(names.index(name), name) for name in classes] if classes else list(enumerate(names))
        counts = np.bincount(mask.ravel(), minlength=len(names))
        report: dict[str, Any] = {
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
            "classes": names,
            "fractions": {name: float(counts[i]) / mask.size for i, name in chosen},
            "mask_png_base64": base64.b64encode(encodings.png_bytes(palettized(mask, self.palette))).decode(),
        }
        if rle:
            report["rle"] = {name: encodings.rle_encode(mask, i) for i, name in chosen}
        if polygons:
            report["polygon_tolerance"] = tolerance
            report["polygons"] = {name: encodings.polygons(mask, i, tolerance) for i, name in chosen}
        if probability is not None:
            report["confidence_png_base64"] = base64.b64encode(encodings.confidence_png(probability)).decode()
        return report

    @bentoml.api
    async def overlay(self, image: ImageFile, opacity: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.5) -> Image.Image:
        """The image with the coloured mask blended on it (opacity = the mask's weight), as a PNG."""
        rgb, mask, _ = await self.infer(image)
        return encodings.fast_png(Image.fromarray(overlay(rgb, mask, self.palette, alpha=opacity)))

    @bentoml.api(route="/model")
    def model_info(self) -> dict[str, Any]:
        """Classes, palette, limits, model tag, and the engine and precision serving it (also GET /model)."""
        return self.info()

    async def infer(self, image: Path | bytes, confidence: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The image decoded and through the model, off the event loop, in the request's turn (one inference
        at a time in this worker: concurrent ones would thrash each other's caches on its one thread of CPU,
        and each would hold its decoded image)."""
        ticket = CURRENT.get() or Ticket(0, time.monotonic() + TIMEOUT_S)  # the gate admitted it, by its header
        # An image that runs whole (at most 4 MP, 12 MB decoded) is decoded while it waits, beside another's
        # inference: decoding inside the turn serialised it with the model and cost 19% of the requests/s at
        # concurrency 8. A large one waits as its upload and is decoded in its turn.
        rgb = await anyio.to_thread.run_sync(read_image, image) if 0 < ticket.pixels <= TILE_ABOVE_PIXELS else image
        try:
            async with QUEUE.turn(ticket):
                return await anyio.to_thread.run_sync(self.compute, rgb, confidence, ticket)
        except Dropped as error:
            raise Busy(str(error)) from error

    def compute(self, image: Path | bytes | np.ndarray, confidence: bool, ticket: Ticket) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """In a worker thread, in the request's turn; between tiles a large image lets smaller ones run first."""
        start = time.perf_counter()
        rgb = image if isinstance(image, np.ndarray) else read_image(image)
        mask, probability = segsvc.predict(
            self.runtime, rgb, confidence, before_tile=lambda: anyio.from_thread.run(QUEUE.pause, ticket)
        )
        QUEUE.timed(ticket, time.perf_counter() - start)
        if mask.size > TILE_ABOVE_PIXELS and len(QUEUE.tickets) == 1:  # the last of a run of large images
            self.runtime.release_memory(idle=True)
        return rgb, mask, probability

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return [tuple(colour) for colour in self.config["palette"]]

    def info(self) -> dict[str, Any]:
        return {
            "model": str(self.model_ref.tag),
            "version": segsvc.__version__,
            **self.runtime.describe(),  # backend, engine, precision, and the timings that chose it
            "cpu": cpu_description(),
            "classes": self.config["class_names"],
            "palette": [list(c) for c in self.palette],
            "input": {
                "field": "multipart field 'image' (parameters as form fields), or the raw body with an image "
                "content type (parameters in the query string)",
                "formats": "any Pillow-readable image; EXIF orientation applied; output has the input's size",
                "max_bytes": MAX_BYTES,
                "max_pixels": MAX_PIXELS,
                "max_queued_pixels": QUEUE.max_pixels,
            },
            "output": "/segment: PNG, mode P, one byte per pixel = class id, class palette attached",
            "demo": "/demo",
            "docs": "/ (OpenAPI: /docs.json)",
        }


def read_image(image: Path | bytes) -> np.ndarray:
    """The upload (the gate's bytes, or a file a Python caller passed) as RGB, the byte and pixel limits
    checked before it is decoded."""
    size = len(image) if isinstance(image, bytes) else image.stat().st_size
    if size > MAX_BYTES:
        raise PayloadTooLarge(f"image is {size} bytes, over the limit of {MAX_BYTES}")
    try:
        return decode_image(image if isinstance(image, bytes) else image.read_bytes(), MAX_PIXELS)
    except ImageError as error:
        raise http_error(error) from error


IMAGE_APIS = {method.route: method for method in Segmenter.apis.values() if "image" in method.input_spec.model_fields}


async def answer(route: str, image: bytes, fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    """An image endpoint of this worker's service called directly (the gate's `Answer`): its parameters
    validated by the endpoint's own input model, as BentoML would, the result encoded off the event loop."""
    api = IMAGE_APIS[route]
    # A misspelt parameter (rel=true for rle=true) would otherwise be dropped and the default answered.
    unknown = sorted({name for name, _ in fields} - set(api.input_spec.model_fields))
    if unknown:
        takes = ", ".join(api.input_spec.model_fields)
        raise InvalidArgument(f"unknown field{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}: {route} takes {takes}")
    try:
        inputs = api.input_spec.model_validate({**form_values(fields), "image": Path("upload")})
    except ValidationError as error:
        raise InvalidArgument("; ".join(describe(detail) for detail in error.errors())) from None
    parameters = {name: getattr(inputs, name) for name in api.input_spec.model_fields if name != "image"}
    # the endpoint's own function: through the instance, BentoML may route the call to a proxy of the service
    result = await api.func(bentoml.get_current_service(), image=image, **parameters)
    if isinstance(result, Image.Image):
        return await anyio.to_thread.run_sync(encodings.png_bytes, result), "image/png"
    return json.dumps(result).encode(), "application/json"


Segmenter.add_asgi_middleware(
    RequestGate, paths=[*IMAGE_APIS, "/model"], image_paths=list(IMAGE_APIS), timeout=TIMEOUT_S, answer=answer
)
