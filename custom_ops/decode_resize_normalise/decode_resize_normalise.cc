// DecodeCropResizeNormalise: a batch of JPEGs -> their crop windows, resized and normalised, in one op.
//
// The TFRecord reader's per-image work, fused and applied to a whole batch (course chapter 5).
// Per image, tf.data used to run a map function of about twenty small ops (read the JPEG header,
// compute the recipe's crop window and its decode margin, decode_and_crop_jpeg, then
// CropResizeNormalise) and then copy the 224x224x3 float32 result into the batch.  This kernel
// takes the batch's JPEG bytes and, for each image:
//   1. reads the header (tensorflow::jpeg::GetImageInfo, as tf.image.extract_jpeg_shape does) and
//      computes the crop window exactly as tfbench/data/preprocess.py's tf_crop_window does,
//      integer for integer and float for float;
//   2. decodes the window plus `margin` pixels around it with tensorflow::jpeg::Uncompress and a
//      crop, the code behind tf.image.decode_and_crop_jpeg, into a scratch buffer reused across
//      the batch (no tensor is allocated per image);
//   3. resizes, rounds and normalises the window in place, straight into the image's slot of the
//      output batch (resize_kernels.h, shared with custom_ops/resize_normalise/), so nothing is copied
//      into a batch afterwards.
// A bad image is an InvalidArgument naming its place in the batch and, from the input `names` (the
// records' file names; empty: none), its name.  This op is a library of its own: it needs TensorFlow's
// kernel library (libtensorflow_cc, for tensorflow::jpeg), which ResizeNormalise does not.
// The same pixels as the per-image path, bit for bit (tested).  With `parallel` (the default) the
// images of a batch are shared out one at a time over TensorFlow's intra-op threads, the calling
// thread included: with tf.data running one call per core as well, the cores stay busy at the
// start and end of every pass, where whole batches left one idle (2-core AVX-512 EPYC: 1814-1831
// against 1674-1716 images/s, the same CPU time per image).
//
// Windows (attr `crop`, the window of crop_size / crop_of of the image, e.g. 224 / 256):
//   central_square     A-window: side = min(h, w) * crop_size / crop_of (integer), offsets
//                      (h - side + 1) / 2 and (w - side + 1) / 2 (tensorflow/models' legacy eval crop);
//   central_square_v2  A-window-v2: center_crop_image_v2's float32 arithmetic;
//   central_fraction   B: tf.image.central_crop's window, in float64.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/threadpool.h"
#include "tensorflow/core/lib/jpeg/jpeg_mem.h"
#include "resize_kernels.h"

