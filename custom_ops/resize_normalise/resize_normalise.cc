// ResizeNormalise: bilinear resize + round to uint8 + channel order + mean/std, one pass.
//
// Operator fusion for the input pipeline (course chapter 5).  The TFRecord pipeline's per-image
// work after the JPEG decode was three ops and a batch-wide fourth:
//     ResizeBilinear (uint8 -> float)  ->  Round/Clip/Cast (-> uint8)  ->  [batch]  ->
//     Cast + ReverseV2 + Sub (the caffe normalisation, float32 out)
// each writing its whole result to memory before the next reads it.  This kernel computes the
// same numbers in one pass over the output, while the decoded window is still in cache:
//
//   1. interpolation indices and weights per output row and column, computed exactly as
//      TensorFlow's ResizeBilinear does with half_pixel_centers=True (HalfPixelScaler,
//      scale = in_size / out_size as float), so the sample points are the same;
//   2. separable evaluation: each source row that is needed is interpolated horizontally once
//      (top = left + (right - left) * x_lerp), and each output row is the vertical
//      interpolation of two such rows (top + (bottom - top) * y_lerp).  That is exactly
//      TensorFlow's compute_lerp, operation by operation, so every float is the same; only the
//      horizontal results are shared between output rows instead of recomputed;
//   3. round half to even (as tf.round), the pipeline's uint8 step (its clamp to 0..255 never
//      changes a value: see VerticalRoundNormalise);
//   4. output channel c takes input channel (reverse ? 2 - c : c), minus mean[c], divided by
//      std[c] (dividing by 1 is exact, so caffe mode is a plain subtraction).
// The horizontal pass writes the output's channel order, so the vertical pass, the rounding and
// the normalisation are one flat loop over each output row that the compiler vectorises.
//
// Results: bit-identical to tf.image.resize + tfbench.preprocess.tf_to_uint8 + tf_normalise
// for caffe mode (tested); tf and torch modes divide where Keras multiplies or divides in
// another order, so they may differ in the last bit.  One image per call, on the calling
// thread: tf.data runs one call per core.
// Built against the installed TensorFlow with C++17: `python -m tfbench.ops build`.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef __SSE4_1__
#include <smmintrin.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// Shape function: images is [height, width, 3]; the output is [out_height, out_width, 3].
absl::Status ResizeNormaliseShape(InferenceContext* c) {
  ShapeHandle images;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &images));
  DimensionHandle channels;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(images, 2), 3, &channels));
  int64_t out_height, out_width;
  TF_RETURN_IF_ERROR(c->GetAttr("out_height", &out_height));
  TF_RETURN_IF_ERROR(c->GetAttr("out_width", &out_width));
  c->set_output(0, c->MakeShape({out_height, out_width, 3}));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("ResizeNormalise")
    .Input("images: uint8")
    .Output("output: out_type")
    .Attr("out_type: {float, uint8} = DT_FLOAT")
    .Attr("out_height: int >= 1")
    .Attr("out_width: int >= 1")
    .Attr("mean: list(float)")
    .Attr("std: list(float)")
    .Attr("reverse_channels: bool = false")
    .SetShapeFn(ResizeNormaliseShape);

// The same op on a box of the images: the pipeline decodes the crop window with a margin
// (decode_and_crop_jpeg) and hands the decoded pixels over with the window's box
// [top, left, height, width] inside them, so the window is never copied out by a Slice.
REGISTER_OP("CropResizeNormalise")
    .Input("images: uint8")
    .Input("box: int32")
    .Output("output: out_type")
    .Attr("out_type: {float, uint8} = DT_FLOAT")
    .Attr("out_height: int >= 1")
    .Attr("out_width: int >= 1")
    .Attr("mean: list(float)")
    .Attr("std: list(float)")
    .Attr("reverse_channels: bool = false")
    .SetShapeFn(ResizeNormaliseShape);

