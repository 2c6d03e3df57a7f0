"""Custom C++ operators: build them, load them, use them (course exercises 5.6 and 5.7).

- :mod:`tfbench.ops.build` compiles ``custom_ops/<name>/*.cc`` against the installed
  TensorFlow (cached per TensorFlow version and source hash);
- :mod:`tfbench.ops.power_difference` is ``PowerDifference(x, y, pow) = (x - y) ** pow``:
  the Python wrapper, its gradient registered with ``tf.RegisterGradient``, and a pure-TF
  fallback with the same semantics;
- :mod:`tfbench.ops.conv2d` is ``TfbenchConv2D``: ``tf.nn.conv2d`` computed six ways in C++ (the
  loop nest, three tilings, im2col + a blocked GEMM, Winograd), its gradients and its fallback;
  :mod:`tfbench.ops.conv_bench` times them against oneDNN and Eigen (``python -m tfbench.conv``) and
  :mod:`tfbench.ops.conv_fuzz` checks them against ``tf.nn.conv2d`` on random shapes;
- :mod:`tfbench.ops.instance_norm` uses it in a real graph (a style-transfer residual block);
- :mod:`tfbench.ops.fuzz` checks it against NumPy on random shapes, dtypes and exponents;
- :mod:`tfbench.ops.bench` times it against ``tf.pow(x - y, p)`` and NumPy;
- :mod:`tfbench.data.resize_normalise` is ``ResizeNormalise``: the TFRecord pipeline's resize,
  rounding and normalisation fused into one op (operator fusion for the input side).

Run ``python -m tfbench.ops --help`` (build, info, demo, fuzz).
"""
