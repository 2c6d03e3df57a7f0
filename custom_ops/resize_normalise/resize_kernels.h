// The resize kernels shared by ResizeNormalise, CropResizeNormalise and DecodeCropResizeNormalise:
// bilinear resize of a box of uint8 HxWx3 pixels, rounded to uint8 levels, then normalised.
// See resize_normalise.cc for how the numbers are kept equal to TensorFlow's own ops.

#ifndef TFBENCH_RESIZE_KERNELS_H_
#define TFBENCH_RESIZE_KERNELS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef __SSE4_1__
#include <smmintrin.h>
#endif

namespace tfbench {

// One output coordinate's two source indices and the weight of the upper one.
struct Tap {
  int64_t lower;
  int64_t upper;
  float lerp;
};

// TensorFlow's compute_interpolation_weights with HalfPixelScaler, float for float.
inline std::vector<Tap> Taps(int64_t out_size, int64_t in_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  std::vector<Tap> taps(out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    const float in = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float in_f = std::floor(in);
    taps[i].lower = std::max(static_cast<int64_t>(in_f), static_cast<int64_t>(0));
    taps[i].upper = std::min(static_cast<int64_t>(std::ceil(in)), in_size - 1);
    taps[i].lerp = in - in_f;
  }
  return taps;
}

// Where one output pixel reads its source row: byte offsets of its two source pixels, and the
// weight of the right one (TensorFlow's xs[x].lower * 3, xs[x].upper * 3, xs[x].lerp).
struct PixelTaps {
  std::vector<int32_t> left, right;
  std::vector<float> lerp;
};

// One source row, interpolated horizontally into out_width x 3 floats in the output's channel
// order: dst = left + (right - left) * lerp per channel, TensorFlow's
// `top_left + (top_right - top_left) * x_lerp`.  With SSE4.1, one pixel is one 4-lane operation
// (its 3 bytes and one spare, widened to floats; the spare lane is overwritten by the next pixel),
// as TensorFlow's own ResizeLine3ChannelsVector does; the same IEEE operations, so the same floats.
inline void Horizontal(const uint8_t* __restrict row, int64_t row_bytes, const PixelTaps& taps,
                       int64_t out_width, bool reverse, float* __restrict dst) {
  auto scalar = [&](int64_t x) {
    for (int c = 0; c < 3; ++c) {
      const int source_channel = reverse ? 2 - c : c;
      const float l = static_cast<float>(row[taps.left[x] + source_channel]);
      const float r = static_cast<float>(row[taps.right[x] + source_channel]);
      dst[x * 3 + c] = l + (r - l) * taps.lerp[x];
    }
  };
#ifdef __SSE4_1__
  const __m128i order = reverse ? _mm_setr_epi8(2, 1, 0, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
                                : _mm_setr_epi8(0, 1, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  auto widen = [&](int32_t offset) {  // 4 bytes at row + offset -> 4 floats, channels reordered
    int32_t bytes;
    std::memcpy(&bytes, row + offset, 4);
    return _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128(bytes), order)));
  };
  for (int64_t x = 0; x < out_width; ++x) {
    // The 4-byte load must stay inside the row, and the 4-float store inside dst.
    if (x == out_width - 1 || taps.right[x] + 4 > row_bytes || taps.left[x] + 4 > row_bytes) {
      scalar(x);
      continue;
    }
    const __m128 l = widen(taps.left[x]);
    const __m128 r = widen(taps.right[x]);
    _mm_storeu_ps(dst + x * 3, _mm_add_ps(l, _mm_mul_ps(_mm_sub_ps(r, l), _mm_set1_ps(taps.lerp[x]))));
  }
#else
  for (int64_t x = 0; x < out_width; ++x) scalar(x);
#endif
}

// One output row: vertical interpolation of two horizontally interpolated rows, round half to
// even, subtract the mean, divide by the std.  A flat loop with no
// aliasing (__restrict) and no branches, so the compiler vectorises it (8 floats per AVX op).
inline void VerticalRoundNormalise(const float* __restrict top, const float* __restrict bottom, float lerp,
                                   const float* __restrict mean, const float* __restrict std, int64_t n,
                                   float* __restrict dst) {
  // Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer, half
  // to even (the default rounding mode): std::nearbyint's result, in two vectorisable additions.
  // No clamp to 0..255 is needed: bilinear weights are in [0, 1), so every value lies between
  // its uint8 neighbours up to float rounding (well inside -0.5 .. 255.5), and -0 rounds to 0.
  const float kRound = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float value = top[i] + (bottom[i] - top[i]) * lerp;
    const float rounded = (value + kRound) - kRound;
    dst[i] = (rounded - mean[i]) / std[i];
  }
}

