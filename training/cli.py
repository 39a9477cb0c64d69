"""`segsvc`: LightningCLI (fit, validate, test) plus `predict` (a folder, `training/predict_writer.py`), `export`,
`evaluate`, `quantize` and `accuracy`. Putting a model into BentoML's store is the service's: `segsvc-bento import`.

    segsvc fit --config configs/camvid_cpu.yaml
    segsvc fit --config configs/camvid_cpu.yaml --ckpt_path last      # resume after a crash
    segsvc data init data/my_set -o my_data.yaml                     # look at a folder, write the YAML that reads it
    segsvc data check --config configs/folder_example.yaml            # what the data holds; fit's refusals
    segsvc export runs/camvid_cpu/checkpoints/last.ckpt -o models/camvid [--format onnx]
    segsvc evaluate models/camvid --split test                       # mIoU and per-class IoU at full resolution
    segsvc quantize models/camvid --calibration data/train/images   # + int8 graphs and their accuracy record
    segsvc accuracy models/camvid --calibration data/train/images   # that record again (on a new CPU kind)
    segsvc predict --model default --input photos/ --output masks/ [--trainer.devices 2 --trainer.strategy ddp]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def build_cli(args: list[str] | None, run: bool = True, data_only: bool = False):
    """The `segsvc` LightningCLI; `data_only` parses everything but builds only the data module (no model, no
    weights, no trainer: what `segsvc data check` needs)."""
    from pytorch_lightning.cli import LightningCLI

    from segsvc.training.datamodule import SegmentationDataModule
    from segsvc.training.defaults import DEFAULT_CALLBACKS, TRAINER_DEFAULTS, drop_switched_off
    from segsvc.training.module import SegmentationModule

    class SegsvcCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            # The data decides the classes; the model follows (no duplicate setting to get wrong).
            for key in ("num_classes", "class_names", "palette", "ignore_index"):
                parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
            # Our training defaults are the parser's: `--print_config` shows them, a YAML replaces them.
            parser.set_defaults({"trainer.callbacks": DEFAULT_CALLBACKS, "model.encoder_weights": "imagenet"})

        def before_instantiate_classes(self) -> None:
            # One setting moves a run: checkpoints without a dirpath go to <default_root_dir>/checkpoints
            # (one folder across restarts, so --ckpt_path last finds them), logs and overlays already follow it.
            config = self.config.get(self.subcommand) if self.subcommand else self.config
            root = Path(config.trainer.default_root_dir or ".")
            drop_switched_off(config.trainer)
            for callback in config.trainer.callbacks or []:
                if str(callback.class_path).endswith("ModelCheckpoint") and not callback.init_args.dirpath:
                    callback.init_args.dirpath = str(root / "checkpoints")
            # No max_epochs or max_steps in the YAML: the schedule is chosen from the data before fit.
            self.auto_schedule = config.trainer.max_epochs is None and config.trainer.max_steps in (None, -1)
            self.auto_validation = self.auto_schedule and config.trainer.check_val_every_n_epoch == 1

        def instantiate_classes(self) -> None:
            if not data_only:
                super().instantiate_classes()
                return
            self.datamodule = instantiate_data(self.config.data.as_dict(), "the data section")
            self.model = self.trainer = None

        def before_fit(self) -> None:
            from segsvc.training.recipe import apply_recipe

            apply_recipe(self.trainer, self.model, self.datamodule, self.auto_schedule, self.auto_validation)

    return SegsvcCLI(
        SegmentationModule,
        SegmentationDataModule,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def run_lightning(args: list[str] | None) -> None:
    words = sys.argv[1:] if args is None else args
    if words[:1] and words[0] in LIGHTNING_COMMANDS and words[-1] in ("-h", "--help") and not any(w.startswith("--data") for w in words):
        print_help_with_data_options(words)
    try:
        build_cli(args)
    except Exception as error:  # also when raised in setup, inside trainer.fit
        exit_on_data_error(error)
        raise


def print_help_with_data_options(words: list[str]) -> None:
    """`segsvc fit --help`: the command's help, then every option of the own-data module with its help.
    jsonargparse lists a subclass's options only under `--data.help CLASS`, which a newcomer would not find."""
    with warnings.catch_warnings():  # LightningCLI frowns at args= beside a non-empty sys.argv: intended here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            build_cli(words)
        except SystemExit:
            pass
        print("\nThe data module's options (data.init_args), for your own data; CamVid's: --data.help CamVidDataModule\n")
        build_cli([words[0], "--data.help", "SegmentationDataModule"])


