"""Plot a run's curves from its CSV log as an SVG (no plotting library needed): the per-epoch training
loss and the validation mIoU.

    python scripts/training_curve.py runs/camvid_trainval/logs/version_*/metrics.csv -o docs/camvid_trainval_curve.svg
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

WIDTH, HEIGHT, MARGIN = 640, 300, 48


def read_series(paths: list[Path], column: str, chain: bool = False) -> list[tuple[float, float]]:
    """(epoch, value) over one or more metrics.csv files, later files winning.

    A resumed run writes a new file that goes on counting epochs; a warm restart (`init_model`) counts from 0
    again: with `chain`, each file's epochs follow the previous file's last one.
    """
    series: dict[float, float] = {}
    offset = 0.0
    for path in paths:
        with path.open() as f:
            rows = [row for row in csv.DictReader(f) if row.get("epoch")]
        series.update((offset + float(row["epoch"]), float(row[column])) for row in rows if row.get(column))
        if chain and rows:
            offset += max(float(row["epoch"]) for row in rows) + 1
    return sorted(series.items())


def polyline(points: list[tuple[float, float]], x_max: float, y_min: float, y_max: float, colour: str) -> str:
    span = (y_max - y_min) or 1.0

    def xy(x: float, y: float) -> str:
        px = MARGIN + x / max(x_max, 1) * (WIDTH - 2 * MARGIN)
        py = HEIGHT - MARGIN - (y - y_min) / span * (HEIGHT - 2 * MARGIN)
        return f"{px:.1f},{py:.1f}"

    dots = "".join(f'<circle cx="{xy(x, y).split(",")[0]}" cy="{xy(x, y).split(",")[1]}" r="2.5" fill="{colour}"/>' for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(xy(x, y) for x, y in points)}"/>{dots}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", type=Path, nargs="+", help="CSVLogger metrics.csv files, oldest first")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--title", default="")
    parser.add_argument("--chain", action="store_true", help="each file continues the previous one's epochs (warm restarts)")
    args = parser.parse_args()
    loss = read_series(args.metrics, "train/loss_epoch", args.chain)
    miou = read_series(args.metrics, "val/miou", args.chain)
    x_max = max(x for x, _ in loss + miou)
    lo, hi = min(y for _, y in loss), max(y for _, y in loss)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">epoch (0 .. {x_max:.0f})</text>',
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle">{args.title}</text>',
        polyline(loss, x_max, lo, hi, "#c0392b"),
        f'<text x="{MARGIN}" y="36" fill="#c0392b">train loss ({hi:.3f} .. {lo:.3f})</text>',
    ]
    if miou:
        m_lo, m_hi = min(y for _, y in miou), max(y for _, y in miou)
        parts += [
            polyline(miou, x_max, m_lo - 0.01, m_hi + 0.01, "#2471a3"),
            f'<text x="{WIDTH - MARGIN}" y="36" fill="#2471a3" text-anchor="end">val mIoU ({m_lo:.3f} .. {m_hi:.3f})</text>',
        ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(parts + ["</svg>"]) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
