// This machine's caches, read from sysfs, and the zero-padded input copy the tiled kernels read.
//
// Linux describes each cache of a CPU in /sys/devices/system/cpu/cpu0/cache/index<i>/: `level`
// (1, 2, 3), `type` (Data, Instruction, Unified) and `size` ("48K", "1280K", "48M").  The tile sizes
// of every schedule are derived from these three numbers (L1 data, L2, L3); where sysfs is missing
// (a container without /sys, another OS) conservative defaults are used and the description says so.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "conv_shape.h"
#include "simd.h"

namespace tfbench_conv {
namespace {

bool ReadLine(const std::string& path, std::string* out) {
  std::ifstream file(path);
  return static_cast<bool>(std::getline(file, *out));
}

// "48K" -> 49152, "1280K" -> 1310720, "48M" -> 50331648; 0 if unreadable.
int64_t ParseSize(const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || value <= 0) return 0;
  const char unit = *end;
  if (unit == 'K' || unit == 'k') return value * 1024;
  if (unit == 'M' || unit == 'm') return value * 1024 * 1024;
  if (unit == 'G' || unit == 'g') return value * 1024 * 1024 * 1024;
  return value;
}

Machine ReadSysfs() {
  Machine m;
  bool found_any = false;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    std::string level, type, size;
    if (!ReadLine(dir + "level", &level) || !ReadLine(dir + "type", &type) || !ReadLine(dir + "size", &size)) {
      continue;
    }
    const int64_t bytes = ParseSize(size);
    if (bytes == 0 || type == "Instruction") continue;
    found_any = true;
    if (level == "1") m.l1d_bytes = bytes;
    if (level == "2") m.l2_bytes = bytes;
    if (level == "3") m.l3_bytes = bytes;
  }
  if (found_any) m.cache_source = "sysfs";
  return m;
}

}  // namespace

Machine ReadMachine(int threads) {
  static const Machine cached = ReadSysfs();  // sysfs is read once per process
  Machine m = cached;
  m.threads = threads < 1 ? 1 : threads;
  return m;
}

std::string DescribeMachine(const Machine& m) {
  std::ostringstream out;
  out << "vector extension " << kVectorExtension << " (" << kLanes << " floats per vector, " << kVectorRegisters
      << " vector registers); caches from " << m.cache_source << ": L1d " << m.l1d_bytes / 1024 << " KiB, L2 "
      << m.l2_bytes / 1024 << " KiB, L3 " << m.l3_bytes / 1024 << " KiB; " << m.threads << " threads";
  return out.str();
}

PaddedInput PadInput(const float* input, const ConvShape& s, int64_t extra_rows, int64_t extra_cols,
                     const Parallel& parallel) {
  PaddedInput p;
  p.ph = s.h + s.pad_top + s.pad_bottom + extra_rows;
  p.pw = s.w + s.pad_left + s.pad_right + extra_cols;
  p.c = s.c;
  p.data.assign(static_cast<size_t>(s.n * p.ph * p.pw * p.c), 0.0f);
  // One unit of work: one input row copied into its place inside the zeros.
  parallel.run(s.n * s.h, s.w * s.c, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.h, y = row % s.h;
      std::memcpy(&p.data[p.Index(b, y + s.pad_top, s.pad_left)], input + s.InputIndex(b, y, 0, 0),
                  sizeof(float) * s.w * s.c);
    }
  });
  return p;
}

}  // namespace tfbench_conv
