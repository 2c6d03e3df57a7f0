"""Looking at converted ImageNet-2012 val TFRecords: a few decoded examples with their labels in
TensorBoard, and VGG19's top-1/top-5 accuracy over the shards (``python -m tfbench.imagenet inspect|eval``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfbench.data import labels
from tfbench.data import preprocess as pp
from tfbench.data.imagenet_val import class_counts
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError


def inspect(tfrecord_dir: str | Path, *, logdir: str | Path = paths.DEFAULT_LOGDIR, examples: int = 4,
            recipe: str = "A-aspect", mode: str = "caffe") -> Path:
    """Print counts per class and a few examples; write them to TensorBoard (original, crop, normalised)."""
    from tfbench.data import example, reader
    from tfbench.data.manifest import Manifest
    from tfbench.reporting import summaries

    manifest = Manifest.read(tfrecord_dir)
    print(f"{tfrecord_dir}: {manifest.summary()}")
    for item in manifest.skipped:
        print(f"  skipped {item['file']}: {item['reason']}")
    counts = class_counts(tfrecord_dir)
    print(f"{len(counts)} classes; images per class: min {min(counts.values())}, max {max(counts.values())}")
    for label, n in sorted(counts.items())[:20]:
        print(f"  {label:4d} {labels.synsets()[label]} {labels.class_name(label):24s} {n}")
    if len(counts) > 20:
        print(f"  ... ({len(counts) - 20} more classes)")
    spec = pp.MODES[mode]
    run = paths.run_dir(logdir, "imagenet")
    ds, _ = reader.records(tfrecord_dir)
    for i, serialized in enumerate(ds.take(examples)):
        features = example.parse_example(serialized)
        original = reader.decode_image(features["image/encoded"]).numpy()
        crop = pp.tf_decode_recipe(features["image/encoded"], recipe, size=spec.size)
        normalised = pp.tf_normalise(crop[None], spec, channel_order="RGB")[0].numpy()
        viewed = pp.denormalise(normalised, spec, channel_order="RGB")  # back to pixels: what the network sees
        label = int(features["image/class/label"]) - int(manifest.first_label)
        name = features["image/filename"].numpy().decode()
        print(f"example {i}: {name} {original.shape[1]}x{original.shape[0]} (width x height) label {label} "
              f"({labels.class_name(label)}); after {mode} normalisation: min {normalised.min():.1f} "
              f"max {normalised.max():.1f} mean {normalised.mean():.2f}")
        summaries.write_images(run, {f"{i}_{name}/original": original,
                                     f"{i}_{name}/crop_{recipe}": np.clip(crop.numpy(), 0, 255).astype(np.uint8),
                                     f"{i}_{name}/normalised_{mode}_denormalised": viewed})
    print(f"TensorBoard images: {run}  ({cli.tensorboard_command(logdir)})")
    return run


def evaluate(tfrecord_dir: str | Path, *, weights_path: str | None = None, allow_pickle: bool = False,
             seed: int = 0, batch_size: int = 16, recipe: str = "A-aspect", limit: int | None = None,
             logdir: str | Path = paths.DEFAULT_LOGDIR, progress: bool = True) -> dict[str, Any]:
    """Run VGG19 over the shards; return top-1/top-5 accuracy (chance level with random weights)."""
    import tensorflow as tf
    from tqdm import tqdm

    from tfbench import models
    from tfbench.data import reader, weights
    from tfbench.data.manifest import Manifest
    from tfbench.reporting import summaries

    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1 image, got {limit}")
    loaded = weights.load(weights_path, allow_pickle=allow_pickle) if weights_path else weights.random(seed)
    spec = loaded.input_spec
    model = models.get("vgg19", impl="module", input_size=spec.size, weights=loaded.layers)
    forward = model.as_function()
    manifest = Manifest.read(tfrecord_dir)
    ds = reader.make_dataset(tfrecord_dir, batch_size=batch_size, recipe=recipe, spec=spec)
    total = manifest.written if limit is None else min(limit, manifest.written)
    seen = top1 = top5 = 0
    with tqdm(total=total, unit="img", desc="VGG19 eval", disable=not progress) as bar:
        for images, label_batch in reader.iterate(ds, tfrecord_dir):
            if seen >= total:
                break
            images, label_batch = images[:total - seen], label_batch[:total - seen]
            logits = forward(images)
            best = tf.math.top_k(logits, k=5).indices.numpy()
            truth = label_batch.numpy()
            top1 += int(np.sum(best[:, 0] == truth))
            top5 += int(np.sum(np.any(best == truth[:, None], axis=1)))
            seen += len(truth)
            bar.update(len(truth))
    result = {"tfrecords": str(tfrecord_dir), "weights": loaded.source, "images": seen, "recipe": recipe,
              "input_spec": {"channel_order": spec.channel_order, "mean": list(spec.mean), "std": list(spec.std)},
              "top1": top1 / max(seen, 1), "top5": top5 / max(seen, 1)}
    run = paths.run_dir(logdir, "imagenet")
    from tfbench.plumbing.files import write_json

    write_json(run / "eval.json", result)
    summaries.write_scalars(run, {"eval/top1": result["top1"], "eval/top5": result["top5"]}, step=0)
    print(f"VGG19 ({loaded.source}) on {seen} images, recipe {recipe}: "
          f"top-1 {result['top1']:.3f}, top-5 {result['top5']:.3f}")
    if loaded.is_random:
        print("(random weights: expect chance level, 0.001 / 0.005; pass --weights for real accuracy)")
    print(f"results: {run / 'eval.json'}")
    return result
