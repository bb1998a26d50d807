#pragma once
// Threaded, prefetching, deterministic data loader.
// - Order: per epoch, torch.utils.data.DistributedSampler semantics: a permutation of [0, N) from
//   torch.randperm with a generator seeded seed + epoch (identity when shuffle is off), padded by wrapping to a
//   multiple of world_size (or truncated with drop_last), then rank r takes positions r, r+W, r+2W, ...
// - Batches: consecutive runs of batch_size positions of the rank's list; a batch depends only on
//   (seed, epoch, position), so the number of workers never changes what is produced.
// - Cursor: (epoch, position of the next batch). Saving it and constructing a loader from it continues
//   exactly where the saved run would have.
// - Bad samples (BadSampleError) are skipped with a warning naming the file and counted; the loader throws
//   InputError when bad / seen > max_bad_fraction (checked once at least min_check samples were seen).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>

#include "janus/data/sample.h"
#include "janus/data/tokenizer.h"
#include "janus/io/safetensors.h"

namespace janus {

// Indices of one rank for one epoch (DistributedSampler semantics).
std::vector<int64_t> distributed_indices(int64_t dataset_size, int64_t rank, int64_t world_size, bool shuffle,
                                         uint64_t seed, int64_t epoch, bool drop_last);

struct LoaderCursor {
  int64_t epoch = 0;
  int64_t position = 0;  // index into the rank's epoch list of the next batch's first sample

  std::string to_json() const;
  static LoaderCursor from_json(const std::string& text);  // InputError on malformed text
  TensorMap to_tensors(const std::string& prefix = "data.cursor") const;
  static LoaderCursor from_tensors(const TensorMap& m, const std::string& prefix = "data.cursor");
  bool operator==(const LoaderCursor& o) const { return epoch == o.epoch && position == o.position; }
};

struct LoaderOptions {
  int64_t batch_size = 32;
  int64_t num_workers = 2;  // 0: build batches on the calling thread
  int64_t prefetch = 4;     // batches in flight per worker
  bool shuffle = true;
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  bool drop_last = false;        // sampler: drop the tail instead of padding by wrapping
  bool drop_last_batch = false;  // loader: drop a final partial batch
  double max_bad_fraction = 0.05;
  int64_t min_check = 32;                      // samples seen before max_bad_fraction is enforced (or epoch end)
  int64_t max_text_len = 0;                    // tokenizer: truncate to this many tokens (0: no limit)
  std::shared_ptr<const Tokenizer> tokenizer;  // fills Sample::token_ids from Sample::text when set
};

// A collated batch. Tensors are undefined when no sample has that field.
struct Batch {
  std::vector<Sample> samples;
  int64_t epoch = 0;
  int64_t position = 0;       // position of the first sample in the rank's epoch list
  int64_t skipped = 0;        // bad samples dropped from this batch
  at::Tensor images;          // [B, 3, H, W] (first image of each sample)
  at::Tensor images2;         // [B, 3, H, W] (second image, NLVR2)
  at::Tensor tokens;          // int64 [B, L]
  at::Tensor attention_mask;  // int64 [B, L]
  at::Tensor labels;          // int64 [B]
  at::Tensor answer_ids;      // int64 [B]
  at::Tensor points;          // [B, N, 3]
  at::Tensor frames;          // [B, T, 3, H, W]
  int64_t size() const { return static_cast<int64_t>(samples.size()); }
};

// Stacks the samples' fields (throws InputError when image sizes differ).
Batch collate(std::vector<Sample> samples);

class DataLoader {
 public:
  DataLoader(DatasetPtr dataset, LoaderOptions opts, LoaderCursor start = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch; crosses epochs forever (check Batch::epoch). Rethrows worker errors.
  Batch next();
  // The cursor after the last batch returned by next() (i.e. where a resumed loader starts).
  LoaderCursor cursor() const { return cursor_; }
  int64_t batches_per_epoch() const;
  int64_t samples_per_epoch() const { return per_rank_; }
  int64_t bad_samples() const { return bad_.load(); }
  int64_t seen_samples() const { return seen_.load(); }

 private:
  struct Job {
    int64_t epoch;
    int64_t position;
  };
  Batch build(const Job& job);
  Job job_after(const Job& j) const;
  void worker_loop();
  void stop();

  DatasetPtr dataset_;
  LoaderOptions opts_;
  LoaderCursor cursor_;
  int64_t per_rank_ = 0;
  std::atomic<int64_t> bad_{0};
  std::atomic<int64_t> seen_{0};

  // Epoch index lists, cached (a few epochs at most in flight).
  mutable std::mutex order_mu_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;
  std::shared_ptr<const std::vector<int64_t>> order(int64_t epoch);

  // Scheduling: job k (k-th batch from the start cursor) is built by any worker; results are consumed in order.
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  int64_t next_job_ = 0;  // next job number to hand out
  Job next_job_pos_{0, 0};
  int64_t consumed_ = 0;  // job number of the next batch next() returns
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  bool stopping_ = false;
};

}  // namespace janus
