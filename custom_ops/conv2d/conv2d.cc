// TfbenchConv2D: tf.nn.conv2d computed six ways, chosen by the `algorithm` attribute (course
// exercises 5.7 and 6.11).  This file is the TensorFlow side only: the op's interface and shape
// function, the checks, and the dispatch; each algorithm is plain C++ in its own file
// (algorithms.h lists them), sized for this machine (machine.cc reads the caches from sysfs).
//
//   TfbenchConv2D(input [n, h, w, ic] float, filter [kh, kw, ic, oc] float) -> [n, oh, ow, oc]
//     strides   [1, sh, sw, 1]      as tf.nn.conv2d (NHWC)
//     padding   "SAME" | "VALID"    as tf.nn.conv2d (SAME pads (total) / 2 before, the rest after)
//     dilations [1, 1, 1, 1]        only; other values are refused by name
//     algorithm "loops" | "tile_oc" | "tile_plane" | "tile_ic" | "im2col" | "winograd"
//
//   TfbenchConv2DSchedule(input_shape int64[4], filter_shape int64[4]) -> string: the machine as the
//     kernels see it and the schedule (tile sizes, which data lives where) one algorithm picks for a shape.
//
// Every bad attribute or shape is an InvalidArgument status naming it (eagerly from the kernel, in a
// graph from the shape function as well), never a crash.  The gradients are registered from Python
// (tfbench/operators/conv2d.py), as convolutions computed by this same op.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "algorithms.h"
#include "conv_shape.h"
#include "tensorflow/core/framework/common_shape_fns.h"
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
using tfbench_conv::ConvShape;

constexpr int64_t kUnknown = -1;

struct ConvAttrs {
  std::vector<int32_t> strides;
  std::vector<int32_t> dilations;
  std::string padding;
  std::string algorithm;
};

std::string Show(const std::vector<int64_t>& dims) {
  std::vector<std::string> parts;
  for (int64_t d : dims) parts.push_back(d == kUnknown ? "?" : std::to_string(d));
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

absl::Status CheckAttrs(const ConvAttrs& a) {
  if (a.strides.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat("TfbenchConv2D: strides must have 4 elements [1, sh, sw, 1], got ",
                                                   a.strides.size(), ": [", absl::StrJoin(a.strides, ","), "]"));
  }
  if (a.strides[0] != 1 || a.strides[3] != 1 || a.strides[1] < 1 || a.strides[2] < 1) {
    return absl::InvalidArgumentError(absl::StrCat("TfbenchConv2D: strides must be [1, sh, sw, 1] with sh, sw >= 1 "
                                                   "(no stride over the batch or the channels), got [",
                                                   absl::StrJoin(a.strides, ","), "]"));
  }
  for (int32_t d : a.dilations) {
    if (d != 1 || a.dilations.size() != 4) {
      return absl::InvalidArgumentError(absl::StrCat("TfbenchConv2D: dilations must be [1,1,1,1] (dilated "
                                                     "convolutions are not implemented), got [",
                                                     absl::StrJoin(a.dilations, ","), "]"));
    }
  }
  return absl::OkStatus();
}