namespace {

// One output coordinate's two source indices and the weight of the upper one.
struct Tap {
  int64_t lower;
  int64_t upper;
  float lerp;
};

// TensorFlow's compute_interpolation_weights with HalfPixelScaler, float for float.
std::vector<Tap> Taps(int64_t out_size, int64_t in_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  std::vector<Tap> taps(out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    const float in = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float in_f = std::floor(in);
    taps[i].lower = std::max(static_cast<int64_t>(in_f), static_cast<int64_t>(0));
    taps[i].upper = std::min(static_cast<int64_t>(std::ceil(in)), in_size - 1);
    taps[i].lerp = in - in_f;
  }
  return taps;
}

// Where one output pixel reads its source row: byte offsets of its two source pixels, and the
// weight of the right one (TensorFlow's xs[x].lower * 3, xs[x].upper * 3, xs[x].lerp).
struct PixelTaps {
  std::vector<int32_t> left, right;
  std::vector<float> lerp;
};

// One source row, interpolated horizontally into out_width x 3 floats in the output's channel
// order: dst = left + (right - left) * lerp per channel, TensorFlow's
// `top_left + (top_right - top_left) * x_lerp`.  With SSE4.1, one pixel is one 4-lane operation
// (its 3 bytes and one spare, widened to floats; the spare lane is overwritten by the next pixel),
// as TensorFlow's own ResizeLine3ChannelsVector does; the same IEEE operations, so the same floats.
void Horizontal(const uint8_t* __restrict row, int64_t row_bytes, const PixelTaps& taps, int64_t out_width,
                bool reverse, float* __restrict dst) {
  auto scalar = [&](int64_t x) {
    for (int c = 0; c < 3; ++c) {
      const int source_channel = reverse ? 2 - c : c;
      const float l = static_cast<float>(row[taps.left[x] + source_channel]);
      const float r = static_cast<float>(row[taps.right[x] + source_channel]);
      dst[x * 3 + c] = l + (r - l) * taps.lerp[x];
    }
  };
#ifdef __SSE4_1__
  const __m128i order = reverse ? _mm_setr_epi8(2, 1, 0, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
                                : _mm_setr_epi8(0, 1, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  auto widen = [&](int32_t offset) {  // 4 bytes at row + offset -> 4 floats, channels reordered
    int32_t bytes;
    std::memcpy(&bytes, row + offset, 4);
    return _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128(bytes), order)));
  };
  for (int64_t x = 0; x < out_width; ++x) {
    // The 4-byte load must stay inside the row, and the 4-float store inside dst.
    if (x == out_width - 1 || taps.right[x] + 4 > row_bytes || taps.left[x] + 4 > row_bytes) {
      scalar(x);
      continue;
    }
    const __m128 l = widen(taps.left[x]);
    const __m128 r = widen(taps.right[x]);
    _mm_storeu_ps(dst + x * 3, _mm_add_ps(l, _mm_mul_ps(_mm_sub_ps(r, l), _mm_set1_ps(taps.lerp[x]))));
  }
#else
  for (int64_t x = 0; x < out_width; ++x) scalar(x);
#endif
}

// One output row: vertical interpolation of two horizontally interpolated rows, round half to
// even, subtract the mean, divide by the std.  A flat loop with no
// aliasing (__restrict) and no branches, so the compiler vectorises it (8 floats per AVX op).
void VerticalRoundNormalise(const float* __restrict top, const float* __restrict bottom, float lerp,
                            const float* __restrict mean, const float* __restrict std, int64_t n,
                            float* __restrict dst) {
  // Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer, half
  // to even (the default rounding mode): std::nearbyint's result, in two vectorisable additions.
  // No clamp to 0..255 is needed: bilinear weights are in [0, 1), so every value lies between
  // its uint8 neighbours up to float rounding (well inside -0.5 .. 255.5), and -0 rounds to 0.
  const float kRound = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float value = top[i] + (bottom[i] - top[i]) * lerp;
    const float rounded = (value + kRound) - kRound;
    dst[i] = (rounded - mean[i]) / std[i];
  }
}

// One output row as uint8 pixels: the same vertical interpolation and rounding, no mean/std
// (out_type=uint8: the model's first convolution does the normalisation, see
// tfbench/data/fold_normalise.py).  The rounded value is an integer in 0..255 (see above).
void VerticalRound(const float* __restrict top, const float* __restrict bottom, float lerp, int64_t n,
                   uint8_t* __restrict dst) {
  const float kRound = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float value = top[i] + (bottom[i] - top[i]) * lerp;
    dst[i] = static_cast<uint8_t>(static_cast<int32_t>((value + kRound) - kRound));
  }
}