def exit_on_data_error(error: BaseException) -> None:
    """Exit 2 with one line when a DataError, a ModelOptionError, a CheckpointError or a missing file caused
    `error`; else return (a bug: its traceback).

    jsonargparse wraps what a data module's __init__ raises (a bad `mask_values`, a `root` glob matching nothing)
    in its own multi-line ValueError, so the cause chain is searched.
    """
    from segsvc.data.datasets import DataError
    from segsvc.training.module import CheckpointError, ModelOptionError

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, (DataError, ModelOptionError, CheckpointError, FileNotFoundError)):
        cause = cause.__cause__
    if cause is not None:
        print(f"segsvc: error: {cause}", file=sys.stderr)
        sys.exit(2)


def data_check(args: argparse.Namespace) -> None:
    """Statistics per split, the refusals `fit` would make and the recipe it would choose, without training; exit 2 on a refusal.

    The YAML is parsed as `fit` parses it, but only the data module is built: no model, so no weights and no network."""
    from segsvc.data.recipe import format_recipe
    from segsvc.training.recipe import choose_recipe

    try:
        with warnings.catch_warnings():  # LightningCLI frowns at args= beside a non-empty sys.argv: intended here
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = build_cli(args.args, run=False, data_only=True)
        datamodule, out = cli.datamodule, Path(cli.config.trainer.default_root_dir or ".")
        splits = tuple(s for s in ("train", "val", "test") if s != "test" or datamodule.has_split("test"))
        report = datamodule.check_data(splits, out)
        weighting = cli.config.model.class_weighting
        choices = choose_recipe(weighting, datamodule, cli.auto_schedule, cli.auto_validation) if not report.refusals else []
    except Exception as error:
        exit_on_data_error(error)
        raise
    print(report.table)
    print(f"(written to {out / 'data_check.txt'})")
    if choices:
        print(format_recipe(choices))
    for warning in report.warnings:
        print(f"segsvc: warning: {warning}", file=sys.stderr)
    if report.refusals:
        print(f"segsvc: error: {report.refusals[0]}", file=sys.stderr)
        sys.exit(2)


def data_init(words: list[str]) -> None:
    """Look at a folder and write the data part of a fit YAML that reads it, saying what was found and why."""
    from segsvc.data.layout import DataError
    from segsvc.data.survey import survey

    parser = argparse.ArgumentParser(prog="segsvc data init", description=data_init.__doc__)
    parser.add_argument("root", help="the dataset folder, as the YAML should name it")
    parser.add_argument("-o", "--output", default=None, help="the YAML to write (default: print it)")
    args = parser.parse_args(words)
    try:
        reading = survey(Path(args.root))
    except DataError:
        raise
    except Exception as error:  # whatever a folder holds, bad input is one line, not a traceback
        first = (str(error).strip().splitlines() or [""])[0]
        raise DataError(f"{args.root}: cannot be read ({type(error).__name__}: {first})") from error
    name = Path(args.output).stem if args.output else Path(args.root).resolve().name
    text = reading.to_yaml(args.root, f"runs/{name}")
    report = sys.stdout if args.output else sys.stderr  # without -o, stdout is the YAML alone
    for line in reading.found:
        print(f"found: {line}", file=report)
    for line in reading.others:
        print(f"another reading: {line} (named in the YAML's comments)", file=report)
    if args.output is None:
        print(text, end="")
        return
    Path(args.output).write_text(text)
    print(f"wrote {args.output}; next: segsvc data check --config {args.output}", file=report)


