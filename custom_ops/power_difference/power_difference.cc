// PowerDifference: z = (x - y) ** pow, a custom TensorFlow op (course exercises 5.6 and 5.7).
//
// Two halves, as in every TensorFlow op:
//   1. REGISTER_OP declares the op's interface (inputs, outputs, dtypes) and its shape
//      function, which graph construction runs to know the output shape before any data exists.
//   2. A kernel (an OpKernel subclass) computes it on one device; REGISTER_KERNEL_BUILDER
//      binds it to the op for CPU and each dtype.
// The gradient is not here: it is registered from Python (tfbench/operators/power_difference.py).
//
// Semantics, the same as NumPy's np.power(x - y, pow) and tf.pow(x - y, pow) (values may differ
// from tf.pow's in the last bit: it uses Eigen's pow, this kernel C's pow, as NumPy does):
//   - x and y broadcast against each other like NumPy (in both directions);
//   - pow is a scalar of the same dtype (a non-scalar pow is an InvalidArgument error);
//   - x - y is rounded to T first, then raised to pow (IEEE rules: pow(negative, 0.5) is NaN,
//     pow(0, -1) is inf, pow(NaN, 0) is 1).
// Built against the installed TensorFlow with C++17: `python -m tfbench.ops build`.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/threadpool.h"
#include "tensorflow/core/util/bcast.h"

namespace tensorflow {
namespace {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// Shape function: pow must be a scalar; z has the NumPy broadcast of x's and y's shapes.
// (The course lab's version returned pow's shape here, which is wrong for every real input.)
absl::Status PowerDifferenceShape(InferenceContext* c) {
  ShapeHandle unused;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &unused));
  return shape_inference::BroadcastBinaryOpShapeFn(c);
}

}  // namespace

REGISTER_OP("PowerDifference")
    .Input("x: T")
    .Input("y: T")
    .Input("pow: T")
    .Output("z: T")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn(PowerDifferenceShape);

namespace {

// Roughly how many CPU cycles one output element costs (a subtraction and a pow); the thread
// pool uses it to decide how many shards are worth their scheduling overhead.
constexpr int64_t kCyclesPerElement = 40;
// Elements per shard of the fast path's square (1 MB of float32).
constexpr int64_t kSquareBlock = int64_t{1} << 18;

// (x - y) ** p for one element.  x - y is rounded to T first (as NumPy and tf.pow(x - y, p) do);
// the power is C's pow (glibc: correctly rounded in practice, IEEE 754 special cases), in float
// for the 16-bit types, which is what NumPy does too.
template <typename T>
struct PowOf {
  static T Compute(T d, T p) {
    return static_cast<T>(std::pow(static_cast<float>(d), static_cast<float>(p)));
  }
};
template <>
struct PowOf<float> {
  static float Compute(float d, float p) { return std::pow(d, p); }
};
template <>
struct PowOf<double> {
  static double Compute(double d, double p) { return std::pow(d, p); }
};

// z[0:n] = (x - y) ** p over one contiguous row of the output.  kXSteps / kYSteps say whether the
// input advances along the row (true) or is broadcast (false: one element for the whole row).
// As template parameters they give four tight loops without a branch per element.
template <typename T, bool kXSteps, bool kYSteps>
void PowRowImpl(const T* x, const T* y, T p, T* z, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T d = x[kXSteps ? i : 0] - y[kYSteps ? i : 0];
    z[i] = PowOf<T>::Compute(d, p);
  }
}

template <typename T>
void PowRow(const T* x, bool x_steps, const T* y, bool y_steps, T p, T* z, int64_t n) {
  if (x_steps && y_steps) {
    PowRowImpl<T, true, true>(x, y, p, z, n);
  } else if (x_steps) {
    PowRowImpl<T, true, false>(x, y, p, z, n);
  } else if (y_steps) {
    PowRowImpl<T, false, true>(x, y, p, z, n);
  } else {
    PowRowImpl<T, false, false>(x, y, p, z, n);
  }
}

// The square, (x - y) ** 2, as one multiplication: d * d is the correctly rounded square, which is what
// pow(d, 2) returns (in float for the 16-bit types, as PowOf).
template <typename T>
struct SquareOf {
  static T Compute(T d) {
    const float f = static_cast<float>(d);
    return static_cast<T>(f * f);
  }
};
template <>
struct SquareOf<float> {
  static float Compute(float d) { return d * d; }
};
template <>
struct SquareOf<double> {
  static double Compute(double d) { return d * d; }
};

