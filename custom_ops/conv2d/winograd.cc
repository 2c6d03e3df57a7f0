// `winograd`: F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
// for 3x3 filters at stride 1.
//
// A 2x2 block of outputs needs a 4x4 block d of input.  Direct, it costs 2*2*3*3 = 36 multiplications
// per (input channel, output channel); Winograd's minimal filtering computes it as
//
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A          (.) elementwise over the 4x4 = 16 positions
//
// with 16 multiplications, 2.25x fewer.  The transforms only add, subtract and halve:
//
//        | 1    0    0  |           | 1  0 -1  0 |          | 1  1  1  0 |
//   G =  | 1/2  1/2  1/2|    B^T =  | 0  1  1  0 |   A^T =  | 0  1 -1 -1 |
//        | 1/2 -1/2  1/2|           | 0 -1  1  0 |
//        | 0    0    1  |           | 0  1  0 -1 |
//
// The sum over input channels moves inside the transforms, so the 16 elementwise products become 16
// independent GEMMs, one per position xi of the 4x4 tile, each [tiles x ic] * [ic x oc]:
//
//   U[xi][ic][oc]    = (G g G^T)[xi]  for every filter (once per call, then packed for gemm.h)
//   V[xi][tile][ic]  = (B^T d B)[xi]  for every input tile
//   M[xi]            = V[xi] * U[xi]  gemm.h's blocked GEMM, 16 of them
//   output 2x2 block = A^T M A         for every (tile, oc)
//
// Tiles are processed in chunks (per thread) small enough that a chunk's V and M stay near L2.
// The transforms are written once, as templates over T: a float, or a Vec of channels (simd.h).
#include <algorithm>
#include <sstream>

#include "algorithms.h"
#include "gemm.h"
#include "simd.h"

namespace tfbench_conv {
namespace {

// U = G g G^T: g is 3x3, U is 4x4.
template <typename T>
void FilterTransform(const T g[3][3], T u[4][4]) {
  T gg[4][3];  // G g
  for (int j = 0; j < 3; ++j) {
    gg[0][j] = g[0][j];
    gg[1][j] = Half(g[0][j] + g[1][j] + g[2][j]);
    gg[2][j] = Half(g[0][j] - g[1][j] + g[2][j]);
    gg[3][j] = g[2][j];
  }
  for (int i = 0; i < 4; ++i) {  // (G g) G^T
    u[i][0] = gg[i][0];
    u[i][1] = Half(gg[i][0] + gg[i][1] + gg[i][2]);
    u[i][2] = Half(gg[i][0] - gg[i][1] + gg[i][2]);
    u[i][3] = gg[i][2];
  }
}

// V = B^T d B: d and V are 4x4.
template <typename T>
void InputTransform(const T d[4][4], T v[4][4]) {
  T bd[4][4];  // B^T d
  for (int j = 0; j < 4; ++j) {
    bd[0][j] = d[0][j] - d[2][j];
    bd[1][j] = d[1][j] + d[2][j];
    bd[2][j] = d[2][j] - d[1][j];
    bd[3][j] = d[1][j] - d[3][j];
  }
  for (int i = 0; i < 4; ++i) {  // (B^T d) B
    v[i][0] = bd[i][0] - bd[i][2];
    v[i][1] = bd[i][1] + bd[i][2];
    v[i][2] = bd[i][2] - bd[i][1];
    v[i][3] = bd[i][1] - bd[i][3];
  }
}

// Y = A^T M A: M is 4x4, Y is 2x2.
template <typename T>
void OutputTransform(const T m[4][4], T y[2][2]) {
  T am[2][4];  // A^T M
  for (int j = 0; j < 4; ++j) {
    am[0][j] = m[0][j] + m[1][j] + m[2][j];
    am[1][j] = m[1][j] - m[2][j] - m[3][j];
  }
  for (int i = 0; i < 2; ++i) {  // (A^T M) A
    y[i][0] = am[i][0] + am[i][1] + am[i][2];
    y[i][1] = am[i][1] - am[i][2] - am[i][3];
  }
}

// Loads and stores of either kind, so the loops over channels below are written once.
inline float LoadT(const float* p, float) { return *p; }
inline Vec LoadT(const float* p, Vec) { return Load(p); }
inline void StoreT(float* p, float x) { *p = x; }
inline void StoreT(float* p, Vec x) { Store(p, x); }

// The 16 transformed filters, U[xi] as a [ic x oc] matrix each, packed for the GEMM.
template <typename T>
void FilterTransformChannels(const float* filter, const ConvShape& s, int64_t c, int64_t o, float* u) {
  T g[3][3], t[4][4];
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x) g[y][x] = LoadT(filter + s.FilterIndex(y, x, c, o), T());
  FilterTransform(g, t);
  for (int xi = 0; xi < 16; ++xi) StoreT(u + (xi * s.c + c) * s.k + o, t[xi / 4][xi % 4]);
}

struct Tiles {
  int64_t h = 0, w = 0, total = 0, chunk = 0;
};

Tiles ChooseTiles(const ConvShape& s, const Machine& m, const GemmBlocking& b) {
  Tiles t;
  t.h = CeilDiv(s.oh, 2);
  t.w = CeilDiv(s.ow, 2);
  t.total = s.n * t.h * t.w;
  const int64_t fit = m.l2_bytes / (16 * (s.c + s.k) * 4);  // tiles whose V and M fill L2
  t.chunk = std::max<int64_t>(4 * b.mr, fit / b.mr * b.mr);
  t.chunk = std::max<int64_t>(1, std::min(t.chunk, RoundUp(CeilDiv(t.total, m.threads), b.mr)));
  return t;
}

}  // namespace

