// janus_bench_data: images/s through decode (OpenCV) + augment (resize short side, random crop, flip,
// normalise) + collate in the threaded DataLoader, with 1 and 2 worker threads. Baseline: 1 worker.
// Usage: janus_bench_data [num_images=512] [side=256] [epochs=2]
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include <unistd.h>

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "janus/core/fs.h"
#include "janus/data/formats.h"
#include "janus/data/image.h"
#include "janus/data/loader.h"
#include "janus/data/shapes.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 512;
  const int64_t side = argc > 2 ? std::atoll(argv[2]) : 256;
  const int64_t epochs = argc > 3 ? std::atoll(argv[3]) : 2;
  at::set_num_threads(1);
  const fs::path dir = fs::temp_directory_path() / fmt::format("janus_bench_data_{}", ::getpid());
  for (int64_t i = 0; i < n; ++i) {
    const auto img = janus::render_shapes_scene(janus::make_shapes_scene(0, "bench", i, side));
    janus::write_image_file((dir / (i % 2 ? "a" : "b") / fmt::format("{:05d}.jpg", i)).string(), img);
  }
  janus::DatasetOptions o;
  o.transform.resize_short = side / 2;
  o.transform.crop = side / 2 - side / 16;
  o.transform.random_crop = true;
  o.transform.random_flip = true;
  auto ds = janus::make_image_folder_dataset(dir.string(), o);
  fmt::print("decode+augment+collate: {} JPEG images {}x{} -> resize {} random crop {} flip, batch 32, {} epochs\n", n,
             side, side, o.transform.resize_short, o.transform.crop, epochs);
  double base = 0;
  for (int64_t workers : {0, 1, 2}) {
    janus::LoaderOptions lo;
    lo.batch_size = 32;
    lo.num_workers = workers;
    lo.prefetch = 4;
    janus::DataLoader l(ds, lo);
    l.next();  // warm-up (thread start, first decode)
    const auto t0 = std::chrono::steady_clock::now();
    int64_t images = 0;
    const int64_t batches = epochs * l.batches_per_epoch();
    for (int64_t b = 0; b < batches; ++b) images += l.next().size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ips = images / s;
    if (workers == 1) base = ips;
    fmt::print("  {} worker thread(s){}: {:8.0f} images/s{}\n", workers, workers == 0 ? " (inline)" : "", ips,
               workers == 2 && base > 0 ? fmt::format("  ({:.2f}x of 1 thread)", ips / base) : "");
  }
  janus::remove_tree(dir.string());
  return 0;
}
