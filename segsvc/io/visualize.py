"""Colouring masks and blending them over images, for people to look at."""

from __future__ import annotations

import numpy as np


def colorize(mask: np.ndarray, palette: list[tuple[int, int, int]]) -> np.ndarray:
    """Class ids (H, W) -> RGB (H, W, 3); ids outside the palette (void) are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[mask.astype(np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, palette: list[tuple[int, int, int]], alpha: float = 0.5) -> np.ndarray:
    """The image with the coloured mask blended on it (alpha = mask weight)."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(mask, palette).astype(np.float32)
    return blended.round().clip(0, 255).astype(np.uint8)


def palettized(mask: np.ndarray, palette: list[tuple[int, int, int]]):
    """A mode "P" PIL image: one byte per pixel (the class id), the class colours attached as its palette."""
    from PIL import Image

    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = [v for colour in palette for v in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def confusion_picture(confusion: np.ndarray, class_names: list[str], cell: int = 44) -> np.ndarray:
    """RGB (H, W, 3): the confusion matrix with rows (truth) normalised to 1, each cell shaded and labelled in %.

    The diagonal is each class's recall; a dark cell off it is a class mistaken for another.
    """
    from PIL import Image, ImageDraw

    confusion = np.asarray(confusion, dtype=np.float64)
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    count = len(class_names)
    label = 7 * max(len(name) for name in class_names) + 12  # room for the names, left and on top
    image = Image.new("RGB", (max(label + count * cell + 1, 330), label + count * cell + 1), "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), "truth (rows) vs prediction (columns), % of each row", fill="black")
    for i, name in enumerate(class_names):
        draw.text((4, label + i * cell + cell // 2 - 5), name, fill="black")
        column = Image.new("RGB", (label - 26, 12), "white")
        ImageDraw.Draw(column).text((0, 0), name, fill="black")
        image.paste(column.rotate(90, expand=True), (label + i * cell + cell // 2 - 6, 18))
    for i in range(count):
        for j in range(count):
            share = shares[i, j]
            shade = tuple(int(255 - share * (255 - c)) for c in (31, 119, 180))  # white -> blue
            box = (label + j * cell, label + i * cell, label + (j + 1) * cell, label + (i + 1) * cell)
            draw.rectangle(box, fill=shade, outline=(200, 200, 200))
            draw.text((box[0] + 6, box[1] + cell // 2 - 5), f"{100 * share:.0f}", fill="white" if share > 0.5 else "black")
    return np.asarray(image)
