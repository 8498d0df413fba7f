"""Paint the example masks for ``configs/masks.yaml`` (deterministic; run from the repository root).

    python examples/make_masks.py

``left.png`` / ``right.png``: the left and right of ``content/chelsea.png``, with a soft 15% wide seam (they sum
to 1). ``around_face.png``: everything but an ellipse over the cat's face, which keeps the photo.
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
WIDTH, HEIGHT = Image.open(HERE / "content" / "chelsea.png").size


def save(values: np.ndarray, name: str) -> None:
    (HERE / "masks").mkdir(exist_ok=True)
    Image.fromarray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)).save(HERE / "masks" / name)


x, y = np.meshgrid(np.arange(WIDTH) / WIDTH, np.arange(HEIGHT) / HEIGHT)
left = np.clip((0.575 - x) / 0.15, 0, 1)
save(left, "left.png")
save(1 - left, "right.png")
face = ((x - 0.52) / 0.30) ** 2 + ((y - 0.50) / 0.48) ** 2  # < 1 inside the ellipse
save(np.clip((face - 0.8) / 0.4, 0, 1), "around_face.png")
