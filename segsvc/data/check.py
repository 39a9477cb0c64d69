"""What a dataset holds, and the refusals that keep a run from training on nothing.

The classic silent failure: binary masks stored as 0/255 with `ignore_index` 255, so every foreground
pixel is ignored, the model learns "background" and still reports 0.999 pixel accuracy. Statistics come
from the decoded masks (what the loss sees), per split; `check` turns them into a table, refusals
(training would be meaningless) and warnings (training works, but look).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segsvc.data.masks import MaskFormat

IMBALANCE_WARNING = 1000.0  # most / least frequent class, in pixels
MAX_IGNORED_FRACTION = 0.5


@dataclass
class SplitStats:
    pairs: int = 0
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> images
    values: list[int] = field(default_factory=list)  # decoded ids seen, the ignore index included
    class_pixels: list[int] = field(default_factory=list)
    ignored_pixels: int = 0

    @property
    def total_pixels(self) -> int:
        return sum(self.class_pixels) + self.ignored_pixels


@dataclass
class Report:
    table: str
    refusals: list[str]
    warnings: list[str]


def measure(masks: Iterable[np.ndarray], num_classes: int, ignore_index: int) -> SplitStats:
    """Pair count, image sizes, ids seen and pixels per class over decoded masks (H, W)."""
    sizes: Counter = Counter()
    seen: set[int] = set()
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    pairs = ignored = 0
    for mask in masks:
        pairs += 1
        sizes[f"{mask.shape[1]}x{mask.shape[0]}"] += 1
        counts = np.bincount(mask.ravel().astype(np.int64), minlength=max(num_classes, ignore_index + 1))
        seen |= set(np.flatnonzero(counts).tolist())
        class_pixels += counts[:num_classes]
        ignored += int(counts[ignore_index]) if ignore_index < len(counts) else 0
    return SplitStats(pairs, dict(sizes), sorted(seen), class_pixels.tolist(), ignored)


def fingerprint(pairs: list, mask_format: MaskFormat, class_names: list[str]) -> str:
    """Changes when a file, its size or time stamp, the format or the classes change: the key of cached stats."""
    digest = hashlib.sha256(json.dumps([repr(mask_format), class_names]).encode())
    for image, source in pairs:
        mask_file = getattr(source, "path", source)
        for path in (Path(image), Path(mask_file)):
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        digest.update(str(getattr(source, "image_id", "")).encode())
    return digest.hexdigest()


def load_cached(path: Path, key: str) -> SplitStats | None:
    try:
        return SplitStats(**json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_cached(path: Path, key: str, stats: SplitStats) -> None:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    cached[key] = asdict(stats)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cached))


def check(
    stats: dict[str, SplitStats], class_names: list[str], mask_format: MaskFormat, crop_size: tuple[int, int]
) -> Report:
    """The table, the refusals (most specific first) and the warnings for per-split statistics."""
    refusals, warnings = [], []
    ignore = mask_format.ignore_index
    for split, split_stats in stats.items():
        if split_stats.pairs == 0:
            refusals.append(f"the {split} split is empty")
    train = stats.get("train")
    if train is not None and train.pairs:
        if mask_format.kind == "index" and ignore == 255 and set(train.values) == {0, 255}:
            refusals.append(
                "the train masks hold only the values 0 and 255, and 255 is ignore_index, so every 255 pixel would "
                "be ignored; if 255 marks a class, add `mask_values: [0, 255]` to the data's init_args in the YAML"
            )
        ignored_fraction = train.ignored_pixels / max(train.total_pixels, 1)
        if ignored_fraction > MAX_IGNORED_FRACTION:
            refusals.append(
                f"{ignored_fraction:.0%} of the train pixels are ignored (ignore_index {ignore}): "
                "check mask_values, palette, ignore_values or ignore_index"
            )
        missing = [f"{name} ({i})" for i, name in enumerate(class_names) if train.class_pixels[i] == 0]
        if missing:
            refusals.append(
                f"class {', '.join(missing)} never appears in the {train.pairs} train masks: "
                "the model cannot learn it; check the masks, mask_values or palette, or drop it from class_names"
            )
        present = [count for count in train.class_pixels if count > 0]
        if present and max(present) / min(present) > IMBALANCE_WARNING:
            rare = class_names[train.class_pixels.index(min(present))]
            warnings.append(
                f"class imbalance {max(present) / min(present):.0f}:1 in the train masks ({rare} is rarest); "
                "consider class_weighting: enet"
            )
        crop_h, crop_w = crop_size
        small = sum(n for size, n in train.sizes.items() if int(size.split("x")[0]) < crop_w or int(size.split("x")[1]) < crop_h)
        if small:
            warnings.append(f"{small} of {train.pairs} train images are smaller than the {crop_h}x{crop_w} crop (padded with ignore)")
    return Report(format_table(stats, class_names, mask_format), refusals, warnings)


def format_table(stats: dict[str, SplitStats], class_names: list[str], mask_format: MaskFormat) -> str:
    splits = list(stats)
    rows = [["", *splits]]
    rows.append(["pairs", *(str(stats[s].pairs) for s in splits)])
    rows.append(["image sizes", *(", ".join(f"{k} ({v})" for k, v in sorted(stats[s].sizes.items())) for s in splits)])
    rows.append(["mask values seen", *(" ".join(mask_format.describe(v) for v in stats[s].values) for s in splits)])
    for i, name in enumerate(class_names):
        rows.append([f"{i} {name}", *(percent(stats[s].class_pixels[i], stats[s].total_pixels) for s in splits)])
    rows.append([f"ignored ({mask_format.ignore_index})", *(percent(stats[s].ignored_pixels, stats[s].total_pixels) for s in splits)])
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def percent(count: int, total: int) -> str:
    if count == 0:
        return "0"
    return f"{100 * count / max(total, 1):.3f}%"
