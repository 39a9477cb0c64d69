from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from segsvc.models.sizes import (
    check_divisible,
    conv_output_size,
    padded_size,
    same_padding,
    transposed_conv_output_size,
    valid_output_size,
)

GRID = [(n, f, s, p) for n, f, s, p in itertools.product([7, 16, 31, 32, 33], [1, 2, 3, 5], [1, 2, 3], [0, 1, 2]) if p < f]


@pytest.mark.parametrize("n,f,s,p", GRID)
def test_conv_and_pool_formula_matches_torch(n, f, s, p):
    x = torch.zeros(1, 1, n, n)
    expected = conv_output_size(n, f, s, p)
    assert nn.Conv2d(1, 1, f, s, p)(x).shape[-1] == expected
    if p <= f // 2:  # torch's pooling limit on padding
        assert nn.MaxPool2d(f, s, p)(x).shape[-1] == expected
        assert nn.AvgPool2d(f, s, p)(x).shape[-1] == expected


@pytest.mark.parametrize("n,k,s,p,op", [(n, k, s, p, op) for n, k, s, p in GRID for op in (0, 1) if op < s])
def test_transposed_formula_matches_torch(n, k, s, p, op):
    expected = transposed_conv_output_size(n, k, s, p, op)
    x = torch.zeros(1, 1, n, n)
    assert nn.ConvTranspose2d(1, 1, k, s, p, output_padding=op)(x).shape[-1] == expected


@pytest.mark.parametrize("n", [5, 32, 57])
@pytest.mark.parametrize("f", [1, 3, 5, 7])
def test_same_padding_keeps_size(n, f):
    x = torch.zeros(1, 1, n, n)
    assert nn.Conv2d(1, 1, f, 1, same_padding(f))(x).shape[-1] == n
    assert conv_output_size(n, f, 1, same_padding(f)) == n


def test_worked_examples():
    assert conv_output_size(32, 5, stride=1, padding=2) == 32
    assert valid_output_size(32, 5) == 28
    assert conv_output_size(32, 2, stride=2) == 16  # 2x2 pooling, stride 2
    assert nn.MaxPool2d(2, 2)(torch.zeros(1, 1, 32, 32)).shape[-1] == 16
    assert transposed_conv_output_size(2, 3, stride=2, padding=0) == 5
    assert nn.ConvTranspose2d(1, 1, 3, 2)(torch.zeros(1, 1, 2, 2)).shape[-2:] == (5, 5)


def test_vertical_edge_filter_worked_example():
    image = torch.tensor(
        [[3, 4, 1, 2, 5], [5, 6, 2, 1, 3], [1, 2, 3, 4, 6], [6, 7, 5, 4, 2], [3, 2, 1, 6, 5]], dtype=torch.float32
    )
    kernel = torch.tensor([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=torch.float32)
    out = torch.nn.functional.conv2d(image[None, None], kernel[None, None])
    assert out.shape[-2:] == (valid_output_size(5, 3),) * 2
    assert out[0, 0, 0, 0].item() == 3  # (3+5+1) - (1+2+3)


def test_max_and_average_pooling_values():
    x = torch.tensor([[1.0, 3, 2, 4], [5, 7, 6, 8], [0, 0, 1, 1], [0, 4, 1, 3]])[None, None]
    assert nn.MaxPool2d(2)(x)[0, 0].tolist() == [[7, 8], [4, 3]]
    assert nn.AvgPool2d(2)(x)[0, 0].tolist() == [[4, 5], [1, 1.5]]


def test_padding_helpers():
    assert padded_size(361, 32) == 384 and padded_size(480, 32) == 480
    with pytest.raises(ValueError, match="height 100 is not a multiple of 32; pad to 128"):
        check_divisible(100, 64, 32)
    with pytest.raises(ValueError, match="odd kernel"):
        same_padding(4)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv_output_size(2, 5)
