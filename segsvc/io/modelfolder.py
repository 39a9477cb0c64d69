"""A model folder's files, read without torch: what a service needs to run a model it did not build.

    config.json            architecture, classes, palette, ignore index (`segsvc.save_model`)
    model.safetensors      the weights (PyTorch: training, export, the `torch` backend)
    model.onnx             the float graph (`segsvc.save_model`, `segsvc export`)
    model_int8.onnx        int8 for ONNX Runtime (QOperator)   } `segsvc quantize`
    model_int8_qdq.onnx    int8 for OpenVINO (QDQ)             }
    accuracy.json          each reduced-precision form's pixel agreement with fp32 (`segsvc quantize`, `segsvc accuracy`)

Every graph and accuracy record carries the sha256 of the weights it was made from, so a folder whose
weights changed never runs (or trusts the accuracy of) a graph made from other weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
INT8_QDQ_FILE = "model_int8_qdq.onnx"
ACCURACY_FILE = "accuracy.json"
GRAPH_FILES = (ONNX_FILE, INT8_FILE, INT8_QDQ_FILE)
DEFAULT_MODEL_DIR = Path(__file__).parents[1] / "assets" / "camvid_default"  # the CamVid model the package ships
ARCHITECTURE = "mobilenetv2-tconv"
FORMAT_VERSION = 2  # 2: the head is a transposed convolution (1: a 1x1 convolution after a last upsampling)
DIGEST_KEY = "segsvc_weights_sha256"  # the ONNX metadata property that stamps a graph
# The command that makes each graph again, for the error that refuses a missing or stale one.
REMAKE = {
    WEIGHTS_FILE: "segsvc export CHECKPOINT -o {folder}",
    ONNX_FILE: "segsvc export CHECKPOINT -o {folder} (or segsvc.save_model)",
    INT8_FILE: "segsvc quantize {folder} --calibration DIR",
    INT8_QDQ_FILE: "segsvc quantize {folder} --calibration DIR",
}


class StaleGraph(ValueError):
    """A graph that is missing from a model folder, or was made from other weights than the folder's."""


def read_config(path: str | Path) -> dict:
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"not a segsvc model folder (no {CONFIG_FILE}): {path}")
    config = json.loads(config_path.read_text())
    if config.get("architecture") != ARCHITECTURE:
        raise ValueError(f"{config_path}: unknown architecture {config.get('architecture')!r}")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format_version {config.get('format_version')!r}, this segsvc reads {FORMAT_VERSION}; "
            "export the model again with this version"
        )
    return config


def weights_digest(folder: str | Path) -> str:
    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()


def graph_stamp(path: str | Path) -> str | None:
    """The weights digest an ONNX file was stamped with (None when unstamped)."""
    return onnx_metadata(Path(path).read_bytes()).get(DIGEST_KEY)


def onnx_metadata(data: bytes) -> dict[str, str]:
    """An ONNX file's `metadata_props`, read straight off its protobuf wire format: ModelProto field 14 holds
    StringStringEntryProto (key = 1, value = 2); every other field is skipped. A serving worker checks a
    graph's stamp without importing the `onnx` package (16 MB of resident memory)."""

    def varint(buffer: bytes, at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = buffer[at]
            value, shift, at = value | (byte & 0x7F) << shift, shift + 7, at + 1
            if byte < 0x80:
                return value, at

    def fields(buffer: bytes):
        at = 0
        while at < len(buffer):
            tag, at = varint(buffer, at)
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                value, at = varint(buffer, at)
            elif wire == 2:
                length, at = varint(buffer, at)
                value, at = buffer[at : at + length], at + length
            elif wire in (1, 5):
                value, at = None, at + (8 if wire == 1 else 4)
            else:
                raise ValueError(f"not an ONNX file (protobuf wire type {wire})")
            yield number, value

    props = {}
    for number, entry in fields(data):
        if number == 14:
            pair = dict(fields(entry))
            props[pair.get(1, b"").decode()] = pair.get(2, b"").decode()
    return props


def stamp_graph(path: str | Path, weights_sha256: str, **props: str) -> None:
    """Record in an ONNX file's metadata the digest of the weights it was made from (and `props`)."""
    import onnx

    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {**{p.key: p.value for p in graph.metadata_props}, DIGEST_KEY: weights_sha256, **props})
    onnx.save(graph, str(path))


def graph_path(folder: str | Path, name: str) -> Path:
    """`folder`/`name`, checked to exist and to be made from the folder's weights; else a one-line
    StaleGraph naming the command that makes it again."""
    folder = Path(folder)
    path = folder / name
    remake = REMAKE[name].format(folder=folder)
    if not path.is_file():
        raise StaleGraph(f"no {name} in {folder}: run `{remake}`")
    if (folder / WEIGHTS_FILE).is_file() and graph_stamp(path) != weights_digest(folder):
        raise StaleGraph(f"{path} was made from other weights than {folder / WEIGHTS_FILE}: run `{remake}` again")
    return path


def read_accuracy(folder: str | Path) -> dict[str, dict]:
    """Form name -> its accuracy record ({"agreement", "worst", "images", ...}), for the folder's current
    weights only: records made from other weights are not this model's."""
    path = Path(folder) / ACCURACY_FILE
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    if (Path(folder) / WEIGHTS_FILE).is_file() and record.get("weights_sha256") != weights_digest(folder):
        return {}
    return record.get("forms", {})


def write_accuracy(folder: str | Path, forms: dict[str, dict]) -> Path:
    """Merge `forms`' records into `folder`/accuracy.json (records of other weights are dropped)."""
    folder = Path(folder)
    merged = {**read_accuracy(folder), **forms}
    record = {"weights_sha256": weights_digest(folder), "forms": dict(sorted(merged.items()))}
    path = folder / ACCURACY_FILE
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
