// InstanceNorm and InstanceNormGrad: instance normalisation fused into one pass (or two) over each plane.
//
// Instance normalisation (Ulyanov et al., 2016; fast style transfer's transform net) normalises each
// image's channels over height and width:
//     mean[n,c] = mean over h,w of x[n,h,w,c]      var[n,c] = mean over h,w of (x - mean)^2
//     y = (x - mean) * inv_std * gamma[c] + beta[c],  inv_std = 1 / sqrt(var + epsilon)
// Written with TensorFlow ops it is a chain of separate kernels (mean, subtract, square, mean, add,
// rsqrt, multiply, multiply, add), each reading and writing the whole tensor, and about twice as many
// backwards.  Here each (image, block of channels) is one unit of work:
//   forward   the statistics in one pass over the plane (attr variance = "welford", the default:
//             Welford's update, mean and M2 together) or two (variance = "two_pass": the sum, then the
//             squared deviations from the mean, while the plane is still in L2), then y in one more
//             pass (Welford measured a little faster: docs/ops.md);
//   backward  the two sums the gradient needs (sum dy, sum dy * xhat) in one pass, dx in a second;
//             gradients reaching the outputs mean and inv_std (dmean, dinv_std) only change the
//             per-channel coefficients of dx, so they cost nothing per element.
// The data is NHWC: a pixel's channels are contiguous, so a unit reads kBlock channels (one 64-byte
// cache line of float32) of every pixel of the plane, and the inner loop over those channels is a
// fixed-length loop the compiler turns into vector instructions (AVX-512 or AVX2 lanes).  Sums are
// accumulated in double, so 16384-pixel planes lose no precision the composite keeps.
// Units are shared out over TensorFlow's intra-op threads.  The outputs mean and inv_std are what the
// backward pass needs; the gradient is registered from Python (tfbench/operators/fused_instance_norm.py).
//
// Bad input (not 4-D, gamma or beta not [channels], epsilon not positive, an empty plane) is an
// InvalidArgument naming the shape or the attribute, at graph construction (shape function) and when
// the kernel runs (eager execution runs no shape function).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/threadpool.h"

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// x [N, H, W, C], gamma and beta [C] -> y like x, mean and inv_std [N, C].
absl::Status ForwardShape(InferenceContext* c) {
  ShapeHandle x, gamma, beta;
  if (!c->WithRank(c->input(0), 4, &x).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("InstanceNorm: x must be 4-D [batch, height, width, channels] "
                                                   "(NHWC), got shape ", c->DebugString(c->input(0))));
  }
  for (int i : {1, 2}) {
    DimensionHandle channels;
    ShapeHandle vector;
    if (!c->WithRank(c->input(i), 1, &vector).ok() || !c->Merge(c->Dim(x, 3), c->Dim(vector, 0), &channels).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("InstanceNorm: ", i == 1 ? "gamma" : "beta", " must have shape [",
                                                     c->DebugString(c->Dim(x, 3)), "] (x's channels; x has shape ",
                                                     c->DebugString(x), "), got ", c->DebugString(c->input(i))));
    }
  }
  float epsilon;
  TF_RETURN_IF_ERROR(c->GetAttr("epsilon", &epsilon));
  if (!(epsilon > 0.0f) || !std::isfinite(epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat("InstanceNorm: epsilon must be positive and finite, got ", epsilon));
  }
  c->set_output(0, x);
  c->set_output(1, c->Matrix(c->Dim(x, 0), c->Dim(x, 3)));
  c->set_output(2, c->Matrix(c->Dim(x, 0), c->Dim(x, 3)));
  return absl::OkStatus();
}