def export(args: argparse.Namespace) -> None:
    import torch

    from segsvc.models.serialization import save_model
    from segsvc.training.module import load_checkpoint

    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    module = load_checkpoint(checkpoint)
    if module.hparams.architecture != "segsvc":
        raise ValueError(f"{checkpoint} holds a {module.hparams.architecture} model; only segsvc models export")
    model = module.model.eval().float()
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own Lightning checkpoint
    metadata = {"checkpoint": checkpoint.name, "epoch": saved.get("epoch"), "global_step": saved.get("global_step")}
    if args.format == "onnx":
        from segsvc.models.export import export_onnx

        out = export_onnx(model, Path(args.output))
    else:
        dtype = torch.float16 if args.fp16 else torch.float32
        out = save_model(model, args.output, dtype=dtype, metadata={k: v for k, v in metadata.items() if v is not None})
    print(f"wrote {out}")


def evaluate(args: argparse.Namespace) -> None:
    """Score a model folder on a split at full resolution: JSON on stdout, the confusion matrix as a picture."""
    import json

    from PIL import Image

    from segsvc.data.datasets import CAMVID_IGNORE_INDEX, DataError, SegmentationDataset
    from segsvc.evaluation.evaluate import evaluate_dataset, evaluate_folder
    from segsvc.io.modelfolder import DEFAULT_MODEL_DIR, read_config
    from segsvc.io.visualize import confusion_picture
    from segsvc.runtime import load_runtime
    from segsvc.training.datamodule import default_data_root

    if args.config and args.root:
        raise ValueError("give --config (any data module) or --root (a CamVid folder), not both")
    model_dir = DEFAULT_MODEL_DIR if args.model == "default" else Path(args.model)
    config = read_config(model_dir)
    if args.config:
        data = datamodule_from_config(args.config)
        if data.num_classes != config["num_classes"]:
            raise ValueError(f"the model has {config['num_classes']} classes, the data in {args.config} {data.num_classes} ({data.class_names})")
        if list(data.class_names) != list(config["class_names"]):  # same count, other classes: scores would mean nothing
            raise ValueError(f"the model's classes {config['class_names']} are not the data's {list(data.class_names)} in {args.config}")
        try:
            dataset = SegmentationDataset(data.split_pairs(args.split), data.mask_format)
        except DataError as error:
            raise ValueError(str(error)) from error
        names, ignore = data.class_names, data.ignore_index
    else:
        root = Path(args.root) if args.root else default_data_root() / "camvid"
        names = config["class_names"]
        ignore = config["ignore_index"] if config.get("ignore_index") is not None else CAMVID_IGNORE_INDEX
    runtime = load_runtime(model_dir, args.backend, threads=args.threads)
    if args.config:
        result = evaluate_dataset(runtime, dataset, config["num_classes"], ignore)
    else:
        result = evaluate_folder(runtime, root / args.split, root / f"{args.split}annot", config["num_classes"], ignore)
    picture = Path(args.confusion or f"runs/evaluate/{Path(str(args.model)).name}_{args.split}_confusion.png")
    picture.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(confusion_picture(result.pop("confusion"), list(names))).save(picture)
    result["iou"] = dict(zip(names, (round(v, 4) for v in result["iou"])))
    result["backend"] = runtime.form.name
    result["confusion_picture"] = str(picture)
    print(json.dumps(result, indent=2))