// The fast path: the broadcast of instance normalisation, a per-channel value against a plane.  After
// BCast's collapsing, x - mean with x [N, H, W, C] and mean [N, 1, 1, C] is [A, B, C] against [A, 1, C]
// (A images, B pixels, C channels; A is dropped when it is 1).  Each pixel's C channels are one
// contiguous row, and the row of per-channel values is the same for all B pixels of an image, so a
// row needs no coordinates, and with pow == 2 its loop is a subtraction and a multiplication per
// element, which the compiler turns into vector instructions.  `plane_is_x`: x is the plane (else y).
//
// Squares of rows [begin, end) of the plane against their image's values; kChannels > 0 fixes the row
// length at compile time (the common channel counts: a fully unrolled vector loop per row), 0 takes it
// at run time.  The image, and so the row of values, changes every `pixels` rows: no division per row.
template <typename T, int kChannels>
void SquareRows(const T* plane, const T* values, bool plane_is_x, T* z, int64_t pixels, int64_t channels,
                int64_t begin, int64_t end) {
  const int64_t c = kChannels > 0 ? kChannels : channels;
  int64_t r = begin;
  while (r < end) {
    const int64_t image = r / pixels, stop = std::min(end, (image + 1) * pixels);
    const T* v = values + image * c;
    for (; r < stop; ++r) {
      const T* row = plane + r * c;
      T* out = z + r * c;
      if (plane_is_x) {
        for (int64_t j = 0; j < c; ++j) out[j] = SquareOf<T>::Compute(static_cast<T>(row[j] - v[j]));
      } else {
        for (int64_t j = 0; j < c; ++j) out[j] = SquareOf<T>::Compute(static_cast<T>(v[j] - row[j]));
      }
    }
  }
}

template <typename T>
void PlaneRows(const T* plane, const T* values, bool plane_is_x, T p, T* z, int64_t pixels, int64_t channels,
               int64_t begin, int64_t end) {
  if (static_cast<float>(p) == 2.0f) {
    switch (channels) {
      case 16: return SquareRows<T, 16>(plane, values, plane_is_x, z, pixels, channels, begin, end);
      case 32: return SquareRows<T, 32>(plane, values, plane_is_x, z, pixels, channels, begin, end);
      case 64: return SquareRows<T, 64>(plane, values, plane_is_x, z, pixels, channels, begin, end);
      default: return SquareRows<T, 0>(plane, values, plane_is_x, z, pixels, channels, begin, end);
    }
  }
  for (int64_t r = begin; r < end; ++r) {  // another exponent: the same rows, pow per element
    const T* row = plane + r * channels;
    const T* v = values + (r / pixels) * channels;
    PowRow<T>(plane_is_x ? row : v, true, plane_is_x ? v : row, true, p, z + r * channels, channels);
  }
}

// True when the collapsed problem is the plane broadcast above: one input has the result's dims, the
// other its first and last with a 1 between (rank 3), or a 1 then the last (rank 2).
bool IsPlaneBroadcast(const std::vector<int64_t>& dims, const std::vector<int64_t>& full,
                      const std::vector<int64_t>& values) {
  if (full != dims) return false;
  if (dims.size() == 3) return values == std::vector<int64_t>{dims[0], 1, dims[2]} && dims[1] > 1;
  if (dims.size() == 2) return values == std::vector<int64_t>{1, dims[1]} && dims[0] > 1;
  return false;
}

std::string ShapeString(const TensorShape& shape) { return shape.DebugString(); }

template <typename T>
class PowerDifferenceOp : public OpKernel {
 public:
  explicit PowerDifferenceOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& y = context->input(1);
    const Tensor& pow = context->input(2);

    // Eager execution runs no shape function, so the kernel checks everything itself.
    OP_REQUIRES(context, TensorShapeUtils::IsScalar(pow.shape()),
                absl::InvalidArgumentError(absl::StrCat(
                    "PowerDifference: pow must be a scalar, got shape ", ShapeString(pow.shape()),
                    " (x has shape ", ShapeString(x.shape()), ", y has shape ",
                    ShapeString(y.shape()), ")")));
    // BCast computes the NumPy broadcast and collapses adjacent dimensions that broadcast the
    // same way, so [8, 16, 16, 3] - [8, 1, 1, 3] becomes a rank-3 problem.
    BCast bcast(BCast::FromShape(x.shape()), BCast::FromShape(y.shape()));
    OP_REQUIRES(context, bcast.IsValid(),
                absl::InvalidArgumentError(absl::StrCat(
                    "PowerDifference: x and y cannot be broadcast together: x has shape ",
                    ShapeString(x.shape()), ", y has shape ", ShapeString(y.shape()),
                    " (trailing dimensions must be equal or 1)")));
    const TensorShape out_shape = BCast::ToShape(bcast.output_shape());

