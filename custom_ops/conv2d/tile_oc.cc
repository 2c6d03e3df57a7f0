// `tile_oc`: the output channels blocked to a register tile (tiling 1 of exercise 6.11).
//
// The loop nest of loops.cc with loops (3) and (4) split and reordered (Halide: split ow by RW and oc
// by RK, reorder so ic is outside the new inner pair, vectorise the RK channels, unroll the RW pixels):
//
//   for n, oh                                     rows, shared out over the threads
//     for oc0 in 0..oc step RK                    block of output channels   [weights: kh*kw*ic*RK, L2]
//       for ow0 in 0..ow step RW                  block of output pixels
//         acc[RW][RK] = 0                         [RW x RK outputs: registers]
//         for kh, kw, ic:  acc[r][:] += in[r] * w[kh, kw, ic, oc0 : oc0+RK]     (register_tile.h)
//         output[n, oh, ow0 : ow0+RW, oc0 : oc0+RK] = acc
//
// Resident: the RW x RK outputs in registers for the whole reduction (loaded and stored once, where
// the loop nest touches each output element kh*kw*ic times); the block's weights (kh*kw*ic*RK floats)
// are read once per RW pixels, from L2 when they fit there (the description says whether they do);
// the kh input rows of the output row are re-read from L1/L2 for every channel block.
#include <sstream>

#include "algorithms.h"
#include "register_tile.h"

namespace tfbench_conv {

void ConvTileOc(const float* input, const float* filter, float* output, const ConvShape& s, const Machine&,
                const Parallel& parallel) {
  const int nv = TileVectors(s), rw = TilePixels(s);
  const int64_t rk = nv * kLanes, blocks = CeilDiv(s.k, rk), slice = s.kh * s.kw * s.c * rk;
  const std::vector<float> weights = PackFilterBlocks(filter, s, rk);
  const PaddedInput in = PadInput(input, s, 0, ExtraColumns(s), parallel);
  const int64_t cost = s.ow * s.k * s.kh * s.kw * s.c * 2;
  parallel.run(s.n * s.oh, cost, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / s.oh, oh = row % s.oh;
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t ow0 = 0; ow0 < s.ow; ow0 += rw) {
          TileArgs t;
          t.input = &in.data[in.Index(n, oh * s.stride_h, ow0 * s.stride_w)];
          t.pixel_step = s.stride_w * s.c;
          t.row_step = in.pw * s.c;
          t.weights = &weights[b * slice];
          t.c0 = 0;
          t.c1 = s.c;
          t.output = output + s.OutputIndex(n, oh, ow0, b * rk);
          t.valid_pixels = std::min<int64_t>(rw, s.ow - ow0);
          t.valid_channels = std::min<int64_t>(rk, s.k - b * rk);
          t.accumulate = false;
          RunRegisterTile(rw, nv, s, t);
        }
      }
    }
  });
}

std::string DescribeTileOc(const ConvShape& s, const Machine& m) {
  const int nv = TileVectors(s), rw = TilePixels(s);
  const int64_t rk = nv * kLanes, slice_bytes = s.kh * s.kw * s.c * rk * 4;
  std::ostringstream out;
  out << "tile_oc: register tile RW=" << rw << " pixels x RK=" << rk << " output channels ("
      << rw * nv << " accumulators of " << kVectorRegisters << " registers); weights per channel block "
      << slice_bytes / 1024 << " KiB " << (slice_bytes <= m.l2_bytes / 2 ? "fit" : "do not fit")
      << " in half of L2 (" << m.l2_bytes / 2048 << " KiB)";
  return out.str();
}

}  // namespace tfbench_conv