void ConvWinograd(const float* input, const float* filter, float* output, const ConvShape& s, const Machine& m,
                  const Parallel& parallel) {
  const GemmBlocking blocking = ChooseGemmBlocking(m);
  const Tiles tiles = ChooseTiles(s, m, blocking);
  // Zero rows and columns past the padding, so the last tiles (which may stick out by one output
  // row or column when oh or ow is odd) read zeros.
  const int64_t ph = s.h + s.pad_top + s.pad_bottom, pw = s.w + s.pad_left + s.pad_right;
  const PaddedInput in = PadInput(input, s, std::max<int64_t>(0, 2 * tiles.h + 2 - ph),
                                  std::max<int64_t>(0, 2 * tiles.w + 2 - pw), parallel);

  // U = G g G^T for every (ic, oc), vectorised over oc; then each U[xi] packed as a GEMM B.
  std::vector<float> u(static_cast<size_t>(16 * s.c * s.k));
  for (int64_t c = 0; c < s.c; ++c) {
    int64_t o = 0;
    for (; o + kLanes <= s.k; o += kLanes) FilterTransformChannels<Vec>(filter, s, c, o, u.data());
    for (; o < s.k; ++o) FilterTransformChannels<float>(filter, s, c, o, u.data());
  }
  std::vector<PackedB> packed;
  for (int xi = 0; xi < 16; ++xi) packed.push_back(PackB(&u[xi * s.c * s.k], s.c, s.k, s.k, blocking));

  const int64_t chunks = CeilDiv(tiles.total, tiles.chunk);
  parallel.run(chunks, tiles.chunk * 16 * s.c * s.k * 2, [&](int64_t begin, int64_t end) {
    std::vector<float> v(static_cast<size_t>(16 * tiles.chunk * s.c));   // V[xi][tile][ic]
    std::vector<float> mm(static_cast<size_t>(16 * tiles.chunk * s.k));  // M[xi][tile][oc]
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t t0 = chunk * tiles.chunk, count = std::min(tiles.chunk, tiles.total - t0);
      // V = B^T d B for each tile of the chunk, vectorised over input channels.
      for (int64_t t = 0; t < count; ++t) {
        const int64_t tile = t0 + t, n = tile / (tiles.h * tiles.w);
        const int64_t ty = tile / tiles.w % tiles.h, tx = tile % tiles.w;
        const float* d0 = &in.data[in.Index(n, 2 * ty, 2 * tx)];
        auto transform = [&](auto kind, int64_t c) {
          using T = decltype(kind);
          T d[4][4], vt[4][4];
          for (int y = 0; y < 4; ++y)
            for (int x = 0; x < 4; ++x) d[y][x] = LoadT(d0 + (y * in.pw + x) * s.c + c, T());
          InputTransform(d, vt);
          for (int xi = 0; xi < 16; ++xi) StoreT(&v[(xi * tiles.chunk + t) * s.c + c], vt[xi / 4][xi % 4]);
        };
        int64_t c = 0;
        for (; c + kLanes <= s.c; c += kLanes) transform(Vec(), c);
        for (; c < s.c; ++c) transform(0.0f, c);
      }
      // M[xi] = V[xi] * U[xi]: the 16 GEMMs that do all the multiplications.
      for (int xi = 0; xi < 16; ++xi) {
        Gemm(count, &v[xi * tiles.chunk * s.c], s.c, packed[xi], &mm[xi * tiles.chunk * s.k], s.k);
      }
      // Y = A^T M A, the 2x2 outputs of each tile (those inside the output), vectorised over oc.
      for (int64_t t = 0; t < count; ++t) {
        const int64_t tile = t0 + t, n = tile / (tiles.h * tiles.w);
        const int64_t ty = tile / tiles.w % tiles.h, tx = tile % tiles.w;
        auto transform = [&](auto kind, int64_t o) {
          using T = decltype(kind);
          T mt[4][4], y[2][2];
          for (int xi = 0; xi < 16; ++xi) mt[xi / 4][xi % 4] = LoadT(&mm[(xi * tiles.chunk + t) * s.k + o], T());
          OutputTransform(mt, y);
          for (int i = 0; i < 2 && 2 * ty + i < s.oh; ++i)
            for (int j = 0; j < 2 && 2 * tx + j < s.ow; ++j)
              StoreT(output + s.OutputIndex(n, 2 * ty + i, 2 * tx + j, o), y[i][j]);
        };
        int64_t o = 0;
        for (; o + kLanes <= s.k; o += kLanes) transform(Vec(), o);
        for (; o < s.k; ++o) transform(0.0f, o);
      }
    }
  });
}

std::string DescribeWinograd(const ConvShape& s, const Machine& m) {
  const GemmBlocking b = ChooseGemmBlocking(m);
  const Tiles t = ChooseTiles(s, m, b);
  std::ostringstream out;
  out << "winograd F(2x2,3x3): " << t.total << " tiles of 4x4 input -> 2x2 output, " << t.chunk
      << " tiles per chunk (V and M " << 16 * t.chunk * (s.c + s.k) * 4 / 1024 << " KiB, L2 " << m.l2_bytes / 1024
      << " KiB); 16 GEMMs per chunk, " << DescribeGemmBlocking(b, m);
  return out.str();
}

}  // namespace tfbench_conv
