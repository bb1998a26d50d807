#include "janus/core/threads.h"

#include <dlfcn.h>

#include <ATen/Parallel.h>

namespace janus {

bool serial_intra_op_in_this_thread() {
  // ATen sets each thread's OpenMP thread count when the thread first asks for it (at::get_num_threads, every
  // parallel op); have that happen now, inside libtorch, or it would undo the setting below. (The inline
  // at::internal::lazy_init_num_threads compiled here would mark only libjanus's copy of its per-thread flag.)
  // OpenMP is torch's dependency, not libjanus's: the runtime torch loaded is looked up instead of linked, so
  // libjanus needs no OpenMP flags and works with any ATen backend.
  (void)at::get_num_threads();
  using SetNumThreads = void (*)(int);
  static const auto set_num_threads = reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set_num_threads == nullptr) return false;
  set_num_threads(1);
  return true;
}

}  // namespace janus
