// libFuzzer target: the point-cloud reader (PLY ascii / binary_little_endian, .xyz). The first input byte picks
// the extension (even: .ply, odd: .xyz), the rest is the file. Must return a finite float [N, 3] tensor with N > 0
// or throw janus::BadSampleError (the loader skips those); then sampling + normalising must work on the result.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>

#include "fuzz_util.h"
#include "janus/core/error.h"
#include "janus/data/formats.h"
#include "janus/data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string name = (data[0] % 2 == 0) ? "cloud.ply" : "cloud.xyz";
  const std::string path = janus::fuzz::write_scratch(name, reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const auto p = janus::read_point_cloud(path);
    if (p.dim() != 2 || p.size(1) != 3 || p.size(0) < 1 || p.scalar_type() != at::kFloat) std::abort();
    if (!p.isfinite().all().item<bool>()) std::abort();
    std::mt19937_64 rng(size);
    const auto s = janus::normalize_points(janus::sample_points(p, 16, rng));
    if (s.size(0) != 16 || s.size(1) != 3) std::abort();
  } catch (const janus::BadSampleError&) {
  }
  return 0;
}
