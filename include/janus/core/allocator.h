#pragma once
// Process-wide tuning of glibc malloc for tensor workloads.
//
// LibTorch's CPU allocator takes every tensor buffer from malloc. glibc serves blocks above its mmap threshold
// (128 KiB, raised dynamically up to 32 MiB) with a fresh mmap and gives the top of the heap back to the kernel
// above its trim threshold, so a training step that frees and re-allocates the same activations pays a page fault
// for every 4 KiB page it touches again. On the quickstart's stage 1 (tiny flavour, 32 px, batch 32, 2 cores) that
// was ~57,000 minor faults per second, about 7 % of the CPU time spent in the kernel. tune_malloc_for_tensors()
// fixes the mmap threshold at its maximum (32 MiB) and the trim threshold at 1 GiB, so freed buffers stay in the
// heap for the next step. The cost is that the process keeps its peak heap (up to 1 GiB more than it uses) instead
// of returning it to the kernel.
#include <string>

namespace janus {

struct MallocTuning {
  bool applied = false;
  std::string reason;  // what was done, or why nothing was: a log line
};

// Applies the tuning unless the environment already configures malloc (GLIBC_TUNABLES with a glibc.malloc. key,
// MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_), JANUS_MALLOC_TUNING=0 asks not to, or the C library is not
// glibc. Call it once, early in main() (every janus_* tool does, through janus::cli::run); a library user who
// links libjanus into an application decides for the whole process and calls it (or not) from its own main().
MallocTuning tune_malloc_for_tensors();

}  // namespace janus
