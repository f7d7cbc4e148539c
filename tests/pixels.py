"""Reading a rendered PNG back as pixels: colours at places, and connected regions of one colour."""

from __future__ import annotations

from collections import Counter, deque
from pathlib import Path

import numpy as np


def load(path: Path) -> np.ndarray:
    """The PNG as an (rows, columns, 3) uint8 array (decoded with Pillow, not with what drew it)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def rgb255(color: str | tuple[float, float, float]) -> tuple[int, int, int]:
    if isinstance(color, str):
        return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)
    return tuple(round(255 * c) for c in color)  # type: ignore[return-value]


def mode_near(img: np.ndarray, column: float, row: float, radius: int = 3) -> tuple[int, int, int]:
    """The most frequent colour in a small window (a label or a line may cross the exact pixel)."""
    c, r = int(round(column)), int(round(row))
    window = img[max(r - radius, 0):r + radius + 1, max(c - radius, 0):c + radius + 1].reshape(-1, 3)
    return Counter(map(tuple, window.tolist())).most_common(1)[0][0]


def close_to(color: tuple[int, int, int], expected: tuple[int, int, int], tol: int = 8) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(color, expected, strict=True))


def mask_of(img: np.ndarray, color: tuple[int, int, int], tol: int = 8) -> np.ndarray:
    return (np.abs(img.astype(int) - np.array(color)) <= tol).all(axis=2)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a mask by `radius` pixels (bridges a thin line drawn across a region)."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def regions(mask: np.ndarray, min_size: int = 150) -> list[tuple[int, tuple[float, float]]]:
    """Connected regions (4-neighbours) of at least `min_size` pixels: (size, (column, row) of the centre)."""
    seen = np.zeros_like(mask, dtype=bool)
    rows, cols = mask.shape
    out = []
    for r0, c0 in zip(*np.nonzero(mask), strict=True):
        if seen[r0, c0]:
            continue
        queue = deque([(r0, c0)])
        seen[r0, c0] = True
        members = []
        while queue:
            r, c = queue.popleft()
            members.append((r, c))
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= rr < rows and 0 <= cc < cols and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    queue.append((rr, cc))
        if len(members) >= min_size:
            arr = np.array(members)
            out.append((len(members), (float(arr[:, 1].mean()), float(arr[:, 0].mean()))))
    return out


def dark(color: tuple[int, int, int], limit: int = 80) -> bool:
    return max(color) <= limit


def longest_dark_run(img: np.ndarray, row_range: tuple[int, int], col_range: tuple[int, int],
                     limit: int = 80) -> int:
    """The longest horizontal run of dark pixels in a region (the scale bar)."""
    best = 0
    for r in range(*row_range):
        run = 0
        for c in range(*col_range):
            if max(img[r, c]) <= limit:
                run += 1
                best = max(best, run)
            else:
                run = 0
    return best
