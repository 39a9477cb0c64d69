from __future__ import annotations

import math

import torch

from segsvc.evaluation.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1], [1, 2, 9]])  # 9 = ignore
    prediction = torch.tensor([[0, 1, 1], [1, 2, 0]])
    confusion = confusion_matrix(prediction, target, num_classes=3, ignore_index=9)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_iou_and_accuracy_by_hand():
    # rows: truth, cols: prediction
    confusion = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    iou = iou_per_class(confusion)
    assert math.isclose(iou[0].item(), 3 / (3 + 1 + 2))  # TP / (TP + FP + FN)
    assert math.isclose(iou[1].item(), 4 / (4 + 2 + 1))
    assert math.isnan(iou[2].item())  # absent everywhere: not averaged in
    assert math.isclose(mean_iou(confusion), (3 / 6 + 4 / 7) / 2)
    assert math.isclose(pixel_accuracy(confusion), 7 / 10)


def test_class_predicted_but_absent_counts_as_zero():
    confusion = torch.tensor([[2, 2], [0, 0]])
    assert iou_per_class(confusion).tolist() == [0.5, 0.0]