// dy, x [N, H, W, C], gamma [C], mean, inv_std, dmean, dinv_std [N, C] -> dx like x, dgamma and dbeta [C].
absl::Status BackwardShape(InferenceContext* c) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &x));
  TF_RETURN_IF_ERROR(c->Merge(c->input(0), x, &x));
  c->set_output(0, x);
  c->set_output(1, c->Vector(c->Dim(x, 3)));
  c->set_output(2, c->Vector(c->Dim(x, 3)));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("InstanceNorm")
    .Input("x: T")
    .Input("gamma: T")
    .Input("beta: T")
    .Output("y: T")
    .Output("mean: T")
    .Output("inv_std: T")
    .Attr("T: {float, double}")
    .Attr("epsilon: float = 0.001")
    .Attr("variance: {'welford', 'two_pass'} = 'welford'")
    .SetShapeFn(ForwardShape);

REGISTER_OP("InstanceNormGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("gamma: T")
    .Input("mean: T")
    .Input("inv_std: T")
    .Input("dmean: T")
    .Input("dinv_std: T")
    .Output("dx: T")
    .Output("dgamma: T")
    .Output("dbeta: T")
    .Attr("T: {float, double}")
    .SetShapeFn(BackwardShape);

namespace {

// Channels per unit of work: 16 float32 = one 64-byte cache line of each pixel, one AVX-512 vector.
constexpr int kBlock = 16;

// One unit: image n's channels [c0, c0 + width) over its `pixels` pixels; element (p, j) is at
// base[p * channels + j].  kWidth > 0 fixes the width at compile time (the full blocks, vectorised);
// kWidth == 0 takes it at run time (the last, partial block).
struct Unit {
  int64_t pixels, channels, width;
};

template <int kWidth>
inline int64_t WidthOf(const Unit& u) {
  return kWidth > 0 ? kWidth : u.width;
}

// mean and M2 (the sum of squared deviations) of each channel of the unit.
template <typename T, int kWidth>
void StatsTwoPass(const T* base, const Unit& u, double* mean, double* m2) {
  const int64_t w = WidthOf<kWidth>(u);
  double sum[kBlock] = {};
  for (int64_t p = 0; p < u.pixels; ++p) {
    const T* row = base + p * u.channels;
    for (int64_t j = 0; j < w; ++j) sum[j] += static_cast<double>(row[j]);
  }
  for (int64_t j = 0; j < w; ++j) mean[j] = sum[j] / static_cast<double>(u.pixels);
  double squares[kBlock] = {};
  for (int64_t p = 0; p < u.pixels; ++p) {  // the plane is still in L2: a second read is cheap
    const T* row = base + p * u.channels;
    for (int64_t j = 0; j < w; ++j) {
      const double d = static_cast<double>(row[j]) - mean[j];
      squares[j] += d * d;
    }
  }
  for (int64_t j = 0; j < w; ++j) m2[j] = squares[j];
}

// The same in one pass: Welford's update, mean_k = mean + (x - mean) / k, M2 += (x - mean_old)(x - mean_k).
template <typename T, int kWidth>
void StatsWelford(const T* base, const Unit& u, double* mean, double* m2) {
  const int64_t w = WidthOf<kWidth>(u);
  double m[kBlock] = {}, s[kBlock] = {};
  for (int64_t p = 0; p < u.pixels; ++p) {
    const T* row = base + p * u.channels;
    const double inv_k = 1.0 / static_cast<double>(p + 1);  // one division per pixel, shared by its channels
    for (int64_t j = 0; j < w; ++j) {
      const double x = static_cast<double>(row[j]);
      const double delta = x - m[j];
      m[j] += delta * inv_k;
      s[j] += delta * (x - m[j]);
    }
  }
  for (int64_t j = 0; j < w; ++j) {
    mean[j] = m[j];
    m2[j] = s[j];
  }
}

// The mean as two numbers of type T, hi + lo: x - hi is exact for x near the mean (within a factor 2,
// Sterbenz), so (x - hi) - lo keeps the digits that x - mean rounded to T would lose when the mean is
// large against the standard deviation (a plane at 1000 +- 0.01 in float32).
template <typename T>
struct SplitMean {
  T hi[kBlock], lo[kBlock];
  SplitMean(const double* mean, int64_t width) {
    for (int64_t j = 0; j < width; ++j) {
      hi[j] = static_cast<T>(mean[j]);
      lo[j] = static_cast<T>(mean[j] - static_cast<double>(hi[j]));
    }
  }
};

// y = (x - mean) * (inv_std * gamma) + beta over the unit.
template <typename T, int kWidth>
void Normalise(const T* x, const Unit& u, const SplitMean<T>& mean, const T* scale, const T* beta, T* y) {
  const int64_t w = WidthOf<kWidth>(u);
  for (int64_t p = 0; p < u.pixels; ++p) {
    const T* in = x + p * u.channels;
    T* out = y + p * u.channels;
    for (int64_t j = 0; j < w; ++j) out[j] = ((in[j] - mean.hi[j]) - mean.lo[j]) * scale[j] + beta[j];
  }
}

// The backward pass's two sums per channel: sum dy and sum dy * xhat, xhat = (x - mean) * inv_std.
template <typename T, int kWidth>
void GradSums(const T* dy, const T* x, const Unit& u, const T* mean, const T* inv_std, double* sum_dy,
              double* sum_dy_xhat) {
  const int64_t w = WidthOf<kWidth>(u);
  double a[kBlock] = {}, b[kBlock] = {};
  for (int64_t p = 0; p < u.pixels; ++p) {
    const T* g = dy + p * u.channels;
    const T* in = x + p * u.channels;
    for (int64_t j = 0; j < w; ++j) {
      const double xhat = (static_cast<double>(in[j]) - mean[j]) * inv_std[j];
      a[j] += static_cast<double>(g[j]);
      b[j] += static_cast<double>(g[j]) * xhat;
    }
  }
  for (int64_t j = 0; j < w; ++j) {
    sum_dy[j] = a[j];
    sum_dy_xhat[j] = b[j];
  }
}

// dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)) = k_dy * dy + k_x * (x - mean) + k0,
// plus dmean / pixels and dinv_std * (-inv_std^3 (x - mean) / pixels), folded into k0 and k_x.
template <typename T, int kWidth>
void GradInput(const T* dy, const T* x, const Unit& u, const T* mean, const T* k_dy, const T* k_x, const T* k0,
               T* dx) {
  const int64_t w = WidthOf<kWidth>(u);
  for (int64_t p = 0; p < u.pixels; ++p) {
    const T* g = dy + p * u.channels;
    const T* in = x + p * u.channels;
    T* out = dx + p * u.channels;
    for (int64_t j = 0; j < w; ++j) out[j] = k_dy[j] * g[j] + k_x[j] * (in[j] - mean[j]) + k0[j];
  }
}

// Elements per shard of work (1 MB of float32): the passes are memory-bound, and handing less work to
// another thread costs more than the memory traffic it shares (measured with PowerDifference's square).
constexpr int64_t kMinShard = int64_t{1} << 18;

// Share units (image, channel block) out over the intra-op threads, at least kMinShard elements per
// shard; `per_unit(n, c0, unit)`.
template <typename Fn>
void ForEachUnit(OpKernelContext* context, int64_t batch, int64_t pixels, int64_t channels, Fn per_unit) {
  const int64_t blocks = (channels + kBlock - 1) / kBlock;
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / blocks, c0 = (i % blocks) * kBlock;
      per_unit(n, c0, Unit{pixels, channels, std::min<int64_t>(kBlock, channels - c0)});
    }
  };
  const int64_t units_per_shard = std::max<int64_t>(1, kMinShard / std::max<int64_t>(1, pixels * kBlock));
  context->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
      batch * blocks, thread::ThreadPool::SchedulingParams::Fixed(units_per_shard), work);
}

