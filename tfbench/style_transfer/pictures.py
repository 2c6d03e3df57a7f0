"""The pictures of the style-transfer lab: default content and style photos, loading and squaring a user's
picture, PNG output, the loss-weights card, and a trained transform net read back from its file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfbench.plumbing.errors import UserError

#: ``tfbench.models.style_losses.LossWeights()``'s values, here so that ``--help`` needs no TensorFlow (a test checks).
DEFAULT_WEIGHTS = {"content": 1.0, "style": 100.0, "tv": 10.0}


CONV_LAYERS = tuple(f"conv{b}_{c}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for c in range(1, n + 1))


DEFAULT_CONTENT = "chelsea"


DEFAULT_STYLE = "immunohistochemistry"  # a stained tissue slide: brush-like blobs of two colours


TRAINING_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left")


RANDOM_NOTE = ("VGG19's weights are seeded random, not trained: its filters respond to colour and local "
               "contrast, not to the strokes and shapes trained filters see. The style term still moves colours "
               "and fine texture towards the style image, but expect no painted strokes, and the content "
               "term keeps only a rough layout. Pass --weights (the course's imagenet-vgg-verydeep-19.mat, "
               "or Keras' vgg19 .h5) for the real picture.")


def load_picture(path: Path | None, default: str, size: int) -> tuple[np.ndarray, str]:
    """``(1, size, size, 3)`` float32 in ``[0, 1]`` from a file (PIL) or a bundled scikit-image photo."""
    from tfbench.data import images
    from tfbench.style_transfer import optimise as st

    if path is None:
        pixels, source = images.skimage_photo(default), f"scikit-image '{default}'"
    else:
        pixels, source = np.asarray(images.load_pil(path).pixels), str(path)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return st.square_image(pixels, size), source


def save_png(pixels: np.ndarray, path: Path) -> Path:
    """Write uint8 RGB pixels as a PNG, atomically."""
    from PIL import Image

    from tfbench.plumbing.files import atomic_output

    with atomic_output(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return path


def weights_card(weights: Any, extra: str = "") -> str:
    """The Text card about the weights: where they came from and, when random, what that means."""
    card = f"VGG19 weights: `{weights.source}`."
    if weights.is_random:
        card += f"\n\n**{RANDOM_NOTE}**"
    return card + (f"\n\n{extra}" if extra else "")


def progress(total: int, desc: str, disabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=True if disabled else None, leave=False)


def load_net(path: Path) -> Any:
    """A transform net saved as ``.keras`` (Keras) or as a SavedModel folder (its ``serve`` endpoint)."""
    import keras
    import tensorflow as tf

    from tfbench.models import transform_net  # noqa: F401  (registers the custom layers with Keras)

    try:
        if path.is_dir():
            loaded = tf.saved_model.load(str(path))
            return lambda x, training=False: loaded.serve(x)
        return keras.saving.load_model(path)
    except (OSError, ValueError, TypeError) as err:
        first = str(err).split(". ")[0]
        raise UserError(f"--net {path}: not a saved transform net (.keras file or SavedModel folder): "
                        f"{first}") from None
