"""Bulk prediction on a Ray cluster: every image under a folder -> its mask, as `segsvc predict` writes it.

    python docs/examples/ray_predict.py --model default --input photos/ --output out/ [--backend auto] [--actors 4]
    RAY_ADDRESS=ray://head:10001 python docs/examples/ray_predict.py ...   # a running cluster; shared storage

Each actor loads the model once and calls the library (`segsvc.load_runtime`, `segsvc.predict_mask`): no
Lightning, no BentoML, and with a graph backend (`onnxruntime`, `openvino`, `auto`) no torch either. Masks go
to OUT/masks/<path relative to the input>.png, palettized, as `segsvc predict` and the service write them;
with `--backend torch` (the default, what `segsvc predict` runs) they are the same masks. Large images are
tiled as in the library, so memory stays bounded whatever their size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import ray

from segsvc.io.modelfolder import DEFAULT_MODEL_DIR, read_config


class Segment:
    """A Ray Data actor: one model, many images."""

    def __init__(self, model_dir: str, backend: str, input_dir: str, output_dir: str):
        import segsvc

        self.runtime = segsvc.load_runtime(model_dir, backend, threads=1)
        self.palette = [tuple(colour) for colour in read_config(model_dir)["palette"]]
        self.input_dir, self.output_dir = Path(input_dir).resolve(), Path(output_dir)

    def __call__(self, row: dict) -> dict:
        import segsvc
        from segsvc.io.encodings import png_bytes
        from segsvc.io.visualize import palettized

        mask = segsvc.predict_mask(self.runtime, row["image"])  # (H, W) uint8 class ids
        relative = Path(row["path"]).resolve().relative_to(self.input_dir)
        out = self.output_dir / "masks" / relative.with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(png_bytes(palettized(mask, self.palette)))
        shares = np.bincount(mask.ravel(), minlength=len(self.palette)) / mask.size
        return {"path": str(relative), "width": mask.shape[1], "height": mask.shape[0], "shares": shares.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model folder, or 'default' for the shipped model")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--backend", default="torch", help="torch (as segsvc predict), auto, onnxruntime, openvino, ...")
    parser.add_argument("--actors", type=int, default=2, help="model copies running at once")
    args = parser.parse_args()
    model_dir = str(DEFAULT_MODEL_DIR if args.model == "default" else Path(args.model))
    ray.init(ignore_reinit_error=True, include_dashboard=False)  # RAY_ADDRESS joins a cluster, else a local one
    images = ray.data.read_images(args.input, include_paths=True, mode="RGB")
    rows = images.map(
        Segment, fn_constructor_args=(model_dir, args.backend, args.input, args.output), concurrency=args.actors, num_cpus=1
    ).take_all()
    print(f"wrote {len(rows)} masks under {Path(args.output) / 'masks'}")


if __name__ == "__main__":
    main()
