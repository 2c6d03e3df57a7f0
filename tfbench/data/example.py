"""One ImageNet image as one ``tf.train.Example``: the schema, the encoder (writer side) and the decoder.

The feature keys are tensorflow/models' (``build_imagenet_data.py``), so shards written here
load there and theirs load here.  :func:`make_example` is the encoder the writer uses;
:func:`parse_example` is the decoder stage of the reader (serialized bytes to tensors).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

REENCODE_QUALITY = 95

#: Feature keys and types of one example (tensorflow/models ``build_imagenet_data.py`` schema).
FEATURE_KEYS = ("image/encoded", "image/format", "image/class/label", "image/class/synset", "image/class/text",
                "image/height", "image/width", "image/channels", "image/colorspace", "image/filename")
#: The type of each key's one value (``bytes`` or ``int64``); the reader needs the first two in every record.
FEATURE_TYPES = {key: "int64" if key in ("image/class/label", "image/height", "image/width", "image/channels")
                 else "bytes" for key in FEATURE_KEYS}
REQUIRED_KEYS = ("image/encoded", "image/class/label")


@dataclass(frozen=True)
class Source:
    """One image to write: its file and its label."""

    path: str
    label: int
    synset: str
    text: str

    @property
    def filename(self) -> str:
        """The base name stored in ``image/filename``."""
        return os.path.basename(self.path)


class SkipImage(Exception):
    """This file cannot be written (zero bytes, undecodable): skip it and say why."""


def clean_jpeg(path: str) -> tuple[bytes, int, int, str | None]:
    """JPEG bytes ready to store, height, width, and what was re-encoded (None: original bytes kept).

    PIL decodes every file fully, so truncated and corrupt files are caught here, not at training time.
    """
    from tfbench.data.images import TooLarge, open_pil

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise SkipImage(f"unreadable: {err.strerror}") from err
    if not data:
        raise SkipImage("zero-byte file")
    try:
        with open_pil(data, path) as img:
            img.load()
            fmt, mode, (width, height) = img.format, img.mode, img.size
            if fmt == "JPEG" and mode in ("RGB", "L"):
                return data, height, width, None
            rgb = img.convert("RGB")
    except TooLarge as err:
        raise SkipImage(f"too large: {err}") from None
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        from tfbench.data.images import pil_message

        raise SkipImage(f"corrupt: {type(err).__name__}: {pil_message(err, path)}") from err
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=REENCODE_QUALITY)
    return out.getvalue(), height, width, f"{fmt} {mode} re-encoded to RGB JPEG"


def make_example(source: Source, jpeg: bytes, height: int, width: int) -> bytes:
    """The serialized ``tf.train.Example`` of one image (tensorflow/models feature keys)."""
    import tensorflow as tf

    def b(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    features = {
        "image/encoded": b(jpeg), "image/format": b(b"JPEG"),
        "image/class/label": i(source.label), "image/class/synset": b(source.synset.encode()),
        "image/class/text": b(source.text.encode()),
        "image/height": i(height), "image/width": i(width),
        "image/channels": i(3), "image/colorspace": b(b"RGB"),  # grayscale JPEGs decode to 3 channels
        "image/filename": b(source.filename.encode()),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # deterministic: protobuf map order otherwise varies between processes, and so would the checksums
    return example.SerializeToString(deterministic=True)


def parse_example(serialized: Any, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The decoder stage: serialized ``tf.train.Example`` -> dict of tensors (scalar features).

    ``keys``: parse only these (a reader that needs the pixels and the label skips the rest).
    A vector of serialized examples (a batch) is parsed in one op, giving a vector per key.
    """
    import tensorflow as tf

    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/class/synset": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }
    if keys is not None:
        spec = {key: spec[key] for key in keys}
    serialized = tf.convert_to_tensor(serialized, tf.string)
    if serialized.shape.rank == 1:
        return tf.io.parse_example(serialized, spec)
    return tf.io.parse_single_example(serialized, spec)


def schema_problem(shards: Sequence[str]) -> str | None:
    """The first record of ``shards`` that does not fit the schema: shard, record, key, found and expected type.

    TensorFlow's parse error names the key but not the file; this reads the records in Python to say where.
    """
    import tensorflow as tf

    kinds = {"bytes_list": "bytes", "int64_list": "int64", "float_list": "float"}
    for shard in shards:
        for i, record in enumerate(tf.data.TFRecordDataset(shard).as_numpy_iterator()):
            try:
                features = tf.train.Example.FromString(record).features.feature
            except Exception:  # noqa: BLE001 - protobuf's DecodeError: the bytes are no Example
                return f"{shard}: record {i} is not a tf.train.Example"
            for key, expected in FEATURE_TYPES.items():
                if key not in features:
                    if key in REQUIRED_KEYS:
                        return f"{shard}: record {i} has no key {key!r} (expected one {expected} value)"
                    continue
                kind = features[key].WhichOneof("kind")
                values = len(getattr(features[key], kind).value) if kind else 0
                if kinds.get(kind) != expected or values != 1:
                    found = f"{values} {kinds.get(kind, 'empty')} value{'s' if values != 1 else ''}"
                    return f"{shard}: record {i}: key {key!r} holds {found}, expected one {expected} value"
    return None
