"""The shipped default model: loads, is small, and still segments CamVid (a broken export can't land)."""

from __future__ import annotations

import json

import segsvc
from segsvc.data.datasets import CAMVID_CLASSES, CAMVID_IGNORE_INDEX
from segsvc.evaluation.evaluate import evaluate_folder
from segsvc.io.modelfolder import DEFAULT_MODEL_DIR, ONNX_FILE, graph_stamp, weights_digest
from tests.conftest import run_segsvc


def test_default_model_is_small_and_self_describing():
    """Weights in float16 (4 MB), the float graph (8 MB) and two int8 graphs (2.5 MB each)."""
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size < 18 * 2**20
    model = segsvc.load_default_model()
    assert model.class_names == CAMVID_CLASSES and model.ignore_index == CAMVID_IGNORE_INDEX
    assert graph_stamp(DEFAULT_MODEL_DIR / ONNX_FILE) == weights_digest(DEFAULT_MODEL_DIR)


def test_default_model_scores_above_floor_on_camvid_mini(camvid_mini):
    model = segsvc.load_default_model()
    result = evaluate_folder(model, camvid_mini / "test", camvid_mini / "testannot", 11, CAMVID_IGNORE_INDEX)
    assert result["images"] == 4
    assert result["miou"] > 0.6, result  # measured 0.631 (full test split: 0.632); an untrained or mangled model scores < 0.1


def test_evaluate_cli_prints_json(camvid_mini):
    result = run_segsvc("evaluate", "default", "--root", str(camvid_mini), "--split", "val", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["images"] == 4 and report["miou"] > 0.5 and set(report["iou"]) == set(CAMVID_CLASSES)
