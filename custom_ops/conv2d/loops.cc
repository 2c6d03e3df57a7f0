// `loops`: the convolution as its definition, seven loops deep (course exercise 6.11).
//
//   for n   in batch                          (1)
//    for oh in output rows                    (2)
//     for ow in output columns                (3)
//      for oc in output channels              (4)
//       acc = 0
//       for kh in filter rows                 (5)
//        for kw in filter columns             (6)
//         for ic in input channels            (7)
//          acc += input[n, oh*sh + kh - pt, ow*sw + kw - pl, ic] * filter[kh, kw, ic, oc]
//       output[n, oh, ow, oc] = acc
//
// Nothing is blocked, packed or vectorised by hand: the reference every other algorithm is checked
// against, and the baseline each tiling is timed against.  Per multiply-add it loads one input and
// one filter element (the filter with a stride of `oc`'s extent, a new cache line almost every time),
// and the compiler cannot vectorise the `ic` reduction without reordering float additions, which
// -ffp-contract=off and the default float semantics forbid.  The one concession to the machine: the
// (n, oh) pairs of loops 1-2 are shared out over TensorFlow's intra-op threads, as every algorithm
// of this op does, so that comparisons between algorithms compare schedules, not thread counts.
#include "algorithms.h"

namespace tfbench_conv {

void ConvLoops(const float* input, const float* filter, float* output, const ConvShape& s, const Machine&,
               const Parallel& parallel) {
  const int64_t cost = s.ow * s.k * s.kh * s.kw * s.c * 2;
  parallel.run(s.n * s.oh, cost, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / s.oh, oh = row % s.oh;           // loops (1) and (2)
      for (int64_t ow = 0; ow < s.ow; ++ow) {                 // (3)
        for (int64_t oc = 0; oc < s.k; ++oc) {                // (4)
          float acc = 0.0f;
          for (int64_t kh = 0; kh < s.kh; ++kh) {             // (5)
            const int64_t ih = oh * s.stride_h + kh - s.pad_top;
            if (ih < 0 || ih >= s.h) continue;                // a row of padding: zeros
            for (int64_t kw = 0; kw < s.kw; ++kw) {           // (6)
              const int64_t iw = ow * s.stride_w + kw - s.pad_left;
              if (iw < 0 || iw >= s.w) continue;
              for (int64_t ic = 0; ic < s.c; ++ic) {          // (7)
                acc += input[s.InputIndex(n, ih, iw, ic)] * filter[s.FilterIndex(kh, kw, ic, oc)];
              }
            }
          }
          output[s.OutputIndex(n, oh, ow, oc)] = acc;
        }
      }
    }
  });
}

std::string DescribeLoops(const ConvShape&, const Machine&) {
  return "loops: n, oh, ow, oc, kh, kw, ic (no tiles; (n, oh) rows shared out over the threads)";
}

}  // namespace tfbench_conv
