"""Custom C++ operators and gradients registered from Python (course exercises 5.5, 5.6 and 5.7).

- :mod:`tfbench.operators.build` compiles ``custom_ops/<name>/*.cc`` against the installed
  TensorFlow (cached per TensorFlow version and source hash);
- :mod:`tfbench.operators.power_difference` is ``PowerDifference(x, y, pow) = (x - y) ** pow``:
  the Python wrapper, its gradient registered with ``tf.RegisterGradient``, and a pure-TF
  fallback with the same semantics;
- :mod:`tfbench.operators.instance_norm` uses it in a real graph (a style-transfer residual block);
- :mod:`tfbench.operators.gradients`: gradients from Python (``tf.custom_gradient``, ``tf.RegisterGradient``,
  gradient override maps), run by ``python -m tfbench.grads``;
- :mod:`tfbench.operators.fuzz` checks it against NumPy on random shapes, dtypes and exponents;
- :mod:`tfbench.benchmarks.ops` times it against ``tf.pow(x - y, p)`` and NumPy;
- :mod:`tfbench.data.resize_normalise` is ``ResizeNormalise``: the TFRecord pipeline's resize,
  rounding and normalisation fused into one op (operator fusion for the input side).

Run ``python -m tfbench.ops --help`` (build, info, demo, fuzz).  May import: plumbing, reporting, timing.
"""
