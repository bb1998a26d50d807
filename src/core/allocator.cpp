#include "janus/core/allocator.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace janus {
namespace {
bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}
}  // namespace

MallocTuning tune_malloc_for_tensors() {
  MallocTuning t;
  const char* opt = std::getenv("JANUS_MALLOC_TUNING");
  if (opt != nullptr && std::strcmp(opt, "0") == 0) {
    t.reason = "malloc tuning off (JANUS_MALLOC_TUNING=0)";
    return t;
  }
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if ((tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) || env_set("MALLOC_MMAP_THRESHOLD_") ||
      env_set("MALLOC_TRIM_THRESHOLD_")) {
    t.reason = "malloc tuning left to the environment (GLIBC_TUNABLES / MALLOC_*_THRESHOLD_ set)";
    return t;
  }
#if defined(__GLIBC__)
  constexpr int kMmapThreshold = 32 << 20;  // glibc's maximum on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
  constexpr int kTrimThreshold = 1 << 30;
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1) {
    t.applied = true;
    t.reason = "malloc tuned for tensors: mmap threshold 32 MiB, trim threshold 1 GiB (JANUS_MALLOC_TUNING=0 to skip)";
  } else {
    t.reason = "malloc tuning refused by mallopt; glibc defaults kept";
  }
#else
  t.reason = "malloc tuning skipped: not glibc";
#endif
  return t;
}

}  // namespace janus