// The whole problem from the input and filter dimensions (kUnknown for a dimension not known yet,
// in a graph): the checks every algorithm relies on, and the output size as tf.nn.conv2d's.
absl::Status MakeShape(const std::vector<int64_t>& in, const std::vector<int64_t>& f, const ConvAttrs& a,
                       ConvShape* s) {
  TF_RETURN_IF_ERROR(CheckAttrs(a));
  if (in.size() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("TfbenchConv2D: input must be 4-D [batch, height, width, channels] (NHWC), got shape ", Show(in)));
  }
  if (f.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TfbenchConv2D: filter must be 4-D [height, width, in_channels, out_channels] (HWIO), got shape ", Show(f)));
  }
  if (in[3] != kUnknown && f[2] != kUnknown && in[3] != f[2]) {
    return absl::InvalidArgumentError(absl::StrCat("TfbenchConv2D: input has ", in[3], " channels (shape ", Show(in),
                                                   ") but filter ", Show(f), " expects ", f[2]));
  }
  if ((f[0] != kUnknown && f[0] < 1) || (f[1] != kUnknown && f[1] < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TfbenchConv2D: filter height and width must be at least 1, got filter shape ", Show(f)));
  }
  if (a.algorithm == "winograd" && ((f[0] != kUnknown && f[0] != 3) || (f[1] != kUnknown && f[1] != 3) ||
                                    a.strides[1] != 1 || a.strides[2] != 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TfbenchConv2D: algorithm 'winograd' (F(2x2,3x3)) needs a 3x3 filter and strides [1,1,1,1], got filter ",
        Show(f), " and strides [", absl::StrJoin(a.strides, ","), "]"));
  }
  s->n = in[0];
  s->h = in[1];
  s->w = in[2];
  s->c = in[3] != kUnknown ? in[3] : f[2];
  s->kh = f[0];
  s->kw = f[1];
  s->k = f[3];
  s->stride_h = a.strides[1];
  s->stride_w = a.strides[2];
  // Output size and padding per spatial dimension, as tf.nn.conv2d computes them.
  auto window = [&](int64_t size, int64_t kernel, int64_t stride, const char* what, int64_t* out, int64_t* before,
                    int64_t* after) -> absl::Status {
    if (size == kUnknown || kernel == kUnknown) {
      *out = kUnknown;
      return absl::OkStatus();
    }
    if (a.padding == "VALID") {
      if (size < kernel) {
        return absl::InvalidArgumentError(absl::StrCat("TfbenchConv2D: with padding VALID the input ", what, " (", size,
                                                       ") must be at least the filter ", what, " (", kernel,
                                                       "): input ", Show(in), ", filter ", Show(f)));
      }
      *out = (size - kernel) / stride + 1;
      *before = *after = 0;
    } else {
      *out = (size + stride - 1) / stride;
      const int64_t total = std::max<int64_t>(0, (*out - 1) * stride + kernel - size);
      *before = total / 2;
      *after = total - *before;
    }
    return absl::OkStatus();
  };
  TF_RETURN_IF_ERROR(window(s->h, s->kh, s->stride_h, "height", &s->oh, &s->pad_top, &s->pad_bottom));
  TF_RETURN_IF_ERROR(window(s->w, s->kw, s->stride_w, "width", &s->ow, &s->pad_left, &s->pad_right));
  return absl::OkStatus();
}

template <typename Context>
absl::Status ReadAttrs(Context* c, ConvAttrs* a) {
  TF_RETURN_IF_ERROR(c->GetAttr("strides", &a->strides));
  TF_RETURN_IF_ERROR(c->GetAttr("dilations", &a->dilations));
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &a->padding));
  TF_RETURN_IF_ERROR(c->GetAttr("algorithm", &a->algorithm));
  return absl::OkStatus();
}

std::vector<int64_t> Dims(InferenceContext* c, ShapeHandle s) {
  std::vector<int64_t> dims;
  for (int i = 0; i < c->Rank(s); ++i) dims.push_back(c->Value(c->Dim(s, i)));
  return dims;
}

absl::Status ConvShapeFn(InferenceContext* c) {
  ConvAttrs a;
  TF_RETURN_IF_ERROR(ReadAttrs(c, &a));
  TF_RETURN_IF_ERROR(CheckAttrs(a));
  if (!c->RankKnown(c->input(0)) || !c->RankKnown(c->input(1))) {
    c->set_output(0, c->UnknownShapeOfRank(4));
    return absl::OkStatus();
  }
  ConvShape s;
  TF_RETURN_IF_ERROR(MakeShape(Dims(c, c->input(0)), Dims(c, c->input(1)), a, &s));
  auto dim = [&](int64_t v) -> DimensionHandle { return v == kUnknown ? c->UnknownDim() : c->MakeDim(v); };
  c->set_output(0, c->MakeShape({dim(s.n), dim(s.oh), dim(s.ow), dim(s.k)}));
  return absl::OkStatus();
}

}  // namespace

#define TFBENCH_CONV_ATTRS                                                                  \
  Attr("strides: list(int)")                                                                \
      .Attr("padding: {'SAME', 'VALID'}")                                                   \
      .Attr("dilations: list(int) = [1, 1, 1, 1]")                                          \
      .Attr("algorithm: {'loops', 'tile_oc', 'tile_plane', 'tile_ic', 'im2col', 'winograd'} = 'im2col'")

REGISTER_OP("TfbenchConv2D")
    .Input("input: float")
    .Input("filter: float")
    .Output("output: float")
    .TFBENCH_CONV_ATTRS
    .SetShapeFn(ConvShapeFn);

REGISTER_OP("TfbenchConv2DSchedule")
    .Input("input_shape: int64")
    .Input("filter_shape: int64")
    .Output("schedule: string")
    .TFBENCH_CONV_ATTRS
    .SetShapeFn(shape_inference::ScalarShape);

