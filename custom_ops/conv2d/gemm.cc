// The BLIS-style GEMM of gemm.h: packing, the five loops, and the one vectorised micro-kernel.
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "simd.h"

namespace tfbench_conv {
namespace {

constexpr int kMR = kVectorRegisters >= 32 ? 12 : 6;  // rows of C per micro-kernel
constexpr int kNV = 2;                                // vectors of C per row
constexpr int kNR = kNV * kLanes;                     // columns of C per micro-kernel

// C[0:MR, 0:NR] (+)= A~ panel (kc x MR, column after column) * B~ panel (kc x NR, row after row):
// per step of k, NV vector loads of B, MR broadcasts of A, MR * NV fused multiply-adds.
void MicroKernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  Vec acc[kMR][kNV];
  for (int r = 0; r < kMR; ++r)
    for (int v = 0; v < kNV; ++v) acc[r][v] = Zero();
  for (int64_t p = 0; p < kc; ++p) {
    Vec bv[kNV];
    for (int v = 0; v < kNV; ++v) bv[v] = Load(b + p * kNR + v * kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const Vec av = Broadcast(a[p * kMR + r]);
      for (int v = 0; v < kNV; ++v) acc[r][v] = Fma(av, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < kMR; ++r) {
    for (int v = 0; v < kNV; ++v) {
      float* out = c + r * ldc + v * kLanes;
      Store(out, accumulate ? acc[r][v] + Load(out) : acc[r][v]);
    }
  }
}

// A[ic:ic+mc, pc:pc+kc] into MR-row micro-panels, each stored column after column (kc x MR), zeros
// past row m: the micro-kernel then reads A~ with unit stride too.
void PackA(const float* a, int64_t lda, int64_t mc, int64_t kc, float* packed) {
  for (int64_t ir = 0; ir < mc; ir += kMR) {
    const int64_t rows = std::min<int64_t>(kMR, mc - ir);
    float* panel = packed + ir * kc;
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t r = 0; r < rows; ++r) panel[p * kMR + r] = a[(ir + r) * lda + p];
      for (int64_t r = rows; r < kMR; ++r) panel[p * kMR + r] = 0.0f;
    }
  }
}

}  // namespace

GemmBlocking ChooseGemmBlocking(const Machine& m) {
  GemmBlocking b;
  b.mr = kMR;
  b.nr = kNR;
  b.kc = std::max<int64_t>(32, (m.l1d_bytes * 3 / 4) / ((kMR + kNR) * 4) / 8 * 8);
  b.mc = std::max<int64_t>(kMR, (m.l2_bytes / 2) / (b.kc * 4) / kMR * kMR);
  b.nc = std::max<int64_t>(kNR, (m.l3_bytes / 4) / (b.kc * 4) / kNR * kNR);
  return b;
}

std::string DescribeGemmBlocking(const GemmBlocking& b, const Machine& m) {
  std::ostringstream out;
  out << "GEMM micro-kernel MR=" << b.mr << " x NR=" << b.nr << " (registers); KC=" << b.kc
      << " (A and B micro-panels " << (b.mr + b.nr) * b.kc * 4 / 1024 << " KiB of L1d " << m.l1d_bytes / 1024
      << " KiB); MC=" << b.mc << " (A~ " << b.mc * b.kc * 4 / 1024 << " KiB of L2 " << m.l2_bytes / 1024
      << " KiB); NC=" << b.nc << " (B~ " << b.nc * b.kc * 4 / 1024 << " KiB of L3 " << m.l3_bytes / 1024 << " KiB)";
  return out.str();
}

PackedB PackB(const float* b, int64_t k, int64_t n, int64_t ldb, const GemmBlocking& blocking) {
  PackedB packed;
  packed.k = k;
  packed.n = n;
  packed.n_padded = RoundUp(n, kNR);
  packed.blocking = blocking;
  packed.data.assign(static_cast<size_t>(k * packed.n_padded), 0.0f);
  for (int64_t pc = 0; pc < k; pc += blocking.kc) {
    const int64_t kc = std::min(blocking.kc, k - pc);
    for (int64_t jr = 0; jr < n; jr += kNR) {
      float* panel = const_cast<float*>(packed.Panel(pc, jr));
      const int64_t cols = std::min<int64_t>(kNR, n - jr);
      for (int64_t p = 0; p < kc; ++p) std::memcpy(panel + p * kNR, b + (pc + p) * ldb + jr, sizeof(float) * cols);
    }
  }
  return packed;
}

void Gemm(int64_t m, const float* a, int64_t lda, const PackedB& b, float* c, int64_t ldc) {
  const GemmBlocking& blk = b.blocking;
  if (b.k == 0) {  // an empty sum
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + b.n, 0.0f);
    return;
  }
  std::vector<float> a_packed(static_cast<size_t>(RoundUp(std::min(blk.mc, m), kMR) * blk.kc));
  float edge[kMR * kNR];  // a micro-tile that sticks out of C is computed here, then copied in
  for (int64_t jc = 0; jc < b.n; jc += blk.nc) {                          // L3: B~ columns
    const int64_t nc = std::min(blk.nc, b.n - jc);
    for (int64_t pc = 0; pc < b.k; pc += blk.kc) {                        // KC: one packed depth block
      const int64_t kc = std::min(blk.kc, b.k - pc);
      const bool accumulate = pc > 0;
      for (int64_t ic = 0; ic < m; ic += blk.mc) {                        // L2: A~
        const int64_t mc = std::min(blk.mc, m - ic);
        PackA(a + ic * lda + pc, lda, mc, kc, a_packed.data());
        for (int64_t jr = 0; jr < nc; jr += kNR) {                        // L1: a B~ micro-panel
          const float* b_panel = b.Panel(pc, jc + jr);
          const int64_t cols = std::min<int64_t>(kNR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += kMR) {                      // registers
            const int64_t rows = std::min<int64_t>(kMR, mc - ir);
            float* c_tile = c + (ic + ir) * ldc + jc + jr;
            if (rows == kMR && cols == kNR) {
              MicroKernel(kc, &a_packed[ir * kc], b_panel, c_tile, ldc, accumulate);
              continue;
            }
            MicroKernel(kc, &a_packed[ir * kc], b_panel, edge, kNR, false);
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t j = 0; j < cols; ++j)
                c_tile[r * ldc + j] = accumulate ? c_tile[r * ldc + j] + edge[r * kNR + j] : edge[r * kNR + j];
          }
        }
      }
    }
  }
}

}  // namespace tfbench_conv
