"""Moving segsvc model folders into the BentoML model store (no pickle: config.json + safetensors), and the
command that does it for people, `segsvc-bento` (the training side's `segsvc` never imports BentoML):

    segsvc export runs/my_data/checkpoints/last.ckpt -o models/mine
    segsvc-bento import models/mine --tag mine
    SEGSVC_MODEL_TAG=mine:latest bentoml serve
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import bentoml

from segsvc.io.modelfolder import ACCURACY_FILE, CONFIG_FILE, DEFAULT_MODEL_DIR, GRAPH_FILES, WEIGHTS_FILE, read_config
from . import settings
from .settings import DEFAULT_MODEL_TAG

MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, *GRAPH_FILES, ACCURACY_FILE)  # the graphs and accuracy record are optional

DEFAULT_MODEL_NAME = DEFAULT_MODEL_TAG.partition(":")[0]


def model_digest(model_dir: str | Path) -> str:
    """A short sha256 of a model folder's config and weights: which model this is, whatever its tag."""
    digest = hashlib.sha256()
    for file in MODEL_FILES:
        if (Path(model_dir) / file).is_file():
            digest.update((Path(model_dir) / file).read_bytes())
    return digest.hexdigest()[:16]


def import_model(model_dir: str | Path, name: str | None = None) -> str:
    """Copy a `segsvc.save_model` folder into the model store; returns the new tag."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)  # fails clearly on anything that is not a segsvc model
    labels = {"architecture": config["architecture"], "classes": str(config["num_classes"]), "digest": model_digest(model_dir)}
    with bentoml.models.create(name or "segsvc-model", labels=labels, metadata={"class_names": config["class_names"]}) as model:
        for file in MODEL_FILES:
            if (model_dir / file).is_file():
                shutil.copyfile(model_dir / file, Path(model.path) / file)
    return str(model.tag)


def ensure_default_model() -> None:
    """Make the default tag resolve to the model that ships with this package.

    The store outlives upgrades: when its latest default is another model (an older release's, which this
    version may not even read), the shipped one is imported as a new version and becomes latest.
    """
    if settings.CURRENT.model_tag != DEFAULT_MODEL_TAG:
        return
    try:
        stored = bentoml.models.get(DEFAULT_MODEL_NAME).info.labels.get("digest")
    except bentoml.exceptions.NotFound:
        stored = None
    if stored != model_digest(DEFAULT_MODEL_DIR):
        import_model(DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME)


def main(argv: list[str] | None = None) -> None:
    """`segsvc-bento import MODEL_DIR [--tag NAME]`; a bad folder or tag is one line and exit 2."""
    parser = argparse.ArgumentParser(prog="segsvc-bento", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("import", help="model folder (from `segsvc export`) -> BentoML model store")
    p.add_argument("model_dir")
    p.add_argument("--tag", default=None, help="the model's name in the store (default: segsvc-model); serve it with SEGSVC_MODEL_TAG=NAME:latest")
    args = parser.parse_args(argv)
    try:
        print(import_model(Path(args.model_dir), args.tag))
    except (OSError, ValueError, KeyError, bentoml.exceptions.BentoMLException) as error:
        parser.exit(2, f"segsvc-bento {args.command}: error: {error}\n")


if __name__ == "__main__":
    main()
