// One vector of floats, whichever extension the library was compiled for (chosen when the op is
// built: tfbench/operators/build.py adds -mavx512f... where /proc/cpuinfo has avx512f, else -mavx2 -mfma,
// else nothing).  The kernels are written once against this small interface:
//   Load / Store (unaligned), Broadcast, Zero, Fma(a, b, c) = a * b + c in one rounding, +, -, * 0.5.
#ifndef TFBENCH_CONV2D_SIMD_H_
#define TFBENCH_CONV2D_SIMD_H_

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace tfbench_conv {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kVectorRegisters = 32;
constexpr const char* kVectorExtension = "avx512";
struct Vec {
  __m512 v;
};
inline Vec Load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void Store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline Vec Broadcast(float x) { return {_mm512_set1_ps(x)}; }
inline Vec Zero() { return {_mm512_setzero_ps()}; }
inline Vec Fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec Half(Vec a) { return {_mm512_mul_ps(a.v, _mm512_set1_ps(0.5f))}; }
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
constexpr int kVectorRegisters = 16;
constexpr const char* kVectorExtension = "avx2+fma";
struct Vec {
  __m256 v;
};
inline Vec Load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void Store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
inline Vec Broadcast(float x) { return {_mm256_set1_ps(x)}; }
inline Vec Zero() { return {_mm256_setzero_ps()}; }
inline Vec Fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec Half(Vec a) { return {_mm256_mul_ps(a.v, _mm256_set1_ps(0.5f))}; }
#else
// Portable: four floats in a struct; the compiler vectorises the little loops where it can.
constexpr int kLanes = 4;
constexpr int kVectorRegisters = 16;
constexpr const char* kVectorExtension = "portable";
struct Vec {
  float v[4];
};
inline Vec Load(const float* p) { return {{p[0], p[1], p[2], p[3]}}; }
inline void Store(float* p, Vec a) {
  for (int i = 0; i < 4; ++i) p[i] = a.v[i];
}
inline Vec Broadcast(float x) { return {{x, x, x, x}}; }
inline Vec Zero() { return Broadcast(0.0f); }
inline Vec Fma(Vec a, Vec b, Vec c) {
  for (int i = 0; i < 4; ++i) c.v[i] += a.v[i] * b.v[i];
  return c;
}
inline Vec operator+(Vec a, Vec b) {
  for (int i = 0; i < 4; ++i) a.v[i] += b.v[i];
  return a;
}
inline Vec operator-(Vec a, Vec b) {
  for (int i = 0; i < 4; ++i) a.v[i] -= b.v[i];
  return a;
}
inline Vec Half(Vec a) {
  for (int i = 0; i < 4; ++i) a.v[i] *= 0.5f;
  return a;
}
#endif

inline float Half(float a) { return a * 0.5f; }

}  // namespace tfbench_conv

#endif  // TFBENCH_CONV2D_SIMD_H_