def datamodule_from_config(path: str):
    """The `data` section of a fit YAML, instantiated as fit would (class_path + init_args), and nothing else."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise ValueError(f"{path} has no data section (data: class_path + init_args, as for segsvc fit)")
    return instantiate_data(config["data"], f"the data section of {path}")


def instantiate_data(data: dict, where: str):
    """A data module from a config's `data` (class_path + init_args), as fit would build it."""
    from jsonargparse import ArgumentParser

    from segsvc.training.datamodule import SegmentationDataModule

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(SegmentationDataModule, "data")
    try:
        parsed = parser.parse_object({"data": data})
    except Exception as error:  # jsonargparse's ArgumentError, whose message spans lines
        raise ValueError(f"{where}: {str(error).strip().splitlines()[0]}") from error
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    return instantiate(parsed).data


def quantize(args: argparse.Namespace) -> None:
    from segsvc.io.modelfolder import DEFAULT_MODEL_DIR
    from segsvc.runtime.quantize import FLOAT_NODES, quantize_model_dir

    model_dir = DEFAULT_MODEL_DIR if args.model_dir == "default" else Path(args.model_dir)
    for out in quantize_model_dir(model_dir, args.calibration, args.images, args.method, () if args.all_int8 else FLOAT_NODES):
        print(f"wrote {out}")
    accuracy(args)


def accuracy(args: argparse.Namespace) -> None:
    """Each reduced-precision form's agreement with fp32 on the calibration images, recorded in the folder
    (what lets backend "auto" serve it); with masks beside the images, mIoU of fp32 and each form too."""
    from segsvc.evaluation.evaluate import evaluate_folder
    from segsvc.io.modelfolder import ACCURACY_FILE, DEFAULT_MODEL_DIR, read_config
    from segsvc.runtime import FORMS, load_runtime
    from segsvc.runtime.agreement import record_agreement
    from segsvc.runtime.auto import ineligible

    model_dir = DEFAULT_MODEL_DIR if args.model_dir == "default" else Path(args.model_dir)
    records = record_agreement(model_dir, args.calibration, args.images, threads=args.threads)
    for name, record in records.items():
        verdict = ineligible(FORMS[name], records) or "eligible for auto"
        print(f"{name}: agrees with fp32 on {100 * record['agreement']:.2f}% of pixels (worst image {100 * record['worst']:.2f}%) over {record['images']} images: {verdict}")
    print(f"wrote {model_dir / ACCURACY_FILE}")
    masks = Path(args.masks) if args.masks else calibration_masks(Path(args.calibration))
    if masks is None:
        print("no masks beside the calibration images (DIR/../masks or DIRannot): mIoU check skipped")
        return
    config = read_config(model_dir)
    ignore = config["ignore_index"] if config.get("ignore_index") is not None else 255
    for name in ("onnxruntime", *records):
        runtime = load_runtime(model_dir, name, threads=args.threads)
        result = evaluate_folder(runtime, args.calibration, masks, config["num_classes"], ignore)
        ious = " ".join(f"{class_name}={v:.3f}" for class_name, v in zip(config["class_names"], result["iou"]))
        print(f"mIoU of {name}: {result['miou']:.4f} over {result['images']} images ({ious})")


def calibration_masks(images: Path) -> Path | None:
    """Masks for a calibration folder, by the layouts segsvc trains on: images/ -> masks/, train/ -> trainannot/."""
    for candidate in (images.parent / "masks" if images.name == "images" else None, images.parent / f"{images.name}annot"):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


