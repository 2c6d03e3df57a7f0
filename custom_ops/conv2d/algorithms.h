// The algorithms of TfbenchConv2D: one entry point each, one source file each.
//
//   loops          loops.cc           the seven-deep loop nest (the reference)
//   tile_oc        tile_oc.cc         output channels blocked to a register tile
//   tile_plane     tile_plane.cc      the output plane tiled so each tile's input window stays in L2
//   tile_ic        tile_ic.cc         input channels blocked so a block of weights stays in L1
//   im2col         im2col.cc          image patches to a matrix, times gemm.cc's blocked GEMM
//   winograd       winograd.cc        F(2x2, 3x3): 3x3 filters, stride 1
//
// Each Conv* writes the whole output (no need to zero it first); each Describe* says which tile
// sizes the schedule picks for a shape on this machine, and which data each tile keeps where.
#ifndef TFBENCH_CONV2D_ALGORITHMS_H_
#define TFBENCH_CONV2D_ALGORITHMS_H_

#include <string>

#include "conv_shape.h"

namespace tfbench_conv {

#define TFBENCH_CONV_ALGORITHM(Name)                                                                  \
  void Conv##Name(const float* input, const float* filter, float* output, const ConvShape& s,          \
                  const Machine& m, const Parallel& parallel);                                         \
  std::string Describe##Name(const ConvShape& s, const Machine& m);

TFBENCH_CONV_ALGORITHM(Loops)
TFBENCH_CONV_ALGORITHM(TileOc)
TFBENCH_CONV_ALGORITHM(TilePlane)
TFBENCH_CONV_ALGORITHM(TileIc)
TFBENCH_CONV_ALGORITHM(Im2col)
TFBENCH_CONV_ALGORITHM(Winograd)

#undef TFBENCH_CONV_ALGORITHM

}  // namespace tfbench_conv

#endif  // TFBENCH_CONV2D_ALGORITHMS_H_
