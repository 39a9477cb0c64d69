"""`segsvc`: LightningCLI (fit, validate, test, predict) plus `export` and `import`.

    segsvc fit --config configs/camvid_cpu.yaml
    segsvc fit --config configs/camvid_cpu.yaml --ckpt_path last      # resume after a crash
    segsvc export runs/camvid_cpu/checkpoints/last.ckpt -o models/camvid [--bento] [--format onnx]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def build_cli(args: list[str] | None, run: bool = True):
    from pytorch_lightning.cli import LightningCLI

    from training.datamodule import SegmentationDataModule
    from training.module import SegmentationModule

    class SegsvcCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            # The data decides the classes; the model follows (no duplicate setting to get wrong).
            for key in ("num_classes", "class_names", "palette", "ignore_index"):
                parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")

    return SegsvcCLI(
        SegmentationModule,
        SegmentationDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def run_lightning(args: list[str] | None) -> None:
    from segsvc.data import DataError

    try:
        build_cli(args)
    except (DataError, FileNotFoundError) as error:
        sys.exit(f"segsvc: error: {error}")


def export(args: argparse.Namespace) -> None:
    import torch

    from segsvc.serialization import save_model
    from training.module import SegmentationModule

    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    module = SegmentationModule.load_from_checkpoint(checkpoint, map_location="cpu", encoder_weights=None, compile=False)
    if module.hparams.architecture != "segsvc":
        raise ValueError(f"{checkpoint} holds a {module.hparams.architecture} model; only segsvc models export")
    model = module.model.eval().float()
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own Lightning checkpoint
    metadata = {"checkpoint": checkpoint.name, "epoch": saved.get("epoch"), "global_step": saved.get("global_step")}
    if args.format == "onnx":
        from segsvc.onnx_backend import export_onnx

        out = export_onnx(model, Path(args.output))
    else:
        dtype = torch.float16 if args.fp16 else torch.float32
        out = save_model(model, args.output, dtype=dtype, metadata={k: v for k, v in metadata.items() if v is not None})
    print(f"wrote {out}")
    if args.bento:
        from service.store import import_model

        print(f"imported into the BentoML model store as {import_model(Path(args.output), args.tag)}")


def import_to_store(args: argparse.Namespace) -> None:
    from service.store import import_model

    print(import_model(Path(args.model_dir), args.tag))


def evaluate(args: argparse.Namespace) -> None:
    import json

    from segsvc.data import CAMVID_IGNORE_INDEX
    from segsvc.evaluate import evaluate_folder
    from segsvc.serialization import load_default_model, load_model
    from training.datamodule import default_data_root

    model = load_default_model() if args.model == "default" else load_model(args.model)
    root = Path(args.root) if args.root else default_data_root() / "camvid"
    ignore = model.ignore_index if model.ignore_index is not None else CAMVID_IGNORE_INDEX
    result = evaluate_folder(model, root / args.split, root / f"{args.split}annot", model.num_classes, ignore)
    result["iou"] = dict(zip(model.class_names, (round(v, 4) for v in result["iou"])))
    print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> None:
    explicit = argv is not None
    argv = list(argv if explicit else sys.argv[1:])
    if not argv or argv[0] in LIGHTNING_COMMANDS or argv[0].startswith("-"):
        run_lightning(argv if explicit else None)
        return
    parser = argparse.ArgumentParser(prog="segsvc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("export", help="checkpoint -> self-describing model folder (or ONNX file)")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--bento", action="store_true", help="also import into the BentoML model store")
    p.add_argument("--tag", default=None, help="BentoML model tag (default: segsvc-model)")
    p.set_defaults(func=export)
    p = commands.add_parser("import", help="model folder -> BentoML model store")
    p.add_argument("model_dir")
    p.add_argument("--tag", default=None)
    p.set_defaults(func=import_to_store)
    p = commands.add_parser("evaluate", help="score a model folder on a CamVid-layout split at full resolution")
    p.add_argument("model", help="model folder, or 'default' for the shipped model")
    p.add_argument("--root", default=None, help="CamVid folder (default: $SEGSVC_DATA_ROOT/camvid)")
    p.add_argument("--split", default="test")
    p.set_defaults(func=evaluate)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        parser.exit(2, f"segsvc {args.command}: error: {error}\n")


if __name__ == "__main__":
    main()
