"""Decoding untrusted image bytes into RGB arrays, with limits and clear errors.

Any format and mode Pillow reads (JPEG, PNG, WebP, BMP, TIFF, GIF's first frame; L, LA, P, RGB, RGBA,
CMYK, I;16, ...) becomes HxWx3 uint8, with the EXIF orientation applied so that masks line up with what
an image viewer shows.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}  # what a folder of images holds


class ImageError(ValueError):
    """An input image that cannot be used; `status` is the HTTP status a service should answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> RGB uint8 array (H, W, 3). Raises ImageError (400 or 413)."""
    if not data:
        raise ImageError("empty input: expected the bytes of an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_pixels(image.size, max_pixels)
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"image is over the limit of {max_pixels} pixels ({error})", status=413) from error
    except UnidentifiedImageError as error:
        raise ImageError("not an image: Pillow cannot identify the format of the input") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"corrupt or truncated image: {error}") from error
    return to_rgb_array(image)


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}", status=413
        )


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> RGB uint8 (H, W, 3), EXIF orientation applied."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) not in (None, 1):  # exif_transpose copies even when upright
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = np.asarray(image).astype(np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or gray.max() > 255 else 255.0
        if image.mode == "F" and gray.max() <= 1.0:
            high = 1.0
        gray = np.clip(gray / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()