    // Reuse x's or y's buffer for z when it has z's shape and nobody else holds it.
    Tensor* z = nullptr;
    OP_REQUIRES_OK(context, context->forward_input_or_allocate_output({0, 1}, 0, out_shape, &z));
    const int64_t total = out_shape.num_elements();
    if (total == 0) return;

    // Collapsed problem: result dims, and per input the stride of each dim (0 = broadcast).
    std::vector<int64_t> dims(bcast.result_shape().begin(), bcast.result_shape().end());
    std::vector<int64_t> x_dims(bcast.x_reshape().begin(), bcast.x_reshape().end());
    std::vector<int64_t> y_dims(bcast.y_reshape().begin(), bcast.y_reshape().end());
    if (dims.empty()) dims = x_dims = y_dims = {1};  // both scalars
    const int rank = static_cast<int>(dims.size());
    std::vector<int64_t> x_strides(rank), y_strides(rank);
    int64_t xs = 1, ys = 1;
    for (int i = rank - 1; i >= 0; --i) {
      x_strides[i] = x_dims[i] == 1 ? 0 : xs;
      y_strides[i] = y_dims[i] == 1 ? 0 : ys;
      xs *= x_dims[i];
      ys *= y_dims[i];
    }

    const T* x_data = x.flat<T>().data();
    const T* y_data = y.flat<T>().data();
    const T p = pow.scalar<T>()();
    T* z_data = z->flat<T>().data();
    thread::ThreadPool* pool = context->device()->tensorflow_cpu_worker_threads()->workers;

    const bool x_plane = IsPlaneBroadcast(dims, x_dims, y_dims), y_plane = IsPlaneBroadcast(dims, y_dims, x_dims);
    if (x_plane || y_plane) {  // the fast path: rows of channels, shared out over the threads
      const int64_t channels = dims[rank - 1], pixels = dims[rank - 2];
      const T* plane = x_plane ? x_data : y_data;
      const T* values = x_plane ? y_data : x_data;
      const int64_t rows = total / channels;
      auto shard = [&](int64_t begin, int64_t end) {
        PlaneRows<T>(plane, values, x_plane, p, z_data, pixels, channels, begin, end);
      };
      if (static_cast<float>(p) == 2.0f) {
        // A square is a memory-bound pass: each thread gets at least kSquareBlock elements, below which
        // handing work to another thread costs more than the memory traffic it shares (measured: a
        // [4, 32, 32, 64] float32 square took 0.49 ms on one thread, 0.58 ms shared out row by row).
        const int64_t block = std::max<int64_t>(1, kSquareBlock / channels);
        pool->ParallelFor(rows, thread::ThreadPool::SchedulingParams::Fixed(block), shard);
      } else {
        pool->ParallelFor(rows, thread::ThreadPool::SchedulingParams::Adaptive(kCyclesPerElement * channels), shard);
      }
      return;
    }
    const int64_t row = dims[rank - 1];
    const bool x_steps = x_strides[rank - 1] != 0;
    const bool y_steps = y_strides[rank - 1] != 0;

    // Each shard [begin, end) of the flat output walks its rows: find the row's coordinates,
    // the matching offsets into x and y, and compute the contiguous run in one go.
    auto work = [&](int64_t begin, int64_t end) {
      std::vector<int64_t> coord(rank);
      int64_t i = begin;
      while (i < end) {
        int64_t rest = i, x_off = 0, y_off = 0;
        for (int d = rank - 1; d >= 0; --d) {
          coord[d] = rest % dims[d];
          rest /= dims[d];
          x_off += coord[d] * x_strides[d];
          y_off += coord[d] * y_strides[d];
        }
        const int64_t n = std::min(row - coord[rank - 1], end - i);
        PowRow<T>(x_data + x_off, x_steps, y_data + y_off, y_steps, p, z_data + i, n);
        i += n;
      }
    };
    // The general path, over TensorFlow's intra-op thread pool (its size is tf.config.threading's
    // intra_op setting).
    pool->ParallelFor(total, thread::ThreadPool::SchedulingParams::Adaptive(kCyclesPerElement), work);
  }
};

#define REGISTER_CPU(T)                                                        \
  REGISTER_KERNEL_BUILDER(                                                     \
      Name("PowerDifference").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
      PowerDifferenceOp<T>)

REGISTER_CPU(Eigen::half);
REGISTER_CPU(bfloat16);
REGISTER_CPU(float);
REGISTER_CPU(double);

#undef REGISTER_CPU

}  // namespace
}  // namespace tensorflow