// One output row as uint8 pixels: the same vertical interpolation and rounding, no mean/std
// (out_type=uint8: the model's first convolution does the normalisation, see
// tfbench/data/fold_normalise.py).  The rounded value is an integer in 0..255 (see above).
inline void VerticalRound(const float* __restrict top, const float* __restrict bottom, float lerp, int64_t n,
                          uint8_t* __restrict dst) {
  const float kRound = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float value = top[i] + (bottom[i] - top[i]) * lerp;
    dst[i] = static_cast<uint8_t>(static_cast<int32_t>((value + kRound) - kRound));
  }
}

// What one resize produces: the output size, the normalisation and the channel order.
struct ResizeParams {
  int64_t out_height;
  int64_t out_width;
  float mean[3];
  float std[3];
  bool reverse;  // output channel c reads input channel 2 - c
};

// Resize the box [top, left, in_height, in_width] of `pixels` (full_height x full_width x 3, rows
// full_width pixels apart) to out_height x out_width x 3: into `out` rounded and normalised, or,
// when `out` is null, into `out_pixels` as rounded uint8 levels.  The box is read in place.
inline void ResizeBox(const uint8_t* pixels, int64_t full_height, int64_t full_width, int64_t top, int64_t left,
                      int64_t in_height, int64_t in_width, const ResizeParams& params, float* out,
                      uint8_t* out_pixels) {
  const int64_t out_height = params.out_height, out_width = params.out_width;
  const std::vector<Tap> ys = Taps(out_height, in_height);
  const std::vector<Tap> xs = Taps(out_width, in_width);
  const int64_t row_values = out_width * 3;

  PixelTaps taps{std::vector<int32_t>(out_width), std::vector<int32_t>(out_width), std::vector<float>(out_width)};
  for (int64_t x = 0; x < out_width; ++x) {
    taps.left[x] = static_cast<int32_t>(xs[x].lower * 3);
    taps.right[x] = static_cast<int32_t>(xs[x].upper * 3);
    taps.lerp[x] = xs[x].lerp;
  }
  // Rows of the box are full_width pixels apart; a 4-byte load may read past the box's right
  // edge (its spare lane is overwritten) but never past the end of the pixels.
  const int64_t stride = full_width * 3;
  const int64_t total_bytes = full_height * stride;
  const uint8_t* origin = pixels + top * stride + left * 3;
  auto horizontal = [&](int64_t r, float* dst) {
    const int64_t start = (top + r) * stride + left * 3;
    Horizontal(origin + r * stride, total_bytes - start, taps, out_width, params.reverse, dst);
  };

  // Two row buffers, keyed by the source row they hold: consecutive output rows share source
  // rows when shrinking by less than 2x, so those rows are interpolated once, not twice.
  std::vector<float> buffer_a(row_values), buffer_b(row_values);
  int64_t held_a = -1, held_b = -1;
  auto row_for = [&](int64_t r, int64_t keep) -> const float* {
    if (held_a == r) return buffer_a.data();
    if (held_b == r) return buffer_b.data();
    if (held_a != keep) {  // overwrite the buffer the other row does not need
      horizontal(r, buffer_a.data());
      held_a = r;
      return buffer_a.data();
    }
    horizontal(r, buffer_b.data());
    held_b = r;
    return buffer_b.data();
  };

  // The mean and std of every position of an output row, so the vertical pass is one flat,
  // vectorisable loop.  Dividing by 1 is exact, so caffe mode is a plain subtraction.
  std::vector<float> mean_row(row_values), std_row(row_values);
  for (int64_t i = 0; i < row_values; ++i) {
    mean_row[i] = params.mean[i % 3];
    std_row[i] = params.std[i % 3];
  }
  for (int64_t y = 0; y < out_height; ++y) {
    const float* upper = row_for(ys[y].lower, ys[y].upper);
    const float* lower = row_for(ys[y].upper, ys[y].lower);
    if (out == nullptr) {
      VerticalRound(upper, lower, ys[y].lerp, row_values, out_pixels + y * row_values);
    } else {
      VerticalRoundNormalise(upper, lower, ys[y].lerp, mean_row.data(), std_row.data(), row_values,
                             out + y * row_values);
    }
  }
}

}  // namespace tfbench

#endif  // TFBENCH_RESIZE_KERNELS_H_