namespace tensorflow {
namespace {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// contents of shape S -> output of shape S + [out_height, out_width, 3].
absl::Status DecodeShape(InferenceContext* c) {
  int64_t out_height, out_width;
  TF_RETURN_IF_ERROR(c->GetAttr("out_height", &out_height));
  TF_RETURN_IF_ERROR(c->GetAttr("out_width", &out_width));
  ShapeHandle output;
  TF_RETURN_IF_ERROR(c->Concatenate(c->input(0), c->MakeShape({out_height, out_width, 3}), &output));
  c->set_output(0, output);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("DecodeCropResizeNormalise")
    .Input("contents: string")
    .Input("names: string")
    .Output("output: out_type")
    .Attr("out_type: {float, uint8} = DT_FLOAT")
    .Attr("crop: {'central_square', 'central_square_v2', 'central_fraction'}")
    .Attr("crop_size: int >= 1")
    .Attr("crop_of: int >= 1")
    .Attr("margin: int >= 0 = 2")
    .Attr("dct_method: {'INTEGER_ACCURATE', 'INTEGER_FAST'} = 'INTEGER_ACCURATE'")
    .Attr("out_height: int >= 1")
    .Attr("out_width: int >= 1")
    .Attr("mean: list(float)")
    .Attr("std: list(float)")
    .Attr("reverse_channels: bool = false")
    .Attr("parallel: bool = true")
    .SetShapeFn(DecodeShape);

namespace {

struct Window {
  int64_t top, left, height, width;
};

// The crop window of an image of height x width pixels, as tf_crop_window computes it.
Window CropWindow(const std::string& crop, int64_t crop_size, int64_t crop_of, int64_t height, int64_t width) {
  if (crop == "central_square") {
    const int64_t side = std::min(height, width) * crop_size / crop_of;
    return {(height - side + 1) / 2, (width - side + 1) / 2, side, side};
  }
  if (crop == "central_square_v2") {  // float32, as center_crop_image_v2
    const float fraction = static_cast<float>(static_cast<double>(crop_size) / static_cast<double>(crop_of));
    const float h = static_cast<float>(height), w = static_cast<float>(width);
    const float side = fraction * std::min(h, w);
    const int64_t s = static_cast<int32_t>(side);
    return {static_cast<int32_t>((h - side) / 2.0f), static_cast<int32_t>((w - side) / 2.0f), s, s};
  }
  // central_fraction: float64, as tf.image.central_crop
  const double fraction = static_cast<double>(crop_size) / static_cast<double>(crop_of);
  const double h = static_cast<double>(height), w = static_cast<double>(width);
  const int64_t top = static_cast<int32_t>((h - h * fraction) / 2), left = static_cast<int32_t>((w - w * fraction) / 2);
  return {top, left, height - 2 * top, width - 2 * left};
}

class DecodeCropResizeNormaliseOp : public OpKernel {
 public:
  explicit DecodeCropResizeNormaliseOp(OpKernelConstruction* context) : OpKernel(context) {
    std::vector<float> mean, std;
    std::string dct_method;
    OP_REQUIRES_OK(context, context->GetAttr("crop", &crop_));
    OP_REQUIRES_OK(context, context->GetAttr("crop_size", &crop_size_));
    OP_REQUIRES_OK(context, context->GetAttr("crop_of", &crop_of_));
    OP_REQUIRES_OK(context, context->GetAttr("margin", &margin_));
    OP_REQUIRES_OK(context, context->GetAttr("dct_method", &dct_method));
    OP_REQUIRES_OK(context, context->GetAttr("out_height", &params_.out_height));
    OP_REQUIRES_OK(context, context->GetAttr("out_width", &params_.out_width));
    OP_REQUIRES_OK(context, context->GetAttr("mean", &mean));
    OP_REQUIRES_OK(context, context->GetAttr("std", &std));
    OP_REQUIRES_OK(context, context->GetAttr("reverse_channels", &params_.reverse));
    OP_REQUIRES_OK(context, context->GetAttr("out_type", &out_type_));
    OP_REQUIRES_OK(context, context->GetAttr("parallel", &parallel_));
    OP_REQUIRES(context, mean.size() == 3 && std.size() == 3,
                absl::InvalidArgumentError(absl::StrCat("DecodeCropResizeNormalise: mean and std need 3 values "
                                                        "each, got ", mean.size(), " and ", std.size())));
    OP_REQUIRES(context, crop_size_ <= crop_of_,
                absl::InvalidArgumentError(absl::StrCat("DecodeCropResizeNormalise: crop_size ", crop_size_,
                                                        " is more than crop_of ", crop_of_)));
    for (int c = 0; c < 3; ++c) {
      OP_REQUIRES(context, std[c] != 0.0f, absl::InvalidArgumentError("DecodeCropResizeNormalise: std has a zero"));
      params_.mean[c] = mean[c];
      params_.std[c] = std[c];
    }
    // TensorFlow's DecodeJpeg maps its dct_method attr to libjpeg's methods the same way.
    flags_.components = 3;
    flags_.dct_method = dct_method == "INTEGER_FAST" ? JDCT_IFAST : JDCT_ISLOW;
    flags_.crop = true;
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& contents = context->input(0);
    TensorShape shape = contents.shape();
    shape.AddDim(params_.out_height);
    shape.AddDim(params_.out_width);
    shape.AddDim(3);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, shape, &output));
    const auto jpegs = contents.flat<tstring>();
    const int64_t n = jpegs.size(), image_values = params_.out_height * params_.out_width * 3;
    // The images' names (the records' file names), only for error messages; empty: none.
    const Tensor& names = context->input(1);
    OP_REQUIRES(context, names.NumElements() == 0 || names.NumElements() == n,
                absl::InvalidArgumentError(absl::StrCat("DecodeCropResizeNormalise: names must be empty or hold one "
                                                        "name per image (", n, "), got shape ",
                                                        names.shape().DebugString())));
    const tstring* name_of = names.NumElements() == 0 ? nullptr : names.flat<tstring>().data();
    const bool pixels_out = out_type_ == DT_UINT8;

    std::vector<absl::Status> status(n);
    auto decode_range = [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> scratch;  // the decoded window and margin of one image, reused
      for (int64_t i = begin; i < end; ++i) {
        status[i] = DecodeOne(jpegs(i), name_of ? name_of + i : nullptr, i, n, contents.dims() == 0, scratch,
                              pixels_out ? nullptr : output->flat<float>().data() + i * image_values,
                              pixels_out ? output->flat<uint8_t>().data() + i * image_values : nullptr);
      }
    };
    if (parallel_) {  // about a millisecond of work per image: one image per shard
      context->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(n, 10'000'000, decode_range);
    } else {
      decode_range(0, n);
    }
    for (const absl::Status& s : status) OP_REQUIRES_OK(context, s);
  }

 private:
  // Decode, crop, resize and normalise image i of n into `out` (or `out_pixels`); an error names it,
  // by its place in the batch and by `name` (nullptr: no name).
  absl::Status DecodeOne(const tstring& jpeg, const tstring* name, int64_t i, int64_t n, bool scalar,
                         std::vector<uint8_t>& scratch, float* out, uint8_t* out_pixels) const {
    // Which image, for an error message (built only when there is an error to report).
    const auto where = [&]() {
      const std::string place = scalar ? std::string("the image") : absl::StrCat("image ", i, " of ", n);
      if (name == nullptr || name->empty()) return place;
      return absl::StrCat(place, " \"", std::string(name->data(), name->size()), "\"");
    };
    int width = 0, height = 0, components = 0;
    if (jpeg.size() >= (1u << 31) ||
        !jpeg::GetImageInfo(jpeg.data(), static_cast<int>(jpeg.size()), &width, &height, &components)) {
      return absl::InvalidArgumentError(absl::StrCat("DecodeCropResizeNormalise: ", where(), " (", jpeg.size(),
                                                     " bytes) is not a readable JPEG"));
    }
    // TensorFlow's decoder refuses images of 2^29 bytes of pixels or more; say so, not "invalid".
    if (static_cast<int64_t>(width) * height * 3 >= (int64_t{1} << 29)) {
      return absl::InvalidArgumentError(absl::StrCat("DecodeCropResizeNormalise: ", where(), " is ", height, "x", width,
                                                     " pixels, more than TensorFlow's JPEG decoder takes (under 2^29 "
                                                     "bytes of pixels, about 179 million pixels)"));
    }
    const Window window = CropWindow(crop_, crop_size_, crop_of_, height, width);
    if (window.height <= 0 || window.width <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("DecodeCropResizeNormalise: ", where(), " is ", height, "x",
                                                     width, " pixels, too small for a ", crop_, " crop of ",
                                                     crop_size_, "/", crop_of_));
    }
    // The window plus the margin that chroma upsampling reads, clipped to the image.
    const int64_t y0 = std::max<int64_t>(0, window.top - margin_), x0 = std::max<int64_t>(0, window.left - margin_);
    const int64_t y1 = std::min<int64_t>(height, window.top + window.height + margin_);
    const int64_t x1 = std::min<int64_t>(width, window.left + window.width + margin_);
    jpeg::UncompressFlags flags = flags_;
    flags.crop_x = static_cast<int>(x0);
    flags.crop_y = static_cast<int>(y0);
    flags.crop_width = static_cast<int>(x1 - x0);
    flags.crop_height = static_cast<int>(y1 - y0);
    int decoded_width = 0, decoded_height = 0;
    const uint8_t* pixels = jpeg::Uncompress(jpeg.data(), static_cast<int>(jpeg.size()), flags, nullptr,
                                             [&](int w, int h, int channels) -> uint8_t* {
                                               decoded_width = w;
                                               decoded_height = h;
                                               scratch.resize(static_cast<size_t>(w) * h * channels);
                                               return scratch.data();
                                             });
    if (pixels == nullptr || decoded_width != x1 - x0 || decoded_height != y1 - y0) {
      return absl::InvalidArgumentError(absl::StrCat("DecodeCropResizeNormalise: ", where(), " (", height, "x", width,
                                                     ", ", jpeg.size(), " bytes): invalid or truncated JPEG data"));
    }
    tfbench::ResizeBox(pixels, decoded_height, decoded_width, window.top - y0, window.left - x0, window.height,
                       window.width, params_, out, out_pixels);
    return absl::OkStatus();
  }

  std::string crop_;
  int64_t crop_size_;
  int64_t crop_of_;
  int64_t margin_;
  tfbench::ResizeParams params_{};
  DataType out_type_;
  bool parallel_;
  jpeg::UncompressFlags flags_;
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("DecodeCropResizeNormalise").Device(DEVICE_CPU), DecodeCropResizeNormaliseOp);

}  // namespace tensorflow
