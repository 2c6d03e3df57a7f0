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

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "resize_kernels.h"

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
    const bool pixels_out = out_type_ == DT_UINT8;
    tfbench::ResizeBox(images.flat<uint8_t>().data(), full_height, full_width, top, left, in_height, in_width,
                       Params(), pixels_out ? nullptr : output->flat<float>().data(),
                       pixels_out ? output->flat<uint8_t>().data() : nullptr);
  }

  tfbench::ResizeParams Params() const {
    tfbench::ResizeParams params{out_height_, out_width_, {}, {}, reverse_};
    for (int c = 0; c < 3; ++c) {
      params.mean[c] = mean_[c];
      params.std[c] = std_[c];
    }
    return params;
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