def end_process_group() -> None:
    """Destroy a DDP process group before the interpreter finalises (Lightning leaves it alive).

    Otherwise Gloo's worker threads can outlive the interpreter and abort the process at exit
    ("terminate called without an active exception", exit -6) after all the work was done.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    try:
        run_command(argv)
    finally:
        if "torch" in sys.modules:  # nothing to end when the command never imported torch
            end_process_group()


COMMANDS = (*LIGHTNING_COMMANDS, "predict", "data", "export", "evaluate", "quantize", "accuracy")


def run_command(argv: list[str] | None) -> None:
    explicit = argv is not None
    argv = list(argv if explicit else sys.argv[1:])
    if argv in (["-h"], ["--help"]):  # Lightning's help would list only fit, validate, test and predict
        print(__doc__.strip() + "\n\n`segsvc COMMAND --help` for a command's options.")
        return
    if not argv or not argv[0].startswith("-") and argv[0] not in (*COMMANDS, "import"):
        given = f"unknown command {argv[0]!r}" if argv else "no command"
        print(f"segsvc: error: {given}: the commands are {', '.join(COMMANDS)} (segsvc --help)", file=sys.stderr)
        sys.exit(2)
    if argv[0] == "predict":
        from segsvc.training.predict_writer import run_predict

        run_predict(argv[1:])
        return
    if argv[0] in LIGHTNING_COMMANDS or argv[0].startswith("-"):
        run_lightning(argv if explicit else None)
        return
    if argv[:1] == ["import"] or argv[:1] == ["export"] and "--bento" in argv:
        print("segsvc: error: the BentoML model store is the service's: `segsvc export CKPT -o DIR`, then `segsvc-bento import DIR [--tag NAME]`", file=sys.stderr)
        sys.exit(2)
    from segsvc.runtime import BACKENDS

    parser = argparse.ArgumentParser(prog="segsvc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("export", help="checkpoint -> self-describing model folder (or ONNX file)")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    p.set_defaults(func=export)
    p = commands.add_parser("data", help="look at a dataset before training on it")
    p.add_argument("action", choices=("init", "check"), help="init ROOT [-o X.yaml]: write the YAML that reads a folder; "
                   "check: statistics per split and fit's refusals")  # fmt: skip
    p.add_argument("args", nargs=argparse.REMAINDER, help="init: ROOT [-o X.yaml]; check: --config X.yaml and dotted overrides, as for fit")
    p.set_defaults(func=lambda args: data_init(args.args) if args.action == "init" else data_check(args))
    p = commands.add_parser("evaluate", help="score a model folder on a split of any data module at full resolution")
    p.add_argument("model", help="model folder, or 'default' for the shipped model")
    p.add_argument("--config", default=None, help="a fit YAML: its data section says where the data is and how to read it")
    p.add_argument("--root", default=None, help="without --config: a CamVid folder (default: $SEGSVC_DATA_ROOT/camvid)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--confusion", default=None, help="confusion-matrix picture (default: runs/evaluate/<model>_<split>_confusion.png)")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime", help="engine and precision (auto: the fastest eligible)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: all cores)")
    p.set_defaults(func=evaluate)
    p = commands.add_parser("quantize", help="write the int8 forms of a model folder and record their accuracy")
    p.add_argument("model_dir", help="model folder, or 'default' for the shipped model")
    p.add_argument("--calibration", required=True, help="folder of representative images (recursive)")
    p.add_argument("--images", type=int, default=32, help="calibration images, spread over the folder")
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    p.add_argument("--masks", default=None, help="masks for the accuracy check (default: found beside the images)")
    p.add_argument("--all-int8", action="store_true", help="no float layers: faster, less accurate (docs/performance.md, INT8)")
    p.add_argument("--threads", type=int, default=None, help="engine threads for the accuracy check")
    p.set_defaults(func=quantize)
    p = commands.add_parser("accuracy", help="record each bf16/int8 form's agreement with fp32 (what lets auto serve it)")
    p.add_argument("model_dir", help="model folder, or 'default' for the shipped model")
    p.add_argument("--calibration", required=True, help="folder of representative images (recursive)")
    p.add_argument("--images", type=int, default=32, help="images, spread over the folder")
    p.add_argument("--masks", default=None, help="masks for an mIoU check (default: found beside the images)")
    p.add_argument("--threads", type=int, default=None, help="engine threads")
    p.set_defaults(func=accuracy)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        parser.exit(2, f"segsvc {args.command}: error: {error}\n")


if __name__ == "__main__":
    main()
