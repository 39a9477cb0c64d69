"""Save and load a model as a folder: config.json (architecture, classes, palette), model.safetensors and
model.onnx, the graph the inference engines run (the folder's files: `segsvc.io.modelfolder`).

No pickle anywhere, so loading an untrusted model cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from segsvc.io.modelfolder import CONFIG_FILE, DEFAULT_MODEL_DIR, FORMAT_VERSION, ONNX_FILE, WEIGHTS_FILE, read_config, weights_digest
from segsvc.models.export import export_onnx
from segsvc.models.fusion import fuse_batchnorm
from segsvc.models.model import SegmentationModel


def save_model(
    model: SegmentationModel,
    path: str | Path,
    class_names: list[str] | None = None,
    palette: list[tuple[int, int, int]] | None = None,
    ignore_index: int | None = None,
    dtype: torch.dtype = torch.float32,
    metadata: dict | None = None,
    graph: bool = True,
) -> Path:
    """Write `path`/config.json, `path`/model.safetensors and (with `graph`) `path`/model.onnx, exported from
    the weights as saved; class names/palette default to the model's."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if class_names is not None:
        if len(class_names) != model.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
        model.class_names = list(class_names)
    if palette is not None:
        if len(palette) != model.num_classes:
            raise ValueError(f"{len(palette)} palette colours for a model with {model.num_classes} classes")
        model.palette = [tuple(int(v) for v in colour) for colour in palette]
    if ignore_index is not None:
        model.ignore_index = ignore_index
    config = {"format_version": FORMAT_VERSION, **model.config(), "dtype": str(dtype).removeprefix("torch.")}
    if metadata:
        config["metadata"] = metadata
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        state[key] = value.to(dtype) if value.is_floating_point() else value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    if graph:
        export_folder_graph(path)
    return path


def load_model(path: str | Path, fuse: bool = True) -> SegmentationModel:
    """Load a model saved by `save_model`, ready for inference: eval mode, float32, channels_last, CPU.

    `fuse` folds each BatchNorm into its convolution (`segsvc.models.fusion`), which about halves eager CPU
    latency; pass fuse=False for the layers exactly as trained (to fine-tune or save again).
    """
    path = Path(path)
    config = read_config(path)
    model = SegmentationModel(config["num_classes"], tuple(config["decoder_channels"]))
    state = load_file(str(path / WEIGHTS_FILE))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.class_names = list(config["class_names"])
    model.palette = [tuple(c) for c in config["palette"]]
    model.ignore_index = config.get("ignore_index")
    model.metadata = config.get("metadata", {})
    model.source_dir = path  # the folder it came from (its graphs: segsvc.io.modelfolder)
    if fuse:
        fuse_batchnorm(model)
    return model.eval().to(memory_format=torch.channels_last)


def export_folder_graph(folder: str | Path) -> Path:
    """(Re)write `folder`/model.onnx from the folder's weights, exactly as `load_model` reads them, stamped with
    their digest (a graph made from other weights is refused as stale: `segsvc.io.modelfolder`)."""
    return export_onnx(load_model(folder), Path(folder) / ONNX_FILE, weights_digest(folder))


def load_default_model() -> SegmentationModel:
    """The CamVid model that ships with the package, ready for `predict_mask`."""
    if not (DEFAULT_MODEL_DIR / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"the shipped default model is missing from {DEFAULT_MODEL_DIR}")
    return load_model(DEFAULT_MODEL_DIR)
