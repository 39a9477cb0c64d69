"""What BentoML's generated OpenAPI document cannot say about this service, added as it is served (/docs.json).

BentoML describes each typed API from its signature; the service also has a GET /model (a mounted page), an
`image` field that must hold an image (not any byte string), a body that is required, and answers that
no signature declares: 413 over a limit, 503 when the worker's queue is full. A fuzzer reading the
document (schemathesis, run by tests/service/test_openapi_fuzz.py) then expects exactly what the service does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import segsvc

SPEC_PATH = "/docs.json"
ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
}
API_PAGE = Path(__file__).with_name("api.md")  # also the bento's README (bentofile.yaml)
RETRY_AFTER = {"Retry-After": {"description": "seconds until the worker expects to have room", "schema": {"type": "integer"}}}


def error_response(description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {**response, "headers": headers} if headers else response


def complete_spec(spec: dict) -> dict:
    """`spec` with segsvc's title, version and description, the image routes' body required with no fields but
    their own, `image` declared as an image, their error answers, and GET /model."""
    spec = copy.deepcopy(spec)
    # BentoML fills these from a built bento only; served from a checkout, its placeholder says nothing of segsvc
    spec["info"] = {"title": "segsvc", "version": segsvc.__version__, "description": API_PAGE.read_text()}
    spec.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    for path, operations in spec["paths"].items():
        form = operations.get("post", {}).get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if form is None:
            continue
        schema = form["schema"]
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        if "image" not in schema.get("properties", {}):
            continue
        operations["post"]["requestBody"]["required"] = True
        schema["additionalProperties"] = False  # the gate answers a field the endpoint does not take with a 400
        form.setdefault("encoding", {})["image"] = {"contentType": "image/*"}
        operations["post"]["responses"].update(
            {
                "400": error_response("not an image, a parameter out of range, or one the endpoint does not take"),
                "413": error_response("over the byte or pixel limit"),
                "503": error_response("this worker's queue is full, or the request waited past its deadline", RETRY_AFTER),
            }
        )
    model = spec["paths"].get("/model", {})
    if "post" in model and "get" not in model:
        model["get"] = {key: value for key, value in model["post"].items() if key != "requestBody"}
        model["get"]["operationId"] = model["post"].get("operationId", "model") + "_get"
    return spec
