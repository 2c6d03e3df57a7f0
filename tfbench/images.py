"""``python -m tfbench.images [FILE ...]``: what OpenCV, PIL and scikit-image give for the same file (exercise 4.5).

The loaders live in :mod:`tfbench.data.images`; this command prints their channel order, size and
per-channel means side by side (default: scikit-image's ``chelsea`` saved as a JPEG).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Sequence

from tfbench.data.images import LIBRARIES, load_image, save_jpeg, skimage_photo
from tfbench.plumbing import cli
from tfbench.plumbing.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    """Load each file with the three libraries and print the channel order and per-channel means they give."""
    parser = cli.parser("images", __doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="image files (default: scikit-image's chelsea as a JPEG)")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = [(path, path) for path in ns.files]
        if not files:
            sample = save_jpeg(skimage_photo("chelsea"), Path(tmp) / "chelsea.jpg")
            files = [(str(sample), "scikit-image's chelsea, saved as a JPEG (quality 90)")]
        for path, title in files:
            print(title)
            for library in LIBRARIES:
                image = load_image(path, library)
                means = image.pixels.reshape(-1, 3).mean(axis=0)
                channels = ", ".join(f"{c}={m:.1f}" for c, m in zip(image.channel_order, means))
                print(f"  {library:8s} {image.channel_order} HxW {image.height}x{image.width}, mean per channel: "
                      f"{channels}" + (f"  [{'; '.join(image.notes)}]" if image.notes else ""))
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
