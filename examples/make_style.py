"""Paint `style/swirls.png` and `style/embers.png`, the project's own example style images (CC0).

Short brush strokes follow a field of vortices, in a night-sky palette (swirls) and a warm one (embers), so the
images have the bold strokes and strong colour statistics that style transfer picks up well. Deterministic:
`python examples/make_style.py` rewrites the same files.
"""

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 512
NIGHT = [(18, 32, 92), (32, 64, 150), (60, 110, 190), (120, 170, 220),
         (236, 208, 80), (250, 232, 150), (30, 80, 60), (12, 18, 40)]
EMBERS = [(90, 20, 10), (160, 40, 20), (210, 90, 30), (240, 150, 60),
          (250, 220, 120), (255, 245, 200), (60, 30, 50), (30, 10, 20)]
VORTICES = [(0.25, 0.3, 1.0), (0.7, 0.25, -0.8), (0.5, 0.7, 1.2), (0.85, 0.8, -0.6)]


def flow(x: float, y: float) -> float:
    """Direction of the stroke field at (x, y) in [0, 1]^2, in radians."""
    dx = dy = 0.0
    for cx, cy, strength in VORTICES:
        rx, ry = x - cx, y - cy
        r2 = rx * rx + ry * ry + 0.01
        dx += -ry * strength / r2
        dy += rx * strength / r2
    return math.atan2(dy, dx + 2.0)


def paint(palette: list[tuple[int, int, int]], seed: int = 0) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (SIZE, SIZE), palette[1])
    draw = ImageDraw.Draw(image)
    for _ in range(9000):
        x, y = rng.random(), rng.random()
        near_vortex = min(math.hypot(x - cx, y - cy) for cx, cy, _ in VORTICES) < 0.12
        colour = palette[rng.choice([4, 5]) if near_vortex and rng.random() < 0.7 else rng.randrange(len(palette))]
        width = rng.randint(3, 7)
        points = [(x * SIZE, y * SIZE)]
        for _ in range(rng.randint(4, 10)):
            angle = flow(x, y)
            x, y = x + 0.008 * math.cos(angle), y + 0.008 * math.sin(angle)
            points.append((x * SIZE, y * SIZE))
        draw.line(points, fill=colour, width=width, joint="curve")
    return image.filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    for name, palette, seed in [("swirls", NIGHT, 0), ("embers", EMBERS, 1)]:
        out = Path(__file__).with_name("style") / f"{name}.png"
        paint(palette, seed).save(out)
        print(out)
