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
from typing import Sequence

from tfbench.data import preprocess as pp
from tfbench.data.imagenet_eval import evaluate, inspect
from tfbench.data.imagenet_val import convert, default_tfrecords, embedded_sample
from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli


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
