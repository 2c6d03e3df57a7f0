"""The manifest of a folder of TFRecord shards: what was written, and how its labels count.

``manifest.json`` is written last by :mod:`tfbench.data.writer` (it exists only when every
shard does) and read first by :mod:`tfbench.data.reader`, which checks each shard against it.
Label convention: class indices stored 0..999 (Keras) or 1..1000 (tensorflow/models, 0 being
"background"); :meth:`Manifest.zero_based` makes them 0-based whatever was stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tfbench.plumbing.errors import UserError

MANIFEST = "manifest.json"
FORMAT = "tfbench-imagenet-tfrecord/1"
VERIFY = ("none", "size", "sha256")


@dataclass(frozen=True)
class Manifest:
    """What a conversion wrote: shards with counts, sizes and sha256, skipped and re-encoded files, labels."""

    split: str
    num_shards: int
    found: int
    written: int
    skipped: list[dict[str, str]]
    reencoded: list[dict[str, str]]
    shards: list[dict[str, Any]]
    label_convention: dict[str, Any] = field(default_factory=lambda: {"name": "keras", "first_index": 0})
    metadata: dict[str, Any] = field(default_factory=dict)  # source, label_source, created_by, ...
    format: str = FORMAT
    channel_order: str = "RGB"
    image_format: str = "JPEG"

    @property
    def first_label(self) -> int:
        """The index stored for the first class: 0 (Keras) or 1 (tensorflow/models)."""
        return int(self.label_convention.get("first_index", 0))

    def zero_based(self, labels: Any) -> Any:
        """Stored labels (an int, array or tensor) made 0-based."""
        return labels - self.first_label if self.first_label else labels

    def summary(self) -> str:
        """One line: shards, images found/written/skipped/re-encoded, label convention."""
        return (f"{self.num_shards} shards, {self.found} images found, {self.written} written, "
                f"{len(self.skipped)} skipped, {len(self.reencoded)} re-encoded, "
                f"labels: {self.label_convention.get('name', '?')}")

    def to_json(self) -> dict[str, Any]:
        """The ``manifest.json`` object (metadata keys at the top level, as tensorflow-style tools expect)."""
        data = asdict(self)
        data.update(data.pop("metadata"))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        """Parse a ``manifest.json`` object (unknown keys become metadata)."""
        known = {f for f in cls.__dataclass_fields__ if f != "metadata"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   metadata={k: v for k, v in data.items() if k not in known})

    @classmethod
    def read(cls, tfrecord_dir: str | Path) -> "Manifest":
        """The manifest of a folder of shards (UserError if missing, broken or of another format)."""
        path = Path(tfrecord_dir) / MANIFEST
        if Path(tfrecord_dir).exists() and not Path(tfrecord_dir).is_dir():
            raise UserError(f"{tfrecord_dir} is a file, expected a folder of TFRecord shards")
        if not Path(tfrecord_dir).is_dir():
            raise UserError(f"{tfrecord_dir}: no such folder of TFRecord shards")
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise UserError(f"{path} not found: not a finished conversion (rerun `python -m tfbench.imagenet "
                            f"convert` to complete it)") from err
        except (OSError, ValueError) as err:  # ValueError: not JSON, or not even text
            raise UserError(f"{path}: cannot read the manifest: {err}") from err
        if data.get("format") != FORMAT:
            raise UserError(f"{path}: unknown manifest format {data.get('format')!r}, expected {FORMAT!r}")
        try:
            return cls.from_json(data)
        except TypeError as err:
            raise UserError(f"{path}: incomplete manifest: {err}") from err

    def shard_files(self, tfrecord_dir: str | Path, *, verify: str = "size") -> list[str]:
        """The shard paths in order, each checked: present and the right size (``verify="sha256"``: and hash)."""
        if verify not in VERIFY:
            raise UserError(f"verify must be one of {', '.join(VERIFY)}, got {verify!r}")
        paths = []
        for shard in self.shards:
            path = Path(tfrecord_dir) / shard["name"]
            if not path.exists():
                raise UserError(f"shard {path} is missing (the manifest lists {shard['count']} images in it)")
            if verify != "none" and path.stat().st_size != shard["bytes"]:
                raise UserError(f"shard {path} has {path.stat().st_size} bytes, the manifest says {shard['bytes']}: "
                                "truncated or replaced; rerun convert into a fresh folder")
            if verify == "sha256" and sha256_file(path) != shard["sha256"]:
                raise UserError(f"shard {path} does not match its sha256 in the manifest: corrupt")
            paths.append(str(path))
        return paths


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