class ResizeNormaliseOp : public OpKernel {
 public:
  explicit ResizeNormaliseOp(OpKernelConstruction* context, bool boxed = false) : OpKernel(context), boxed_(boxed) {
    OP_REQUIRES_OK(context, context->GetAttr("out_height", &out_height_));
    OP_REQUIRES_OK(context, context->GetAttr("out_width", &out_width_));
    OP_REQUIRES_OK(context, context->GetAttr("mean", &mean_));
    OP_REQUIRES_OK(context, context->GetAttr("std", &std_));
    OP_REQUIRES_OK(context, context->GetAttr("reverse_channels", &reverse_));
    OP_REQUIRES_OK(context, context->GetAttr("out_type", &out_type_));
    OP_REQUIRES(context, mean_.size() == 3 && std_.size() == 3,
                absl::InvalidArgumentError(absl::StrCat("ResizeNormalise: mean and std need 3 values each, got ",
                                                        mean_.size(), " and ", std_.size())));
    for (float s : std_) {
      OP_REQUIRES(context, s != 0.0f, absl::InvalidArgumentError("ResizeNormalise: std has a zero"));
    }
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& images = context->input(0);
    // Eager execution runs no shape function: check again, naming the shape.
    OP_REQUIRES(context, images.dims() == 3 && images.dim_size(2) == 3,
                absl::InvalidArgumentError(absl::StrCat(
                    "ResizeNormalise: images must be [height, width, 3] uint8, got shape ",
                    images.shape().DebugString())));
    int64_t top = 0, left = 0, in_height = images.dim_size(0), in_width = images.dim_size(1);
    const int64_t full_height = images.dim_size(0), full_width = images.dim_size(1);
    if (boxed_) {
      const Tensor& box = context->input(1);
      OP_REQUIRES(context, box.dims() == 1 && box.dim_size(0) == 4,
                  absl::InvalidArgumentError(absl::StrCat("CropResizeNormalise: box must be [top, left, height, "
                                                          "width], got shape ", box.shape().DebugString())));
      const auto b = box.flat<int32_t>();
      top = b(0), left = b(1), in_height = b(2), in_width = b(3);
      OP_REQUIRES(context, top >= 0 && left >= 0 && top + in_height <= full_height && left + in_width <= full_width,
                  absl::InvalidArgumentError(absl::StrCat("CropResizeNormalise: box [", top, ", ", left, ", ",
                                                          in_height, ", ", in_width, "] is not inside the images ",
                                                          images.shape().DebugString())));
    }
    OP_REQUIRES(context, in_height > 0 && in_width > 0,
                absl::InvalidArgumentError(absl::StrCat("ResizeNormalise: empty image, shape ",
                                                        images.shape().DebugString())));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({out_height_, out_width_, 3}), &output));

    const uint8_t* in = images.flat<uint8_t>().data();
    const bool pixels_out = out_type_ == DT_UINT8;
    float* out = pixels_out ? nullptr : output->flat<float>().data();
    uint8_t* out_pixels = pixels_out ? output->flat<uint8_t>().data() : nullptr;
    const std::vector<Tap> ys = Taps(out_height_, in_height);
    const std::vector<Tap> xs = Taps(out_width_, in_width);
    const int64_t row_values = out_width_ * 3;

    PixelTaps taps{std::vector<int32_t>(out_width_), std::vector<int32_t>(out_width_),
                   std::vector<float>(out_width_)};
    for (int64_t x = 0; x < out_width_; ++x) {
      taps.left[x] = static_cast<int32_t>(xs[x].lower * 3);
      taps.right[x] = static_cast<int32_t>(xs[x].upper * 3);
      taps.lerp[x] = xs[x].lerp;
    }
    // Rows of the box are full_width pixels apart; a 4-byte load may read past the box's right
    // edge (its spare lane is overwritten) but never past the end of the tensor.
    const int64_t stride = full_width * 3;
    const int64_t total_bytes = full_height * stride;
    const uint8_t* origin = in + top * stride + left * 3;
    auto horizontal = [&](int64_t r, float* dst) {
      const int64_t start = (top + r) * stride + left * 3;
      Horizontal(origin + r * stride, total_bytes - start, taps, out_width_, reverse_, dst);
    };

    // Two row buffers, keyed by the source row they hold: consecutive output rows share source
    // rows when shrinking by less than 2x, so those rows are interpolated once, not twice.
    std::vector<float> buffer_a(row_values), buffer_b(row_values);
    int64_t held_a = -1, held_b = -1;
    auto row_for = [&](int64_t r, int64_t keep) -> const float* {
      if (held_a == r) return buffer_a.data();
      if (held_b == r) return buffer_b.data();
      if (held_a != keep) {  // overwrite the buffer the other row does not need
        horizontal(r, buffer_a.data());
        held_a = r;
        return buffer_a.data();
      }
      horizontal(r, buffer_b.data());
      held_b = r;
      return buffer_b.data();
    };

    // The mean and std of every position of an output row, so the vertical pass is one flat,
    // vectorisable loop.  Dividing by 1 is exact, so caffe mode is a plain subtraction.
    std::vector<float> mean_row(row_values), std_row(row_values);
    for (int64_t i = 0; i < row_values; ++i) {
      mean_row[i] = mean_[i % 3];
      std_row[i] = std_[i % 3];
    }
    for (int64_t y = 0; y < out_height_; ++y) {
      const float* top = row_for(ys[y].lower, ys[y].upper);
      const float* bottom = row_for(ys[y].upper, ys[y].lower);
      const float lerp = ys[y].lerp;
      if (pixels_out) {
        VerticalRound(top, bottom, lerp, row_values, out_pixels + y * row_values);
      } else {
        VerticalRoundNormalise(top, bottom, lerp, mean_row.data(), std_row.data(), row_values,
                               out + y * row_values);
      }
    }
  }

 private:
  int64_t out_height_;
  int64_t out_width_;
  std::vector<float> mean_;
  std::vector<float> std_;
  bool reverse_;
  DataType out_type_;
  bool boxed_;
};

class CropResizeNormaliseOp : public ResizeNormaliseOp {
 public:
  explicit CropResizeNormaliseOp(OpKernelConstruction* context) : ResizeNormaliseOp(context, true) {}
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("ResizeNormalise").Device(DEVICE_CPU), ResizeNormaliseOp);
REGISTER_KERNEL_BUILDER(Name("CropResizeNormalise").Device(DEVICE_CPU), CropResizeNormaliseOp);

}  // namespace tensorflow
