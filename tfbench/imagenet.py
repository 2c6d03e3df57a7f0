"""``python -m tfbench.imagenet``: convert ImageNet-2012 val to TFRecords, inspect them, evaluate VGG19 on them.

Course exercise 4.7 (a TFRecord of ImageNet2012 val), with 4.5/4.6/5.4 on the way (loaders,
crops, normalisation).  The layouts, label sources and the embedded sample are described in
:mod:`tfbench.data.imagenet_val`.  Run::

    python -m tfbench.imagenet convert                      # the embedded sample -> logs/imagenet/sample-tfrecords
    python -m tfbench.imagenet convert --src /data/val --out /data/val-tfrecords --shards 128
    python -m tfbench.imagenet inspect [DIR]                # counts per class + TensorBoard images
    python -m tfbench.imagenet eval [DIR] --weights vgg19.h5  # VGG19 top-1/top-5 (random weights without)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfbench import cli, paths
from tfbench.data import labels
from tfbench.data import preprocess as pp
from tfbench.data.imagenet_val import class_counts, convert, default_tfrecords, embedded_sample
from tfbench.errors import UserError, run_cli


def inspect(tfrecord_dir: str | Path, *, logdir: str | Path = paths.DEFAULT_LOGDIR, examples: int = 4,
            recipe: str = "A-aspect", mode: str = "caffe") -> Path:
    """Print counts per class and a few examples; write them to TensorBoard (original, crop, normalised)."""
    from tfbench import summaries
    from tfbench.data import example, reader
    from tfbench.data.manifest import Manifest

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

    from tfbench import models, summaries
    from tfbench.data import reader, weights
    from tfbench.data.manifest import Manifest

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
    from tfbench.files import write_json

    write_json(run / "eval.json", result)
    summaries.write_scalars(run, {"eval/top1": result["top1"], "eval/top5": result["top5"]}, step=0)
    print(f"VGG19 ({loaded.source}) on {seen} images, recipe {recipe}: "
          f"top-1 {result['top1']:.3f}, top-5 {result['top5']:.3f}")
    if loaded.is_random:
        print("(random weights: expect chance level, 0.001 / 0.005; pass --weights for real accuracy)")
    print(f"results: {run / 'eval.json'}")
    return result


def build_parser() -> argparse.ArgumentParser:
    """The ``convert`` / ``inspect`` / ``eval`` parser (no TensorFlow needed to parse)."""
    parser = cli.parser("imagenet", __doc__.split("\n\n")[0])
    cli.add_logdir(parser)
    common = argparse.ArgumentParser(add_help=False)  # --logdir also accepted after the command
    common.add_argument("--logdir", default=argparse.SUPPRESS, help="where runs go (default: logs)")
    cli.add_progress(common)
    cli.add_verbose(common)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", parents=[common], help="write a val folder as TFRecord shards with a manifest",
                       formatter_class=cli.HelpFormatter)
    c.add_argument("--src", help="val folder (raw or per-synset); default: the embedded sample")
    c.add_argument("--out", help="output folder (default with the sample: <logdir>/imagenet/sample-tfrecords)")
    c.add_argument("--shards", type=cli.positive_int, default=128, help="number of shards (capped at the image count)")
    c.add_argument("--workers", type=cli.positive_int, default=None,
                   help="writer processes (default: one per core)")
    c.add_argument("--labels", help="devkit folder, ILSVRC2012_validation_ground_truth.txt, LOC_val_solution.csv "
                                    "or a synset list (default: the bundled list)")
    c.add_argument("--label-offset", type=int, choices=(0, 1), default=0,
                   help="0: classes 0..999 (Keras); 1: 1..1000 (tensorflow/models)")
    for name, text in (("inspect", "counts per class, a few examples, TensorBoard images"),
                       ("eval", "VGG19 top-1/top-5 over the shards")):
        p = sub.add_parser(name, parents=[common], help=text, formatter_class=cli.HelpFormatter)
        p.add_argument("dir", nargs="?", help="folder of shards (default: the embedded sample, made on demand)")
        p.add_argument("--recipe", default="A-aspect", choices=tuple(pp.RECIPES), help="crop recipe")
    sub.choices["inspect"].add_argument("--examples", type=cli.positive_int, default=4, help="examples to show")
    sub.choices["inspect"].add_argument("--mode", default="caffe", choices=("caffe", "tf", "torch"),
                                        help="normalisation shown")
    e = sub.choices["eval"]
    e.add_argument("--weights", help="VGG19 weight file (.npz, .h5, .npy, .mat); default: seeded random")
    e.add_argument("--allow-pickle", action="store_true", help="allow .npy weight files (runs code from the file!)")
    cli.add_seed(e)
    cli.add_batch_size(e, 16)
    e.add_argument("--limit", type=cli.positive_int, help="stop after this many images (default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``convert``, ``inspect`` or ``eval`` (see the module docstring)."""
    ns = cli.parse(build_parser(), argv)

    if ns.command == "convert":
        if ns.src is None:
            src = embedded_sample(Path(ns.logdir) / "imagenet" / "sample-val")
            out = Path(ns.out) if ns.out else Path(ns.logdir) / "imagenet" / "sample-tfrecords"
            print(f"no --src: using the embedded sample in {src}")
        else:
            if not ns.out:
                raise UserError("--out is required with --src")
            src, out = Path(ns.src), Path(ns.out)
            if not src.exists():
                raise UserError(f"--src {src}: no such folder")
            if not src.is_dir():
                raise UserError(f"--src {src} is a file, expected a folder of images")
        cli.check_output_dir(out, "--out")
        manifest = convert(src, out, num_shards=ns.shards, workers=ns.workers, labels_path=ns.labels,
                           label_offset=ns.label_offset, progress=not ns.no_progress)
        print(f"{out}: {manifest.summary()}")
        print(f"labels from {manifest.metadata['label_source']}, {manifest.label_convention['description']}")
        return 0
    directory = Path(ns.dir) if ns.dir else default_tfrecords(ns.logdir)
    if ns.command == "inspect":
        inspect(directory, logdir=ns.logdir, examples=ns.examples, recipe=ns.recipe, mode=ns.mode)
    else:
        from tfbench.models import vgg19

        fixed, per_image = vgg19.forward_bytes(1)
        cli.check_memory(flag="--batch-size", value=ns.batch_size, per_unit=per_image, fixed=fixed,
                            what="a batch of images and VGG19's weights and activations")
        evaluate(directory, weights_path=ns.weights, allow_pickle=ns.allow_pickle, seed=ns.seed,
                 batch_size=ns.batch_size, recipe=ns.recipe, limit=ns.limit, logdir=ns.logdir,
                 progress=not ns.no_progress)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
