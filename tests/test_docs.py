"""The documentation: the site builds with `mkdocs build --strict` (a broken link, a missing anchor or a page
left out of the nav fails it), and the README stays a short landing page whose links resolve."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def test_docs_site_builds_strictly(tmp_path):
    mkdocs = str(MKDOCS) if MKDOCS.exists() else shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e .[dev])")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ray_page = (tmp_path / "site" / "bulk" / "index.html").read_text()
    assert "A Ray Data actor: one model, many images." in ray_page  # the tested example, included verbatim


def test_readme_is_a_short_landing_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_docs_name_no_issue_numbers():
    """Guides say what is true, not which ticket made it so."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.search(r"\bissues? #?\d+", line, re.IGNORECASE), f"{path.relative_to(ROOT)}:{number}: {line}"


def test_each_mask_format_yaml_on_the_own_data_page_loads_its_data(tmp_path, camvid_mini):
    """The YAML shown for each mask format, pointed at what scripts/camvid_formats.py writes, decodes masks of
    its classes: the page's examples are configs that work, not sketches."""
    yaml = pytest.importorskip("yaml")
    from scripts.camvid_formats import convert, write_exports
    from segsvc.training.datamodule import SegmentationDataModule

    converted = write_exports(camvid_mini, convert(camvid_mini, tmp_path / "camvid_formats"))
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "own-data.md").read_text(), re.S)
    formats = set()
    for block in blocks:
        data = yaml.safe_load(block)["data"]
        assert data["class_path"] == "segsvc.training.datamodule.SegmentationDataModule"
        args = dict(data["init_args"])
        root = Path(args.pop("root"))
        assert root.parent == Path("data/camvid_formats"), root
        formats.add(args.get("mask_format", "values" if "mask_values" in args else "index"))
        module = SegmentationDataModule(str(converted / root.name), **args, num_workers=0, cache=False)
        for split in ("train", "val"):
            _, mask = module.dataset(split).load(0)
            ignore = args.get("ignore_index", 255)
            assert set(np.unique(mask)) - {ignore} <= set(range(len(module.class_names))), (root.name, split)
    assert formats == {"index", "values", "color", "coco", "yolo", "labelme"}


RETIRED = {"benchmarks/bench_int8.py": "benchmarks/bench_engines.py"}  # named by dated logs, each with its successor


def test_every_source_file_the_docs_name_exists():
    """A path like `segsvc/runtime/tiling.py` or `tests/models/test_sizes.py` in the README, a guide or a
    measurement log is a file of this repository (or a retired one whose page names its successor): a move or a
    rename that leaves one behind fails here."""
    pattern = re.compile(r"\b((?:segsvc|training|service|tests|benchmarks|scripts|configs|docs)/[\w./-]+\.(?:py|yaml|md))\b")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for named in pattern.findall(line):
                if named in RETIRED and RETIRED[named] in path.read_text():
                    continue
                assert (ROOT / named).exists(), f"{path.relative_to(ROOT)}:{number} names {named}, which is not here"
