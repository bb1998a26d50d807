#pragma once
// Intra-op parallelism of helper threads.
//
// With ATen's OpenMP backend (the PyPI torch wheels), an ATen op above its grain size (32768 elements) that runs on
// a thread other than the training loop's starts a second OpenMP team of at::get_num_threads() threads for that
// thread. Once libgomp manages more threads than there are cores, it stops spin-waiting between parallel regions:
// every parallel region of the training step then puts its threads to sleep and wakes them with futex calls. The
// data loader's epoch shuffle (at::randperm over the dataset) crossed that size at 32768 samples: on the 2-core
// machine a quickstart stage-3 step on 20000 Shapes images (80000 captions) made 5200 context switches per second
// instead of 31, used 1.38 instead of 1.93 cores, and ran at 36 instead of 51 samples/s (docs/training.md,
// session 11).
namespace janus {

// Makes ATen ops called from the calling thread run on that thread alone (OpenMP's thread count of the calling
// thread = 1); every other thread keeps its intra-op parallelism. For helper threads that run small tensor ops
// beside a training or serving loop (the DataLoader's workers call it). Returns false, and does nothing, when the
// process has no OpenMP runtime (ATen built with another parallel backend).
bool serial_intra_op_in_this_thread();

}  // namespace janus
