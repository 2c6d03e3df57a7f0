// `tile_ic`: input channels blocked so a block of weights stays in L1 (tiling 3 of exercise 6.11).
//
// Loop (7) of loops.cc split into blocks of CB input channels and the block loop hoisted above the
// output pixels, so one block of weights serves every output pixel of the rows before the next
// block is read; partial sums go back to the output between blocks:
//
//   for rows (n, oh) in a thread's share:
//     for oc0 in 0..oc step RK                               block of output channels
//       for ic0 in 0..ic step CB                             block of input channels
//         [weights kh * kw * CB * RK floats: sized to stay in half of L1]
//         for (n, oh) in the share, ow0 in 0..ow step RW
//           acc[RW][RK] over kh, kw, ic in ic0..ic0+CB  ->  output (+= after the first block)
//
// Resident: the weight block in L1 for the whole share of rows (tile_oc and tile_plane stream the
// whole kh*kw*ic*RK slice per register tile, from L2 at best); the outputs in registers within a block,
// and the share's RK-channel slice of the output in L2 between blocks, which is the price: each output
// is loaded and stored ic / CB times.  CB is derived from L1's size (read from sysfs).
#include <sstream>

#include "algorithms.h"
#include "register_tile.h"

namespace tfbench_conv {
namespace {

int64_t ChannelBlock(const ConvShape& s, const Machine& m) {
  const int64_t rk = TileVectors(s) * kLanes;
  const int64_t cb = (m.l1d_bytes / 2) / (s.kh * s.kw * rk * 4);
  return std::max<int64_t>(1, std::min(cb, s.c));
}

}  // namespace

void ConvTileIc(const float* input, const float* filter, float* output, const ConvShape& s, const Machine& m,
                const Parallel& parallel) {
  const int nv = TileVectors(s), rw = TilePixels(s);
  const int64_t rk = nv * kLanes, blocks = CeilDiv(s.k, rk), slice = s.kh * s.kw * s.c * rk;
  const int64_t cb = ChannelBlock(s, m);
  const std::vector<float> weights = PackFilterBlocks(filter, s, rk);
  const PaddedInput in = PadInput(input, s, 0, ExtraColumns(s), parallel);
  const int64_t cost = s.ow * s.k * s.kh * s.kw * s.c * 2;
  if (s.c == 0) {  // no input channels: every output is an empty sum
    std::fill(output, output + s.n * s.oh * s.ow * s.k, 0.0f);
    return;
  }
  parallel.run(s.n * s.oh, cost, [&](int64_t begin, int64_t end) {
    for (int64_t b = 0; b < blocks; ++b) {
      for (int64_t ic0 = 0; ic0 < s.c; ic0 += cb) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t n = row / s.oh, oh = row % s.oh;
          for (int64_t ow0 = 0; ow0 < s.ow; ow0 += rw) {
            TileArgs t;
            t.input = &in.data[in.Index(n, oh * s.stride_h, ow0 * s.stride_w)];
            t.pixel_step = s.stride_w * s.c;
            t.row_step = in.pw * s.c;
            t.weights = &weights[b * slice];
            t.c0 = ic0;
            t.c1 = std::min(s.c, ic0 + cb);
            t.output = output + s.OutputIndex(n, oh, ow0, b * rk);
            t.valid_pixels = std::min<int64_t>(rw, s.ow - ow0);
            t.valid_channels = std::min<int64_t>(rk, s.k - b * rk);
            t.accumulate = ic0 > 0;
            RunRegisterTile(rw, nv, s, t);
          }
        }
      }
    }
  });
}

std::string DescribeTileIc(const ConvShape& s, const Machine& m) {
  const int64_t rk = TileVectors(s) * kLanes, cb = ChannelBlock(s, m);
  const int rw = TilePixels(s);
  std::ostringstream out;
  out << "tile_ic: input-channel block CB=" << cb << " (weights " << s.kh * s.kw * cb * rk * 4 / 1024.0
      << " KiB, budget half of L1d = " << m.l1d_bytes / 2048 << " KiB), register tile " << rw << " x "
      << rk << ", " << CeilDiv(s.c, cb) << " passes over the output";
  return out.str();
}

}  // namespace tfbench_conv
