"""Are drawn digits read as well as MNIST? MNIST's test digits redrawn, then read through the app's path.

Each of MNIST's 10,000 test digits is turned into two pictures a user could send:
  * image:  dark ink on light (sometimes grey, noisy) paper, scaled to a random size
            (40-240 pixels tall), at a random place on a 280-400 pixel sheet;
  * stroke: its skeleton redrawn as pen strokes on a 280x280 white canvas, at a random
            size and place, with a random line width (5-20% of the digit's height,
            where MNIST's own strokes are about 10-17%).
Both go through the app's preprocessing (``DigitReader.read``), and accuracy is compared
with the model's accuracy on MNIST's test digits as they are.

    python benchmarks/drawn.py --mnist /tmp/mnistdata/mnist-standard.npz --run RUN_DIR
    python benchmarks/drawn.py --mnist ... --train runs/serve-mlp   # trains mlp [512, 256] first

The run's metrics.json gets ``test_accuracy`` (MNIST's standard test set), which the
page's model card shows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digits.jsonfile import read_json, write_json
from digits.serve.reader import DigitReader


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image to one-pixel-wide lines."""
    img = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(img, -dr, 0), -dc, 1) for dr, dc in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]  # P2..P9
            neighbours = sum(p)
            transitions = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                cond = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                cond = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (img == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & cond
            if remove.any():
                img[remove] = 0
                changed = True
    return img[1:-1, 1:-1].astype(bool)


Segment = tuple[tuple[float, float], tuple[float, float]]


def skeleton_segments(digit: np.ndarray, up: int = 3) -> list[Segment]:
    """The digit's centre lines as segments between neighbouring skeleton pixels, in 28x28 units."""
    big = np.asarray(Image.fromarray(digit).resize((28 * up, 28 * up), Image.Resampling.BILINEAR))
    skeleton = thin(big > 100)
    points = set(map(tuple, np.argwhere(skeleton)))
    segments = []
    for r, c in points:
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            if (r + dr, c + dc) in points:
                segments.append(((c / up, r / up), ((c + dc) / up, (r + dr) / up)))
        segments.append(((c / up, r / up), (c / up, r / up)))  # isolated points still show
    return segments


def as_strokes(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit redrawn with a pen on a white 280x280 canvas, wholly inside it."""
    segments = skeleton_segments(digit)
    xs = [x for seg in segments for x, _ in seg]
    ys = [y for seg in segments for _, y in seg]
    left, top, span_x, span_y = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
    height = rng.uniform(80, 240)                      # digit height on the canvas, pixels
    width = max(2, round(height * rng.uniform(0.05, 0.20)))
    scale = min(height, 280 - width - 2) / max(span_y, span_x, 1)
    x0 = rng.uniform(0, 280 - width - span_x * scale) + width / 2 - left * scale
    y0 = rng.uniform(0, 280 - width - span_y * scale) + width / 2 - top * scale
    canvas = Image.new("L", (280, 280), 255)
    pen = ImageDraw.Draw(canvas)
    for (xa, ya), (xb, yb) in segments:
        a, b = (x0 + xa * scale, y0 + ya * scale), (x0 + xb * scale, y0 + yb * scale)
        pen.line([a, b], fill=0, width=width)
        pen.ellipse((a[0] - width / 2, a[1] - width / 2, a[0] + width / 2, a[1] + width / 2), fill=0)
    return np.asarray(canvas, np.float32)


def as_photo(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit as dark ink on paper: another size, another place, sometimes grey and noisy."""
    side = round(rng.uniform(40, 240) * 28 / 20)    # 40-240 pixels of digit, plus MNIST's margin
    sheet_side = int(rng.integers(max(280, side + 10), 401))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
    sheet = np.zeros((sheet_side, sheet_side), np.float32)
    top, left = (int(rng.integers(0, sheet_side - side + 1)) for _ in range(2))
    sheet[top:top + side, left:left + side] = np.clip(ink, 0, 1)
    paper, pen = (255.0, 0.0) if rng.random() < 0.5 else (rng.uniform(170, 235), rng.uniform(10, 80))
    picture = paper + (pen - paper) * sheet
    if rng.random() < 0.5:
        picture += rng.normal(0, rng.uniform(1, 8), picture.shape)
    return np.clip(picture, 0, 255)


def accuracy(reader: DigitReader, pictures: list[np.ndarray], labels: np.ndarray) -> tuple[float, int]:
    readings = reader.read(pictures)
    got = np.array([-1 if r.label is None else r.label for r in readings])
    return float((got == labels).mean()), int((got == -1).sum())


def train(out: Path, mnist: dict[str, np.ndarray]) -> None:
    from digits.data.dataset import DigitSet
    from digits.train.config import TrainConfig
    from digits.train.run import train_run

    data = DigitSet(mnist["x_train"], mnist["y_train"].astype(np.int64), "MNIST standard train (60,000)")
    config = TrainConfig(model="mlp", model_args={"hidden": [512, 256]}, epochs=12, batch_size=128,
                         optimizer="adam", lr=1e-3, val_split=0.0, seed=0, device="cpu")
    train_run(config, data, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", required=True, help="mnist-standard.npz from `digits data prepare`")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--run", type=Path, help="an existing run directory")
    group.add_argument("--train", type=Path, metavar="RUN_DIR",
                       help="train mlp [512, 256] into RUN_DIR first")
    parser.add_argument("--limit", type=int, default=10_000, help="test digits to use")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    mnist = dict(np.load(args.mnist))
    run = args.run or args.train
    if args.train:
        train(args.train, mnist)
    reader = DigitReader.open(run, "torch")
    x, y = mnist["x_test"][:args.limit], mnist["y_test"][:args.limit].astype(np.int64)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    plain = float((reader.runtime.predict_proba(x).argmax(1) == y).mean())
    results = {"mnist test, as is (no preprocessing)": (plain, 0)}
    results["mnist test, through preprocessing"] = accuracy(reader, list(x), y)
    results["redrawn as images"] = accuracy(reader, [as_photo(d, rng) for d in x], y)
    results["redrawn as pen strokes"] = accuracy(reader, [as_strokes(d, rng) for d in x], y)
    print(f"model {reader.summary.architecture} {reader.summary.args} ({reader.summary.version}), "
          f"{len(x)} MNIST test digits, seed {args.seed}, {time.perf_counter() - started:.0f} s")
    for name, (acc, none) in results.items():
        print(f"  {name:<40} {acc:.4f}  ({acc - plain:+.4f}; {none} read as 'no digit')")
    if args.limit >= 10_000:
        metrics = read_json(run / "metrics.json")
        metrics.update(test_accuracy=round(plain, 6), test_set="MNIST standard test (10,000)")
        write_json(run / "metrics.json", metrics)
    print(json.dumps({k: round(v[0], 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