namespace {

using Algorithm = void (*)(const float*, const float*, float*, const ConvShape&, const tfbench_conv::Machine&,
                           const tfbench_conv::Parallel&);
using Describer = std::string (*)(const ConvShape&, const tfbench_conv::Machine&);

struct Entry {
  const char* name;
  Algorithm run;
  Describer describe;
};

const Entry kAlgorithms[] = {
    {"loops", tfbench_conv::ConvLoops, tfbench_conv::DescribeLoops},
    {"tile_oc", tfbench_conv::ConvTileOc, tfbench_conv::DescribeTileOc},
    {"tile_plane", tfbench_conv::ConvTilePlane, tfbench_conv::DescribeTilePlane},
    {"tile_ic", tfbench_conv::ConvTileIc, tfbench_conv::DescribeTileIc},
    {"im2col", tfbench_conv::ConvIm2col, tfbench_conv::DescribeIm2col},
    {"winograd", tfbench_conv::ConvWinograd, tfbench_conv::DescribeWinograd},
};

const Entry& Find(const std::string& name) {
  for (const Entry& e : kAlgorithms)
    if (name == e.name) return e;
  return kAlgorithms[0];  // unreachable: the attr's allowed values are exactly these names
}

std::vector<int64_t> Dims(const TensorShape& shape) {
  std::vector<int64_t> dims;
  for (int i = 0; i < shape.dims(); ++i) dims.push_back(shape.dim_size(i));
  return dims;
}

tfbench_conv::Parallel MakeParallel(OpKernelContext* context) {
  thread::ThreadPool* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  tfbench_conv::Parallel p;
  p.threads = pool->NumThreads();
  p.run = [pool](int64_t total, int64_t cost, const std::function<void(int64_t, int64_t)>& work) {
    if (total <= 0) return;
    pool->ParallelFor(total, cost, [&work](int64_t begin, int64_t end) { work(begin, end); });
  };
  return p;
}

class TfbenchConv2DOp : public OpKernel {
 public:
  explicit TfbenchConv2DOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, ReadAttrs(context, &attrs_));
    OP_REQUIRES_OK(context, CheckAttrs(attrs_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    const Tensor& filter = context->input(1);
    ConvShape s;
    // Eager execution runs no shape function: the kernel checks everything itself.
    OP_REQUIRES_OK(context, MakeShape(Dims(input.shape()), Dims(filter.shape()), attrs_, &s));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({s.n, s.oh, s.ow, s.k}), &output));
    if (output->NumElements() == 0) return;
    const tfbench_conv::Parallel parallel = MakeParallel(context);
    const tfbench_conv::Machine machine = tfbench_conv::ReadMachine(parallel.threads);
    Find(attrs_.algorithm).run(input.flat<float>().data(), filter.flat<float>().data(), output->flat<float>().data(),
                               s, machine, parallel);
  }

 private:
  ConvAttrs attrs_;
};

class TfbenchConv2DScheduleOp : public OpKernel {
 public:
  explicit TfbenchConv2DScheduleOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, ReadAttrs(context, &attrs_));
    OP_REQUIRES_OK(context, CheckAttrs(attrs_));
  }

  void Compute(OpKernelContext* context) override {
    std::vector<std::vector<int64_t>> shapes;
    for (int i = 0; i < 2; ++i) {
      const Tensor& t = context->input(i);
      OP_REQUIRES(context, TensorShapeUtils::IsVector(t.shape()),
                  absl::InvalidArgumentError(absl::StrCat("TfbenchConv2DSchedule: input ", i,
                                                          " must be a vector of dimensions, got shape ",
                                                          t.shape().DebugString())));
      auto v = t.flat<int64_t>();
      std::vector<int64_t> dims(v.data(), v.data() + v.size());
      for (int64_t d : dims) {
        OP_REQUIRES(context, d >= 0,
                    absl::InvalidArgumentError(absl::StrCat("TfbenchConv2DSchedule: negative dimension in ", Show(dims))));
      }
      shapes.push_back(dims);
    }
    ConvShape s;
    OP_REQUIRES_OK(context, MakeShape(shapes[0], shapes[1], attrs_, &s));
    const tfbench_conv::Machine machine =
        tfbench_conv::ReadMachine(context->device()->tensorflow_cpu_worker_threads()->workers->NumThreads());
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({}), &output));
    output->scalar<tstring>()() = absl::StrCat(tfbench_conv::DescribeMachine(machine), "\n",
                                               Find(attrs_.algorithm).describe(s, machine));
  }

 private:
  ConvAttrs attrs_;
};

REGISTER_KERNEL_BUILDER(Name("TfbenchConv2D").Device(DEVICE_CPU), TfbenchConv2DOp);
REGISTER_KERNEL_BUILDER(Name("TfbenchConv2DSchedule").Device(DEVICE_CPU), TfbenchConv2DScheduleOp);

}  // namespace
}  // namespace tensorflow
