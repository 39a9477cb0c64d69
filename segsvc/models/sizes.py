"""Output-size arithmetic for convolution, pooling and transposed convolution.

Pure functions, so the model can check its input and explain errors, and tests can check each formula
against the real torch layer.
"""

from __future__ import annotations


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """O = (n - f + 2p) / s + 1 (floored), for convolution and pooling alike."""
    effective_kernel = dilation * (kernel - 1) + 1
    if n + 2 * padding < effective_kernel:
        raise ValueError(f"input size {n} with padding {padding} is smaller than the kernel {effective_kernel}")
    return (n - effective_kernel + 2 * padding) // stride + 1


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the size at stride 1 ("same"), for odd kernels: p = (f - 1) / 2."""
    if kernel % 2 == 0:
        raise ValueError(f"'same' padding needs an odd kernel, got {kernel}")
    return dilation * (kernel - 1) // 2


def valid_output_size(n: int, kernel: int, stride: int = 1) -> int:
    """"Valid" convolution: no padding, O = (n - f) / s + 1."""
    return conv_output_size(n, kernel, stride, padding=0)


def transposed_conv_output_size(
    n: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0
) -> int:
    """(H_in - 1) * stride - 2 * padding + kernel + output_padding."""
    return (n - 1) * stride - 2 * padding + kernel + output_padding


def padded_size(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n."""
    return -(-n // multiple) * multiple


def check_divisible(height: int, width: int, multiple: int) -> None:
    """Raise ValueError naming the padded size when height or width is not a multiple of `multiple`."""
    for name, n in (("height", height), ("width", width)):
        if n % multiple:
            raise ValueError(
                f"{name} {n} is not a multiple of {multiple}; pad to {padded_size(n, multiple)} "
                "(segsvc.predict_mask pads and crops back for you)"
            )
