// The problem every algorithm of the TfbenchConv2D family solves, and what they share.
//
//   output[n, oh, ow, k] = sum over kh, kw, c of
//       input[n, oh * stride_h + kh - pad_top, ow * stride_w + kw - pad_left, c] * filter[kh, kw, c, k]
//
// NHWC input, HWIO filter, NHWC output, float32: the layouts of tf.nn.conv2d's defaults.  An input
// element outside the image (in the padding) reads as 0.  This header is plain C++ (no TensorFlow):
// each algorithm's source includes it and nothing else of the op, so it can be read on its own.
#ifndef TFBENCH_CONV2D_CONV_SHAPE_H_
#define TFBENCH_CONV2D_CONV_SHAPE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tfbench_conv {

struct ConvShape {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input: batch, height, width, channels
  int64_t kh = 0, kw = 0, k = 0;       // filter: height, width, (c), output channels
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t oh = 0, ow = 0;              // output height and width

  int64_t InputIndex(int64_t b, int64_t y, int64_t x, int64_t ch) const { return ((b * h + y) * w + x) * c + ch; }
  int64_t FilterIndex(int64_t y, int64_t x, int64_t ch, int64_t o) const { return ((y * kw + x) * c + ch) * k + o; }
  int64_t OutputIndex(int64_t b, int64_t y, int64_t x, int64_t o) const { return ((b * oh + y) * ow + x) * k + o; }
  // 2 * multiply-adds: the FLOPs of the direct convolution.
  double Flops() const { return 2.0 * n * oh * ow * k * kh * kw * c; }
};

// The machine the schedules are sized for: cache sizes read from sysfs (machine.cc), the vector
// extension the library was compiled for (simd.h) and the intra-op threads.
struct Machine {
  int64_t l1d_bytes = 32 * 1024;        // per core
  int64_t l2_bytes = 1024 * 1024;       // per core
  int64_t l3_bytes = 8 * 1024 * 1024;   // shared
  std::string cache_source = "defaults";  // "sysfs" when read from /sys/devices/system/cpu/cpu0/cache
  int threads = 1;
};
Machine ReadMachine(int threads);  // machine.cc
std::string DescribeMachine(const Machine& m);

// TensorFlow's intra-op thread pool, seen through one function: run work(begin, end) over pieces of
// [0, total), in parallel, each unit costing about cost_per_unit cycles.  The op supplies it
// (conv2d.cc); the algorithms only decide what a unit of work is.
struct Parallel {
  int threads = 1;
  std::function<void(int64_t total, int64_t cost_per_unit, const std::function<void(int64_t, int64_t)>& work)> run;
};

// A zero-padded copy of the input: [n, ph, pw, c] with the convolution's padding (and `extra_rows` /
// `extra_cols` more zeros at the bottom and right, so a kernel that computes a whole tile past the
// last output pixel reads zeros, not past the end).  Index with PaddedIndex.  The tiled kernels read
// this copy and need no bounds check in their inner loops.
struct PaddedInput {
  std::vector<float> data;
  int64_t ph = 0, pw = 0, c = 0;
  int64_t Index(int64_t b, int64_t y, int64_t x) const { return ((b * ph + y) * pw + x) * c; }
};
PaddedInput PadInput(const float* input, const ConvShape& s, int64_t extra_rows, int64_t extra_cols,
                     const Parallel& parallel);  // machine.cc

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

}  // namespace tfbench_conv

#endif  // TFBENCH_CONV2D_CONV_SHAPE_H_
