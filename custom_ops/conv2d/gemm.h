// A GEMM blocked the BLIS way (Goto and van de Geijn, "Anatomy of High-Performance Matrix
// Multiplication"): C[m x n] = A[m x k] * B[k x n], row-major, no BLAS call.  im2col.cc and
// winograd.cc use it.
//
// Five loops around a micro-kernel, each named for the memory its block lives in:
//
//   for jc in 0..n step NC          B~ = B[:, jc:jc+NC]                  L3
//    for pc in 0..k step KC         B~[pc:pc+KC, :] as KC x NR micro-panels (packed once, PackB)
//     for ic in 0..m step MC        A~ = A[ic:ic+MC, pc:pc+KC], packed as MR x KC micro-panels   L2
//      for jr in 0..NC step NR      one KC x NR micro-panel of B~         L1
//       for ir in 0..MC step MR     one MR x KC micro-panel of A~, and
//         micro-kernel: C[ir:ir+MR, jr:jr+NR] (+)= A~ panel * B~ panel    MR x NR of C in registers
//
// MR x NR comes from the register file (12 x 32 floats with AVX-512: 24 of the 32 registers hold C;
// 6 x 16 with AVX2); KC so that an A and a B micro-panel fill about three quarters of L1; MC so that
// A~ fills half of L2; NC so that B~ fills a quarter of L3 (caches read from sysfs: machine.cc).
#ifndef TFBENCH_CONV2D_GEMM_H_
#define TFBENCH_CONV2D_GEMM_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "conv_shape.h"

namespace tfbench_conv {

struct GemmBlocking {
  int64_t mr = 0, nr = 0;   // register tile of C
  int64_t kc = 0;           // depth of a micro-panel pair (L1)
  int64_t mc = 0;           // rows of A~ (L2)
  int64_t nc = 0;           // columns of B~ (L3)
};
GemmBlocking ChooseGemmBlocking(const Machine& m);
std::string DescribeGemmBlocking(const GemmBlocking& b, const Machine& m);

// B[k x n] (row stride ldb) packed once into KC x NR micro-panels, zeros past column n: the layout
// the micro-kernel reads, panel after panel, with unit stride.
struct PackedB {
  int64_t k = 0, n = 0, n_padded = 0;
  GemmBlocking blocking;
  std::vector<float> data;
  // The micro-panel of rows [pc, pc + kc) and columns [jr, jr + NR).
  const float* Panel(int64_t pc, int64_t jr) const { return &data[pc * n_padded + jr * std::min(blocking.kc, k - pc)]; }
};
PackedB PackB(const float* b, int64_t k, int64_t n, int64_t ldb, const GemmBlocking& blocking);

// C[m x n] = A[m x k] * B: A row-major with row stride lda, C with row stride ldc.  Single-threaded:
// callers share rows of A out over the threads, each with its own call.
void Gemm(int64_t m, const float* a, int64_t lda, const PackedB& b, float* c, int64_t ldc);

}  // namespace tfbench_conv

#endif  // TFBENCH_CONV2D_GEMM_H_
