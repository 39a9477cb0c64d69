"""INT8: the shipped default's int8 forms against its float form, and `segsvc quantize` / `segsvc accuracy` end to end."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import segsvc
from segsvc.data.datasets import SegmentationFolder
from segsvc.evaluation.evaluate import evaluate_folder
from segsvc.io.modelfolder import ACCURACY_FILE, DEFAULT_MODEL_DIR, INT8_FILE, INT8_QDQ_FILE, read_accuracy
from segsvc.runtime import load_runtime
from segsvc.runtime.quantize import calibration_images
from tests.conftest import run_segsvc

INT8_FORMS = ("onnxruntime-int8", "openvino-int8")


@pytest.fixture(scope="module")
def default_runtimes():
    return {form: load_runtime(DEFAULT_MODEL_DIR, form, threads=1) for form in ("onnxruntime", *INT8_FORMS)}


@pytest.mark.parametrize("form", INT8_FORMS)
def test_default_int8_agrees_with_fp32_on_every_camvid_mini_test_image(form, default_runtimes, camvid_mini):
    fp32, int8 = default_runtimes["onnxruntime"], default_runtimes[form]
    dataset = SegmentationFolder(camvid_mini / "test", camvid_mini / "testannot", 11, 11)
    for index in range(len(dataset)):
        image, _ = dataset.load(index)
        agreement = float((segsvc.predict_mask(fp32, image) == segsvc.predict_mask(int8, image)).mean())
        assert agreement >= 0.97, f"{dataset.pairs[index][0].name}: {form} agrees with fp32 on {agreement:.4f} of pixels"


@pytest.mark.parametrize("form", INT8_FORMS)
def test_default_int8_miou_is_within_0_02_of_fp32(form, default_runtimes, camvid_mini):
    scores = [
        evaluate_folder(default_runtimes[name], camvid_mini / "test", camvid_mini / "testannot", 11, 11)["miou"]
        for name in ("onnxruntime", form)
    ]
    assert abs(scores[0] - scores[1]) <= 0.02, scores


def test_the_shipped_default_carries_its_accuracy_record():
    records = read_accuracy(DEFAULT_MODEL_DIR)
    assert set(INT8_FORMS) <= set(records)
    assert all(record["agreement"] >= 0.98 and record["images"] == 32 for record in records.values()), records


def test_calibration_images_spread_over_the_folder(camvid_mini):
    files = calibration_images(camvid_mini / "train", 4)
    assert len(files) == 4 and files[0].name < files[-1].name
    assert len(calibration_images(camvid_mini / "train", 1000)) == 12


def test_quantize_cli_writes_the_int8_files_and_their_accuracy_record(tmp_path, camvid_mini):
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    for name in (INT8_FILE, INT8_QDQ_FILE, ACCURACY_FILE):
        (folder / name).unlink()
    result = run_segsvc("quantize", str(folder), "--calibration", str(camvid_mini / "train"), "--images", "4", "--threads", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (folder / INT8_FILE).is_file() and (folder / INT8_QDQ_FILE).is_file()
    records = read_accuracy(folder)
    assert set(INT8_FORMS) <= set(records) and all(r["images"] == 4 for r in records.values()), records
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert "agrees with fp32 on" in lines["onnxruntime-int8"] and "over 12 images" in lines["mIoU of onnxruntime"], result.stdout
    image = np.asarray(SegmentationFolder(camvid_mini / "val", camvid_mini / "valannot", 11, 11).load(0)[0])
    fp32 = segsvc.predict_mask(load_runtime(folder, "onnxruntime", 1), image)
    for form in INT8_FORMS:
        agreement = float((segsvc.predict_mask(load_runtime(folder, form, 1), image) == fp32).mean())
        assert agreement >= 0.95, (form, agreement)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("quantize", "no/such/model", "--calibration", "."), "not a segsvc model folder"),
        (("quantize", "default", "--calibration", "no/such/folder"), "calibration folder not found"),
        (("evaluate", "default", "--backend", "onnxruntime-int8", "--root", "no/such/root"), "folder not found"),
        (("accuracy", "no/such/model", "--calibration", "."), "not a segsvc model folder"),
    ],
)
def test_quantize_and_evaluate_refuse_bad_input_with_one_line(args, message):
    result = run_segsvc(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
