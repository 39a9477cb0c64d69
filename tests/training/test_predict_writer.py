"""`segsvc predict` over a folder: 2-process DDP on CPU, masks equal `predict_mask`'s, once each, resumable."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segsvc
from tests.conftest import run_segsvc

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false"]


def summary(result: subprocess.CompletedProcess) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith("segsvc predict: "))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, camvid_mini) -> Path:
    """camvid_mini's 20 images in nested folders, as PNG and JPEG, plus one corrupt file."""
    root = tmp_path_factory.mktemp("bulk") / "in"
    for split in ("train", "val", "test"):
        shutil.copytree(camvid_mini / split, root / split)
    for path in sorted((root / "train").iterdir())[:3]:  # a few as JPEG: any format the service reads
        Image.open(path).convert("RGB").save(path.with_suffix(".jpg"), quality=90)
        path.unlink()
    (root / "test" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 50)
    return root


@pytest.fixture(scope="module")
def first_run(folder):
    out = folder.parent / "out"
    result = run_segsvc("predict", "--model", "default", "--input", str(folder), "--output", str(out), "--overlays", "true", *DDP)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_ddp_masks_equal_predict_mask_once_each(folder, first_run):
    out, result = first_run
    images = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != "broken.png")
    assert len(images) == 20
    masks = sorted(p.relative_to(out / "masks") for p in (out / "masks").rglob("*.png"))
    assert masks == sorted(p.with_suffix(".png") for p in images)  # same relative paths, one mask each
    model = segsvc.load_default_model()
    for relative in images:
        mask = Image.open(out / "masks" / relative.with_suffix(".png"))
        assert mask.mode == "P" and mask.getpalette()[:6] == [128, 128, 128, 128, 0, 0]
        np.testing.assert_array_equal(np.asarray(mask), segsvc.predict_mask(model, Image.open(folder / relative)))
        assert Image.open(out / "overlays" / relative.with_suffix(".jpg")).size == mask.size
    # each rank's shard has a row per image it wrote: no image done twice, none missed, both ranks worked
    shards = [list(csv.reader(p.open())) for p in sorted((out / ".parts").glob("class_shares-rank*.csv"))]
    assert len(shards) == 2 and all(shards)
    written = [row[0] for shard in shards for row in shard]
    assert sorted(written) == sorted(p.as_posix() for p in images)
    assert summary(result).startswith("segsvc predict: 20 masks written, 0 already there, 1 unreadable")
    shares = list(csv.DictReader((out / "class_shares.csv").open()))
    assert len(shares) == 20 and all(abs(sum(float(row[c]) for c in list(row)[3:]) - 1) < 1e-4 for row in shares)


def test_corrupt_file_is_listed_and_skipped(first_run):
    out, _ = first_run
    errors = list(csv.DictReader((out / "errors.csv").open()))
    assert [row["path"] for row in errors] == ["test/broken.png"]
    assert "corrupt" in errors[0]["error"] or "not an image" in errors[0]["error"]
    assert not (out / "masks" / "test" / "broken.png").exists()


def test_rerun_writes_nothing_new(folder, first_run):
    out, _ = first_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".png", ".jpg")}
    result = run_segsvc("predict", "--model", "default", "--input", str(folder), "--output", str(out), "--overlays", "true", *DDP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(result).startswith("segsvc predict: 0 masks written, 20 already there, 1 unreadable")
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".png", ".jpg")}
    assert after == before
    assert len(list(csv.DictReader((out / "class_shares.csv").open()))) == 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope", "--input", "{folder}", "--output", "{out}"], "segsvc predict: error: model not found: nope"),
        (["--model", "default", "--input", "{missing}", "--output", "{out}"], "segsvc predict: error: input folder not found: {missing}"),
        (["--model", "default", "--output", "{out}"], "segsvc predict: error: "),
    ],
    ids=["missing-model", "missing-input", "no-input-given"],
)
def test_bad_input_is_one_line_and_exit_2(folder, tmp_path, args, message):
    values = {"folder": str(folder), "out": str(tmp_path / "out"), "missing": str(tmp_path / "missing")}
    result = run_segsvc("predict", *(a.format(**values) for a in args))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(message.format(**values))
