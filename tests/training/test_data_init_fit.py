"""`segsvc data init` then `segsvc fit` on what it wrote, through the real CLI, for each export of a labelling tool
made from camvid_mini: the data settings as written, only the run kept short (two steps, one val batch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.camvid_formats import EXPORTS, write_exports
from tests.conftest import WEIGHTS, run_segsvc

SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", "--model.encoder_weights", str(WEIGHTS)]  # fmt: skip
FAST = ("yolo_roboflow", "labelme3")  # the rest run in CI's slow pass


@pytest.fixture(scope="module")
def exports(tmp_path_factory, camvid_mini) -> Path:
    return write_exports(camvid_mini, tmp_path_factory.mktemp("exports"))


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in EXPORTS])
def test_fit_trains_on_the_yaml_data_init_wrote(exports, tmp_path, imagenet_weights, name):
    written = tmp_path / f"{name}.yaml"
    result = run_segsvc("data", "init", str(exports / name), "-o", str(written))
    assert result.returncode == 0, result.stderr[-3000:]
    assert yaml.safe_load(written.read_text())["trainer"] == {"default_root_dir": f"runs/{name}"}
    run = tmp_path / "run"
    result = run_segsvc("fit", "--config", str(written), "--trainer.default_root_dir", str(run), *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").exists() and "recipe (chosen from the data" in result.stdout
    assert "mask values seen" in (run / "data_check.txt").read_text()