template <typename T>
class InstanceNormOp : public OpKernel {
 public:
  explicit InstanceNormOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string variance;
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(context, context->GetAttr("variance", &variance));
    OP_REQUIRES(context, epsilon_ > 0.0f && std::isfinite(epsilon_),
                absl::InvalidArgumentError(absl::StrCat("InstanceNorm: epsilon must be positive and finite, got ",
                                                        epsilon_)));
    welford_ = variance == "welford";
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& gamma = context->input(1);
    const Tensor& beta = context->input(2);
    OP_REQUIRES(context, x.dims() == 4,
                absl::InvalidArgumentError(absl::StrCat("InstanceNorm: x must be 4-D [batch, height, width, channels] "
                                                        "(NHWC), got shape ", x.shape().DebugString())));
    const int64_t batch = x.dim_size(0), pixels = x.dim_size(1) * x.dim_size(2), channels = x.dim_size(3);
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"gamma", &gamma}, {"beta", &beta}}) {
      OP_REQUIRES(context, t->dims() == 1 && t->dim_size(0) == channels,
                  absl::InvalidArgumentError(absl::StrCat("InstanceNorm: ", name, " must have shape [", channels,
                                                          "] (x's channels; x has shape ", x.shape().DebugString(),
                                                          "), got ", t->shape().DebugString())));
    }
    OP_REQUIRES(context, pixels > 0 || batch * channels == 0,
                absl::InvalidArgumentError(absl::StrCat("InstanceNorm: x has no pixels to normalise over (height x "
                                                        "width = 0), shape ", x.shape().DebugString())));
    Tensor *y = nullptr, *mean = nullptr, *inv_std = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({batch, channels}), &mean));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({batch, channels}), &inv_std));
    if (x.NumElements() == 0) return;

    const T* xs = x.flat<T>().data();
    const T* g = gamma.flat<T>().data();
    const T* b = beta.flat<T>().data();
    T* ys = y->flat<T>().data();
    T* means = mean->flat<T>().data();
    T* inv_stds = inv_std->flat<T>().data();
    const double epsilon = epsilon_;
    ForEachUnit(context, batch, pixels, channels, [&](int64_t n, int64_t c0, const Unit& u) {
      const int64_t offset = n * pixels * channels + c0;
      double m[kBlock], m2[kBlock];
      const bool full = u.width == kBlock;
      if (welford_) {
        full ? StatsWelford<T, kBlock>(xs + offset, u, m, m2) : StatsWelford<T, 0>(xs + offset, u, m, m2);
      } else {
        full ? StatsTwoPass<T, kBlock>(xs + offset, u, m, m2) : StatsTwoPass<T, 0>(xs + offset, u, m, m2);
      }
      const SplitMean<T> mu(m, u.width);
      T scale[kBlock];
      for (int64_t j = 0; j < u.width; ++j) {
        const double inv = 1.0 / std::sqrt(m2[j] / static_cast<double>(pixels) + epsilon);
        scale[j] = static_cast<T>(inv * static_cast<double>(g[c0 + j]));
        means[n * channels + c0 + j] = mu.hi[j];
        inv_stds[n * channels + c0 + j] = static_cast<T>(inv);
      }
      full ? Normalise<T, kBlock>(xs + offset, u, mu, scale, b + c0, ys + offset)
           : Normalise<T, 0>(xs + offset, u, mu, scale, b + c0, ys + offset);
    });
  }

 private:
  float epsilon_;
  bool welford_;
};

