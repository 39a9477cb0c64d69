"""Picture for the README: CamVid test images | ground truth | prediction of the shipped model.

    python scripts/predictions_figure.py --root ../shared/datasets/camvid -o docs/camvid_test_predictions.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import segsvc  # noqa: E402
from segsvc.data.datasets import CAMVID_IGNORE_INDEX, SegmentationFolder  # noqa: E402
from segsvc.io.visualize import overlay  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="../shared/datasets/camvid")
    parser.add_argument("-o", "--output", default="docs/camvid_test_predictions.jpg")
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    model = segsvc.load_default_model()
    root = Path(args.root)
    dataset = SegmentationFolder(root / "test", root / "testannot", 11, CAMVID_IGNORE_INDEX)
    rows = []
    for index in np.linspace(0, len(dataset) - 1, args.count).astype(int):
        image, mask = dataset.load(int(index))
        prediction = segsvc.predict_mask(model, image)
        rows.append(np.concatenate([image, overlay(image, mask, model.palette, 0.6), overlay(image, prediction, model.palette, 0.6)], 1))
    figure = Image.fromarray(np.concatenate(rows, 0))
    figure = figure.resize((figure.width // 2, figure.height // 2), Image.Resampling.LANCZOS)
    figure.save(args.output, quality=85)
    print(f"wrote {args.output}: columns = image | ground truth | prediction")


if __name__ == "__main__":
    main()
