// `im2col`: image patches to a matrix, times a GEMM (what TensorFlow's Eigen kernel does when oneDNN
// is off: Eigen's SpatialConvolution contracts `extract_image_patches` with the filter).
//
// Each output pixel (n, oh, ow) becomes one row of the patch matrix: its kh x kw x ic input window,
// laid out as the filter's first three dimensions are (zeros where the window hangs over the
// padding).  The HWIO filter already is the [kh*kw*ic x oc] matrix, row-major, so
//
//   output[n*oh*ow x oc] = patches[n*oh*ow x kh*kw*ic] * filter[kh*kw*ic x oc]
//
// and the output needs no reshuffling: NHWC is that matrix.  The patch matrix is kh*kw/(stride^2)
// times the input (9x for a 3x3 stride-1 layer), so it is never built whole: each thread fills MC rows
// at a time (the rows gemm.h's A~ block covers, half of L2) and multiplies them at once, while the
// filter is packed into B~ micro-panels once per call and shared by every thread.
#include <cstring>
#include <sstream>

#include "algorithms.h"
#include "gemm.h"

namespace tfbench_conv {
namespace {

// Rows [r0, r1) of the patch matrix into `patches` (row stride kh*kw*ic).
void Im2colRows(const float* input, const ConvShape& s, int64_t r0, int64_t r1, float* patches) {
  const int64_t depth = s.kh * s.kw * s.c;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / (s.oh * s.ow), oh = r / s.ow % s.oh, ow = r % s.ow;
    float* row = patches + (r - r0) * depth;
    for (int64_t y = 0; y < s.kh; ++y) {
      const int64_t ih = oh * s.stride_h + y - s.pad_top;
      for (int64_t x = 0; x < s.kw; ++x) {
        const int64_t iw = ow * s.stride_w + x - s.pad_left;
        float* dst = row + (y * s.kw + x) * s.c;
        if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) {
          std::memset(dst, 0, sizeof(float) * s.c);
        } else {
          std::memcpy(dst, input + s.InputIndex(n, ih, iw, 0), sizeof(float) * s.c);
        }
      }
    }
  }
}

int64_t ChunkRows(const ConvShape& s, const GemmBlocking& b, int threads) {
  const int64_t rows = s.n * s.oh * s.ow;
  return std::max<int64_t>(1, std::min(b.mc, RoundUp(CeilDiv(rows, threads), b.mr)));
}

}  // namespace

void ConvIm2col(const float* input, const float* filter, float* output, const ConvShape& s, const Machine& m,
                const Parallel& parallel) {
  const GemmBlocking blocking = ChooseGemmBlocking(m);
  const int64_t depth = s.kh * s.kw * s.c, rows = s.n * s.oh * s.ow;
  const PackedB b = PackB(filter, depth, s.k, s.k, blocking);
  const int64_t chunk = ChunkRows(s, blocking, m.threads), chunks = CeilDiv(rows, chunk);
  parallel.run(chunks, chunk * depth * s.k * 2, [&](int64_t begin, int64_t end) {
    std::vector<float> patches(static_cast<size_t>(chunk * depth));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r0 = i * chunk, r1 = std::min(rows, r0 + chunk);
      Im2colRows(input, s, r0, r1, patches.data());
      Gemm(r1 - r0, patches.data(), depth, b, output + r0 * s.k, s.k);
    }
  });
}

std::string DescribeIm2col(const ConvShape& s, const Machine& m) {
  const GemmBlocking b = ChooseGemmBlocking(m);
  std::ostringstream out;
  out << "im2col: patch matrix " << s.n * s.oh * s.ow << " x " << s.kh * s.kw * s.c << " filled "
      << ChunkRows(s, b, m.threads) << " rows at a time per thread; " << DescribeGemmBlocking(b, m);
  return out.str();
}

}  // namespace tfbench_conv