template <typename T>
class InstanceNormGradOp : public OpKernel {
 public:
  explicit InstanceNormGradOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& dy = context->input(0);
    const Tensor& x = context->input(1);
    const Tensor& gamma = context->input(2);
    const Tensor& mean = context->input(3);
    const Tensor& inv_std = context->input(4);
    const Tensor& dmean = context->input(5);
    const Tensor& dinv_std = context->input(6);
    OP_REQUIRES(context, x.dims() == 4 && dy.shape() == x.shape(),
                absl::InvalidArgumentError(absl::StrCat("InstanceNormGrad: dy and x must have the same 4-D shape, "
                                                        "got dy ", dy.shape().DebugString(), " and x ",
                                                        x.shape().DebugString())));
    const int64_t batch = x.dim_size(0), pixels = x.dim_size(1) * x.dim_size(2), channels = x.dim_size(3);
    OP_REQUIRES(context, gamma.dims() == 1 && gamma.dim_size(0) == channels,
                absl::InvalidArgumentError(absl::StrCat("InstanceNormGrad: gamma must have shape [", channels,
                                                        "], got ", gamma.shape().DebugString())));
    const TensorShape stats({batch, channels});
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"mean", &mean}, {"inv_std", &inv_std},
                                  {"dmean", &dmean}, {"dinv_std", &dinv_std}}) {
      OP_REQUIRES(context, t->shape() == stats,
                  absl::InvalidArgumentError(absl::StrCat("InstanceNormGrad: ", name, " must have shape ",
                                                          stats.DebugString(), " ([batch, channels] of x ",
                                                          x.shape().DebugString(), "), got ",
                                                          t->shape().DebugString())));
    }
    Tensor *dx = nullptr, *dgamma = nullptr, *dbeta = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({channels}), &dgamma));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({channels}), &dbeta));
    // each unit's sums, added up over the batch afterwards (in batch order: the same on any thread count)
    std::vector<double> sum_dy(batch * channels, 0.0), sum_dy_xhat(batch * channels, 0.0);
    if (x.NumElements() > 0) {
      const T* g = dy.flat<T>().data();
      const T* xs = x.flat<T>().data();
      const T* gam = gamma.flat<T>().data();
      const T* means = mean.flat<T>().data();
      const T* inv_stds = inv_std.flat<T>().data();
      const T* dmeans = dmean.flat<T>().data();
      const T* dinv_stds = dinv_std.flat<T>().data();
      T* out = dx->flat<T>().data();
      const double count = static_cast<double>(pixels);
      ForEachUnit(context, batch, pixels, channels, [&](int64_t n, int64_t c0, const Unit& u) {
        const int64_t offset = n * pixels * channels + c0, s = n * channels + c0;
        const T* mu = means + s;
        const T* inv = inv_stds + s;
        const bool full = u.width == kBlock;
        full ? GradSums<T, kBlock>(g + offset, xs + offset, u, mu, inv, &sum_dy[s], &sum_dy_xhat[s])
             : GradSums<T, 0>(g + offset, xs + offset, u, mu, inv, &sum_dy[s], &sum_dy_xhat[s]);
        T k_dy[kBlock], k_x[kBlock], k0[kBlock];
        for (int64_t j = 0; j < u.width; ++j) {
          const double a = static_cast<double>(gam[c0 + j]) * static_cast<double>(inv[j]);
          k_dy[j] = static_cast<T>(a);
          const double inv_d = static_cast<double>(inv[j]);
          k_x[j] = static_cast<T>((-a * inv_d * sum_dy_xhat[s + j] -
                                   static_cast<double>(dinv_stds[s + j]) * inv_d * inv_d * inv_d) / count);
          k0[j] = static_cast<T>((-a * sum_dy[s + j] + static_cast<double>(dmeans[s + j])) / count);
        }
        full ? GradInput<T, kBlock>(g + offset, xs + offset, u, mu, k_dy, k_x, k0, out + offset)
             : GradInput<T, 0>(g + offset, xs + offset, u, mu, k_dy, k_x, k0, out + offset);
      });
    }
    T* dg = dgamma->flat<T>().data();
    T* db = dbeta->flat<T>().data();
    for (int64_t c = 0; c < channels; ++c) {
      double a = 0.0, b = 0.0;
      for (int64_t n = 0; n < batch; ++n) {
        a += sum_dy_xhat[n * channels + c];
        b += sum_dy[n * channels + c];
      }
      dg[c] = static_cast<T>(a);
      db[c] = static_cast<T>(b);
    }
  }
};

#define REGISTER_CPU(T)                                                                                   \
  REGISTER_KERNEL_BUILDER(Name("InstanceNorm").Device(DEVICE_CPU).TypeConstraint<T>("T"), InstanceNormOp<T>); \
  REGISTER_KERNEL_BUILDER(Name("InstanceNormGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"), InstanceNormGradOp<T>)

REGISTER_CPU(float);
REGISTER_CPU(double);

#undef REGISTER_CPU

}  // namespace
}  // namespace tensorflow
