"""Data: images with their channel order, preprocessing recipes, TFRecords, labels, digits, weight files.

- :mod:`~tfbench.data.images`: one loader per library (OpenCV BGR, PIL and scikit-image RGB), each
  returning an :class:`~tfbench.data.images.Image` that carries its channel order;
- :mod:`~tfbench.data.preprocess`: input specs, crop recipes, normalisation modes (NumPy and ``tf.image``);
- :mod:`~tfbench.data.resize_normalise`: the pipeline's resize and normalisation as one fused C++ op;
- :mod:`~tfbench.data.example`, :mod:`~tfbench.data.writer`, :mod:`~tfbench.data.manifest`, :mod:`~tfbench.data.reader`:
  one image as a ``tf.train.Example``, the sharded writer, its manifest, the staged ``tf.data`` reader;
- :mod:`~tfbench.data.imagenet_val`: val folder layouts, label sources, the embedded sample;
- :mod:`~tfbench.data.labels`: ImageNet class names and synsets from ``datasets/imagenet``;
- :mod:`~tfbench.data.mnist`: MNIST files and the embedded real digits;
- :mod:`~tfbench.data.weights`: VGG19 weight files in the formats people have, opened once.

Data code may use :mod:`tfbench.models` (a weight file is checked against the architecture) and
:mod:`tfbench.operators`, never a command module.
"""
