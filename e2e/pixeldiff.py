"""Visual regression: compare a journey's screenshot with its stored baseline, pixel by pixel (Pillow)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageOps

#: Differing pixels are painted this colour on a faded copy of the new screenshot.
DIFF_COLOUR = (255, 0, 0)


@dataclass(frozen=True)
class PixelDiff:
    """How far a screenshot is from its baseline."""

    size: tuple[int, int]
    baseline_size: tuple[int, int]
    differing_pixels: int
    total_pixels: int
    max_channel_delta: int
    diff_png: bytes | None

    @property
    def same_size(self) -> bool:
        """Whether both images have the same dimensions (a different size is a visual change)."""
        return self.size == self.baseline_size

    @property
    def ratio(self) -> float:
        """Share of pixels that differ beyond the per-channel tolerance (1.0 when the sizes differ)."""
        if not self.same_size:
            return 1.0
        return self.differing_pixels / self.total_pixels if self.total_pixels else 0.0


def _rgb(data: bytes) -> Image.Image:
    """Decode a PNG into RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def compare(actual_png: bytes, baseline_png: bytes, tolerance: int) -> PixelDiff:
    """Count pixels whose largest channel difference exceeds `tolerance` (0-255); render a diff image."""
    actual, baseline = _rgb(actual_png), _rgb(baseline_png)
    total = actual.width * actual.height
    if actual.size != baseline.size:
        return PixelDiff(actual.size, baseline.size, total, total, 255, None)
    red, green, blue = ImageChops.difference(actual, baseline).split()
    delta = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    over = delta.point(lambda value: 255 if value > tolerance else 0)
    differing = over.histogram()[255]
    max_delta = max((value for value, count in enumerate(delta.histogram()) if count), default=0)
    diff_png = None
    if differing:
        faded = ImageOps.grayscale(actual).point(lambda value: 160 + value * 95 // 255).convert("RGB")
        faded.paste(DIFF_COLOUR, mask=over)
        buffer = io.BytesIO()
        faded.save(buffer, format="PNG", optimize=True)
        diff_png = buffer.getvalue()
    return PixelDiff(actual.size, baseline.size, differing, total, max_delta, diff_png)
