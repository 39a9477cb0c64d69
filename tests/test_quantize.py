"""INT8: the shipped default's int8 form against its float form, and `segsvc quantize` end to end."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import segsvc
from segsvc.data import SegmentationFolder
from segsvc.evaluate import evaluate_folder
from segsvc.onnx_backend import OnnxBackend, make_runner
from segsvc.quantize import INT8_FILE, calibration_images
from segsvc.serialization import DEFAULT_MODEL_DIR, load_model, save_model
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def default_runners():
    model = segsvc.load_default_model()
    return model, make_runner(model, "onnx", threads=1), make_runner(model, "int8", threads=1)


def test_default_int8_agrees_with_fp32_on_every_camvid_mini_test_image(default_runners, camvid_mini):
    model, fp32, int8 = default_runners
    assert isinstance(int8, OnnxBackend)
    dataset = SegmentationFolder(camvid_mini / "test", camvid_mini / "testannot", 11, 11)
    for index in range(len(dataset)):
        image, _ = dataset.load(index)
        agreement = float((segsvc.predict_mask(fp32, image) == segsvc.predict_mask(int8, image)).mean())
        assert agreement >= 0.97, f"{dataset.pairs[index][0].name}: int8 agrees with fp32 on {agreement:.4f} of pixels"


def test_default_int8_miou_is_within_0_02_of_fp32(default_runners, camvid_mini):
    model, fp32, int8 = default_runners
    scores = [
        evaluate_folder(runner, camvid_mini / "test", camvid_mini / "testannot", 11, 11)["miou"] for runner in (fp32, int8)
    ]
    assert abs(scores[0] - scores[1]) <= 0.02, scores


def test_int8_backend_without_the_file_names_the_command(tmp_path):
    save_model(load_model(DEFAULT_MODEL_DIR, fuse=False), tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"no int8 model in .*: run `segsvc quantize"):
        make_runner(load_model(tmp_path / "m"), "int8")


def test_int8_file_of_other_weights_is_refused(tmp_path):
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    model = load_model(tmp_path / "m", fuse=False)
    with torch.no_grad():
        model.head.bias.add_(0.5)
    save_model(model, tmp_path / "m", dtype=torch.float16)  # new weights, old int8 file
    with pytest.raises(ValueError, match="made from other weights"):
        make_runner(load_model(tmp_path / "m"), "int8")


def test_int8_backend_needs_a_model_folder():
    with pytest.raises(ValueError, match="model loaded from a model folder"):
        make_runner(segsvc.build_model(3), "int8")


def test_calibration_images_spread_over_the_folder(camvid_mini):
    files = calibration_images(camvid_mini / "train", 4)
    assert len(files) == 4 and files[0].name < files[-1].name
    assert len(calibration_images(camvid_mini / "train", 1000)) == 12


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_quantize_cli_writes_the_int8_file_and_prints_the_accuracy_check(tmp_path, camvid_mini):
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    (tmp_path / "m" / INT8_FILE).unlink()
    result = run_cli("quantize", str(tmp_path / "m"), "--calibration", str(camvid_mini / "train"), "--images", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "m" / INT8_FILE).is_file()
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert "mIoU" in lines["fp32"] and "over 12 images" in lines["int8"], result.stdout
    image = np.asarray(SegmentationFolder(camvid_mini / "val", camvid_mini / "valannot", 11, 11).load(0)[0])
    model = load_model(tmp_path / "m")
    agreement = (segsvc.predict_mask(make_runner(model, "onnx", 1), image) == segsvc.predict_mask(make_runner(model, "int8", 1), image)).mean()
    assert agreement >= 0.95


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("quantize", "no/such/model", "--calibration", "."), "not a segsvc model folder"),
        (("quantize", "default", "--calibration", "no/such/folder"), "calibration folder not found"),
        (("evaluate", "default", "--backend", "int8", "--root", "no/such/root"), "folder not found"),
    ],
)
def test_quantize_and_evaluate_refuse_bad_input_with_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
