"""Custom C++ operators and gradients registered from Python (course exercises 5.5, 5.6 and 5.7).

- :mod:`tfbench.operators.build` compiles ``custom_ops/<name>/*.cc`` against the installed
  TensorFlow (cached per TensorFlow version and source hash);
- :mod:`tfbench.operators.power_difference` is ``PowerDifference(x, y, pow) = (x - y) ** pow``:
  the Python wrapper, its gradient registered with ``tf.RegisterGradient``, and a pure-TF
  fallback with the same semantics;
- :mod:`tfbench.operators.instance_norm` uses it in a real graph (a style-transfer residual block);
- :mod:`tfbench.operators.gradients`: gradients from Python (``tf.custom_gradient``, ``tf.RegisterGradient``,
  gradient override maps), run by ``python -m tfbench.grads``;
- :mod:`tfbench.operators.fused_instance_norm` is ``InstanceNorm``: the whole instance norm as one C++ op
  forward and one backward, which beats TensorFlow's composite;
- :mod:`tfbench.operators.fuzz` (and :mod:`tfbench.operators.fuzz_instance_norm`) check them against NumPy on
  random shapes, dtypes and attributes;
- :mod:`tfbench.benchmarks.ops` times PowerDifference against ``tf.pow(x - y, p)`` and NumPy, and
  :mod:`tfbench.benchmarks.norms` the fused norm and PowerDifference at the transform net's shapes;
- :mod:`tfbench.data.resize_normalise` is ``ResizeNormalise``: the TFRecord pipeline's resize,
  rounding and normalisation fused into one op (operator fusion for the input side).

Each op is its own library (``custom_ops/<name>/``) with its own needs (:data:`tfbench.operators.build.NEEDS`),
and falls back to TensorFlow's ops where it cannot be built (:mod:`tfbench.operators.backend`).

Run ``python -m tfbench.ops --help`` (build, list, info, demo, fuzz).  May import: plumbing, reporting, timing.
"""
