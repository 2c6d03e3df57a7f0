// `tile_plane`: the output plane tiled so each tile's input window stays in L2 (tiling 2 of 6.11).
//
// Loops (2) and (3) of loops.cc split into tiles of TH x TW output pixels, the tile loops outermost,
// every block of output channels inside them; the register tile (register_tile.h) innermost:
//
//   for n, th0 in 0..oh step TH, tw0 in 0..ow step TW        tiles, shared out over the threads
//     [input window ((TH-1)*sh + kh) x ((TW-1)*sw + kw) x ic floats: sized to stay in half of L2]
//     for oc0 in 0..oc step RK                               block of output channels
//       for oh in th0..th0+TH, ow0 in tw0..tw0+TW step RW
//         acc[RW][RK] over kh, kw, ic  ->  output             [RW x RK outputs: registers]
//
// Resident: the tile's input window in L2 while every channel block reads it (tile_oc re-reads an
// output row's kh input rows for each block, from wherever they are by then); the block's kh input
// rows of RW pixels in L1 during one register tile; the outputs in registers.  TH and TW are
// derived from L2's size (read from sysfs): TW grows in steps of RW, TH by one row, alternately, while
// the window still fits; then TH shrinks until there are at least two tiles per thread.
#include <sstream>

#include "algorithms.h"
#include "register_tile.h"

namespace tfbench_conv {
namespace {

struct PlaneTile {
  int64_t th = 1, tw = 1;
};

int64_t WindowBytes(const ConvShape& s, int64_t th, int64_t tw) {
  return ((th - 1) * s.stride_h + s.kh) * ((tw - 1) * s.stride_w + s.kw) * s.c * 4;
}

PlaneTile ChoosePlaneTile(const ConvShape& s, const Machine& m) {
  const int rw = TilePixels(s);
  const int64_t budget = m.l2_bytes / 2, max_tw = RoundUp(s.ow, rw);
  PlaneTile t;
  t.tw = rw;
  for (bool grew = true; grew;) {
    grew = false;
    if (t.tw + rw <= max_tw && WindowBytes(s, t.th, t.tw + rw) <= budget) {
      t.tw += rw;
      grew = true;
    }
    if (t.th + 1 <= s.oh && WindowBytes(s, t.th + 1, t.tw) <= budget) {
      t.th += 1;
      grew = true;
    }
  }
  while (t.th > 1 && s.n * CeilDiv(s.oh, t.th) * CeilDiv(s.ow, t.tw) < 2 * m.threads) t.th = CeilDiv(t.th, 2);
  return t;
}

}  // namespace

void ConvTilePlane(const float* input, const float* filter, float* output, const ConvShape& s, const Machine& m,
                   const Parallel& parallel) {
  const int nv = TileVectors(s), rw = TilePixels(s);
  const int64_t rk = nv * kLanes, blocks = CeilDiv(s.k, rk), slice = s.kh * s.kw * s.c * rk;
  const PlaneTile tile = ChoosePlaneTile(s, m);
  const int64_t tiles_h = CeilDiv(s.oh, tile.th), tiles_w = CeilDiv(s.ow, tile.tw);
  const std::vector<float> weights = PackFilterBlocks(filter, s, rk);
  const PaddedInput in = PadInput(input, s, 0, ExtraColumns(s), parallel);
  const int64_t cost = tile.th * tile.tw * s.k * s.kh * s.kw * s.c * 2;
  parallel.run(s.n * tiles_h * tiles_w, cost, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      const int64_t n = index / (tiles_h * tiles_w);
      const int64_t th0 = (index / tiles_w) % tiles_h * tile.th, tw0 = index % tiles_w * tile.tw;
      const int64_t th1 = std::min(s.oh, th0 + tile.th), tw1 = std::min(s.ow, tw0 + tile.tw);
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t oh = th0; oh < th1; ++oh) {
          for (int64_t ow0 = tw0; ow0 < tw1; ow0 += rw) {
            TileArgs t;
            t.input = &in.data[in.Index(n, oh * s.stride_h, ow0 * s.stride_w)];
            t.pixel_step = s.stride_w * s.c;
            t.row_step = in.pw * s.c;
            t.weights = &weights[b * slice];
            t.c0 = 0;
            t.c1 = s.c;
            t.output = output + s.OutputIndex(n, oh, ow0, b * rk);
            t.valid_pixels = std::min<int64_t>(rw, tw1 - ow0);
            t.valid_channels = std::min<int64_t>(rk, s.k - b * rk);
            t.accumulate = false;
            RunRegisterTile(rw, nv, s, t);
          }
        }
      }
    }
  });
}

std::string DescribeTilePlane(const ConvShape& s, const Machine& m) {
  const PlaneTile t = ChoosePlaneTile(s, m);
  const int rw = TilePixels(s);
  std::ostringstream out;
  out << "tile_plane: output tiles TH=" << t.th << " x TW=" << t.tw << " pixels (input window "
      << WindowBytes(s, t.th, t.tw) / 1024 << " KiB, budget half of L2 = " << m.l2_bytes / 2048
      << " KiB), register tile " << rw << " x " << TileVectors(s) * kLanes;
  return out.str();
}

}  // namespace tfbench_conv
