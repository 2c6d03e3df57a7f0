"""Custom C++ operators: build them, load them, use them (course exercises 5.6 and 5.7).

- :mod:`tfbench.ops.build` compiles ``custom_ops/<name>/*.cc`` against the installed
  TensorFlow (cached per TensorFlow version and source hash);
- :mod:`tfbench.ops.power_difference` is ``PowerDifference(x, y, pow) = (x - y) ** pow``:
  the Python wrapper, its gradient registered with ``tf.RegisterGradient``, and a pure-TF
  fallback with the same semantics;
- :mod:`tfbench.ops.instance_norm` uses it in a real graph (a style-transfer residual block);
- :mod:`tfbench.ops.fused_instance_norm` is ``InstanceNorm``: the whole instance norm as one C++ op
  forward and one backward, which beats TensorFlow's composite;
- :mod:`tfbench.ops.fuzz` (and :mod:`tfbench.ops.fuzz_instance_norm`) check them against NumPy on random
  shapes, dtypes and attributes;
- :mod:`tfbench.ops.bench` times PowerDifference against ``tf.pow(x - y, p)`` and NumPy;
  :mod:`tfbench.ops.norm_bench` the fused norm and PowerDifference at the transform net's shapes;
- :mod:`tfbench.data.resize_normalise` is ``ResizeNormalise``: the TFRecord pipeline's resize,
  rounding and normalisation fused into one op (operator fusion for the input side).

Each op is its own library (``custom_ops/<name>/``) with its own needs (:data:`tfbench.ops.build.NEEDS`),
and falls back to TensorFlow's ops where it cannot be built (:mod:`tfbench.ops.backend`).

Run ``python -m tfbench.ops --help`` (build, list, info, demo, fuzz).
"""
