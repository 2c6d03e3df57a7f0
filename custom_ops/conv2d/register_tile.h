// The register tile the three tilings share: RW output pixels of one output row times RK output
// channels, held in RW * NV vector registers (RK = NV vectors) while the filter window and a range of
// input channels are summed into them.  Per input element it does NV fused multiply-adds with one
// broadcast, per filter vector RW of them: the reuse that the plain loop nest never gets.
//
//   for kh, kw:                            (the filter window)
//     for ic in [c0, c1):                  (a range of input channels: all, or tile_ic's block)
//       w[0..NV) = filter[kh, kw, ic, oc0 : oc0 + RK]          NV vector loads
//       for r < RW:  acc[r][:] += broadcast(input[pixel r, kh, kw, ic]) * w[:]
//
// RW and NV come from the register file (simd.h) and the row length: up to 14 x 2 accumulators of 32
// registers with AVX-512, up to 6 x 2 of 16 with AVX2, leaving room for the filter vectors and the broadcast.
#ifndef TFBENCH_CONV2D_REGISTER_TILE_H_
#define TFBENCH_CONV2D_REGISTER_TILE_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "conv_shape.h"
#include "simd.h"

namespace tfbench_conv {

// Output pixels per register tile (along the output row): the choice that wastes the fewest columns at
// the end of a row (a 14-wide row in 12-pixel tiles would compute 24 pixels for 14), the widest on a
// tie.  Each choice leaves room for the NV = 2 filter vectors and the broadcast beside its 2 x RW
// accumulators: up to 14 pixels (28 + 3 of 32 registers) with AVX-512, up to 6 (12 + 3 of 16) otherwise.
constexpr int kPixelChoices32[] = {14, 12, 8, 7};
constexpr int kPixelChoices16[] = {6, 5, 4};
constexpr int kMaxTilePixels = kVectorRegisters >= 32 ? 14 : 6;

inline int TilePixels(const ConvShape& s) {
  int best = 0;
  int64_t best_cols = 0;
  auto consider = [&](int rw) {
    const int64_t cols = RoundUp(s.ow, rw);
    if (best == 0 || cols < best_cols || (cols == best_cols && rw > best)) {
      best = rw;
      best_cols = cols;
    }
  };
  if (kVectorRegisters >= 32) {
    for (int rw : kPixelChoices32) consider(rw);
  } else {
    for (int rw : kPixelChoices16) consider(rw);
  }
  return best;
}

// Output channels per register tile: two vectors, or one when the layer has no more channels than that.
inline int TileVectors(const ConvShape& s) { return s.k > kLanes ? 2 : 1; }

// The filter repacked per block of rk output channels: [k / rk][kh][kw][c][rk], zeros past the
// last channel, so a tile's NV filter vectors are one contiguous read.
inline std::vector<float> PackFilterBlocks(const float* filter, const ConvShape& s, int64_t rk) {
  const int64_t blocks = CeilDiv(s.k, rk), slice = s.kh * s.kw * s.c * rk;
  std::vector<float> packed(static_cast<size_t>(blocks * slice), 0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t i = 0; i < s.kh * s.kw * s.c; ++i) {
      for (int64_t o = 0; o < rk && b * rk + o < s.k; ++o) {
        packed[b * slice + i * rk + o] = filter[i * s.k + b * rk + o];
      }
    }
  }
  return packed;
}

// Columns of zeros the padded input needs on the right so that a tile of TilePixels(s) pixels that
// runs past the last output column still reads inside the copy.
inline int64_t ExtraColumns(const ConvShape& s) {
  const int64_t needed = (RoundUp(s.ow, TilePixels(s)) - 1) * s.stride_w + s.kw;
  return std::max<int64_t>(0, needed - (s.w + s.pad_left + s.pad_right));
}

// Where one register tile reads and writes.
struct TileArgs {
  const float* input;        // padded input at the window of the tile's first pixel (kh = kw = ic = 0)
  int64_t pixel_step;        // floats between the windows of neighbouring pixels: stride_w * c
  int64_t row_step;          // floats between padded input rows: padded width * c
  const float* weights;      // this block's packed filter [kh][kw][c][rk]
  int64_t c0, c1;            // the input channels summed
  float* output;             // output at (n, oh, ow0, oc0)
  int64_t valid_pixels;      // <= RW: the rest of the tile is past the output row's end
  int64_t valid_channels;    // <= rk: the rest is past the last output channel
  bool accumulate;           // add to the output (tile_ic's later channel blocks) instead of writing it
};

template <int RW, int NV>
inline void RegisterTile(const ConvShape& s, const TileArgs& t) {
  constexpr int RK = NV * kLanes;
  Vec acc[RW][NV];
  for (int r = 0; r < RW; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = Zero();
  for (int64_t y = 0; y < s.kh; ++y) {
    for (int64_t x = 0; x < s.kw; ++x) {
      const float* in = t.input + y * t.row_step + x * s.c;
      const float* w = t.weights + (y * s.kw + x) * s.c * RK;
      for (int64_t ic = t.c0; ic < t.c1; ++ic) {
        Vec wv[NV];
        for (int v = 0; v < NV; ++v) wv[v] = Load(w + ic * RK + v * kLanes);
#pragma GCC unroll 16
        for (int r = 0; r < RW; ++r) {
          const Vec b = Broadcast(in[r * t.pixel_step + ic]);
          for (int v = 0; v < NV; ++v) acc[r][v] = Fma(b, wv[v], acc[r][v]);
        }
      }
    }
  }
  // Out of the registers: straight into the output when the tile is whole, else through a buffer.
  if (t.valid_pixels == RW && t.valid_channels == RK) {
    for (int r = 0; r < RW; ++r) {
      for (int v = 0; v < NV; ++v) {
        float* o = t.output + r * s.k + v * kLanes;
        Store(o, t.accumulate ? acc[r][v] + Load(o) : acc[r][v]);
      }
    }
    return;
  }
  float buffer[RW][RK];
  for (int r = 0; r < RW; ++r)
    for (int v = 0; v < NV; ++v) Store(&buffer[r][v * kLanes], acc[r][v]);
  for (int64_t r = 0; r < t.valid_pixels; ++r) {
    float* o = t.output + r * s.k;
    for (int64_t ch = 0; ch < t.valid_channels; ++ch) o[ch] = t.accumulate ? o[ch] + buffer[r][ch] : buffer[r][ch];
  }
}

template <int RW>
inline void RunRegisterTileOf(int nv, const ConvShape& s, const TileArgs& t) {
  if (nv == 2) {
    RegisterTile<RW, 2>(s, t);
  } else {
    RegisterTile<RW, 1>(s, t);
  }
}

// One register tile of rw pixels (one of TilePixels' choices) and nv vectors of output channels.
inline void RunRegisterTile(int rw, int nv, const ConvShape& s, const TileArgs& t) {
  switch (rw) {
#if defined(__AVX512F__)
    case 14: return RunRegisterTileOf<14>(nv, s, t);
    case 12: return RunRegisterTileOf<12>(nv, s, t);
    case 8: return RunRegisterTileOf<8>(nv, s, t);
    case 7: return RunRegisterTileOf<7>(nv, s, t);
#else
    case 6: return RunRegisterTileOf<6>(nv, s, t);
    case 5: return RunRegisterTileOf<5>(nv, s, t);
    case 4: return RunRegisterTileOf<4>(nv, s, t);
#endif
    default: return;  // unreachable: rw comes from TilePixels
  }
}

}  // namespace tfbench_conv

#endif  // TFBENCH_CONV2D_REGISTER_TILE_H_
