"""A reading of a dataset folder: the data module's settings that read it, what was found and why, and the
other readings that also fit (`segsvc.data.survey` makes it; `segsvc data init` writes it as YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Reading:
    """`init_args` for the data module (`class_path`); `root_suffix` a glob under the root ("Tile */") when tile
    folders are one set."""

    init_args: dict
    found: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    root_suffix: str = ""
    class_path: str = "segsvc.training.datamodule.SegmentationDataModule"

    def add_split(self, has_val: bool, why: str = "") -> None:
        """Use the val split when there is one, else split a fifth of train off."""
        if has_val:
            self.found.append(f"train and val splits{': ' + why if why else ''}")
        else:
            self.init_args["val_fraction"] = 0.2
            self.found.append("no val split: a seeded fifth of train is split off (val_fraction: 0.2)")

    def to_yaml(self, root: str, run_dir: str) -> str:
        """The data part of a fit YAML (and where the run writes), with what was found and the other readings as comments."""
        lines = [f"# written by `segsvc data init {root}`; check it with `segsvc data check --config` on this file"]
        lines += [f"# found: {line}" for line in self.found]
        lines += [f"# another reading: {line}" for line in self.others]
        args = {"root": f"{root.rstrip('/')}/{self.root_suffix}" if self.root_suffix else root, **self.init_args}
        lines += ["trainer:", f"  default_root_dir: {flow(run_dir)}"]
        lines += ["data:", f"  class_path: {self.class_path}", "  init_args:"]
        lines += [f"    {key}: {flow(value)}" for key, value in args.items()]
        return "\n".join(lines) + "\n"


def flow(value) -> str:
    """One YAML value on one line."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()

