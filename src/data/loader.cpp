#include "janus/data/loader.h"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/threads.h"

namespace janus {

std::vector<int64_t> distributed_indices(int64_t n, int64_t rank, int64_t world, bool shuffle, uint64_t seed,
                                         int64_t epoch, bool drop_last) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "distributed_indices: rank ", rank, " not in [0, ", world, ")");
  if (n <= 0) return {};
  std::vector<int64_t> idx(static_cast<size_t>(n));
  if (shuffle) {
    // torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)), as DistributedSampler does.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + static_cast<uint64_t>(epoch));
    auto perm = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
    std::memcpy(idx.data(), perm.data_ptr<int64_t>(), static_cast<size_t>(n) * sizeof(int64_t));
  } else {
    std::iota(idx.begin(), idx.end(), 0);
  }
  int64_t num_samples;
  if (drop_last && n % world != 0) {
    num_samples = (n - world + world - 1) / world;  // ceil((n - world) / world)
  } else {
    num_samples = (n + world - 1) / world;
  }
  const int64_t total = num_samples * world;
  if (!drop_last) {
    const int64_t pad = total - n;
    for (int64_t i = 0; i < pad; ++i) idx.push_back(idx[static_cast<size_t>(i % n)]);
  } else {
    idx.resize(static_cast<size_t>(total));
  }
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(num_samples));
  for (int64_t i = rank; i < total; i += world) out.push_back(idx[static_cast<size_t>(i)]);
  return out;
}

std::string LoaderCursor::to_json() const { return nlohmann::json{{"epoch", epoch}, {"position", position}}.dump(); }

LoaderCursor LoaderCursor::from_json(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    LoaderCursor c;
    c.epoch = j.at("epoch").get<int64_t>();
    c.position = j.at("position").get<int64_t>();
    if (c.epoch < 0 || c.position < 0) throw InputError("negative epoch or position");
    return c;
  } catch (const std::exception& e) {
    throw InputError(
        fmt::format("data cursor: expected {{\"epoch\": int >= 0, \"position\": int >= 0}}: {}", e.what()));
  }
}

TensorMap LoaderCursor::to_tensors(const std::string& prefix) const {
  TensorMap m;
  m[prefix] = at::tensor(std::vector<int64_t>{epoch, position}, at::kLong);
  return m;
}

LoaderCursor LoaderCursor::from_tensors(const TensorMap& m, const std::string& prefix) {
  auto it = m.find(prefix);
  if (it == m.end()) throw InputError(fmt::format("data cursor: tensor \"{}\" missing", prefix));
  const auto& t = it->second;
  if (t.scalar_type() != at::kLong || t.dim() != 1 || t.numel() != 2) {
    throw InputError(fmt::format("data cursor: tensor \"{}\" must be int64 [2], got {} {}", prefix,
                                 c10::toString(t.scalar_type()), c10::str(t.sizes())));
  }
  LoaderCursor c;
  c.epoch = t[0].item<int64_t>();
  c.position = t[1].item<int64_t>();
  if (c.epoch < 0 || c.position < 0) throw InputError("data cursor: negative epoch or position");
  return c;
}

Batch collate(std::vector<Sample> samples) {
  Batch b;
  b.samples = std::move(samples);
  const auto& s = b.samples;
  if (s.empty()) return b;
  auto all = [&](auto pred) { return std::all_of(s.begin(), s.end(), pred); };
  auto any = [&](auto pred) { return std::any_of(s.begin(), s.end(), pred); };
  auto stack_checked = [&](std::vector<at::Tensor> ts, const char* what) {
    for (size_t i = 1; i < ts.size(); ++i) {
      if (!ts[i].sizes().equals(ts[0].sizes())) {
        throw InputError(fmt::format("collate: {} of sample {} has shape {}, sample {} has {} (set a crop size)", what,
                                     s[i].id, c10::str(ts[i].sizes()), s[0].id, c10::str(ts[0].sizes())));
      }
    }
    return at::stack(ts);
  };
  if (all([](const Sample& x) { return !x.images.empty(); })) {
    std::vector<at::Tensor> ts;
    for (const auto& x : s) ts.push_back(x.images[0]);
    b.images = stack_checked(ts, "image");
    if (all([](const Sample& x) { return x.images.size() >= 2; })) {
      ts.clear();
      for (const auto& x : s) ts.push_back(x.images[1]);
      b.images2 = stack_checked(ts, "second image");
    }
  }
  if (any([](const Sample& x) { return !x.token_ids.empty(); })) {
    std::vector<std::vector<int64_t>> seqs;
    for (const auto& x : s) seqs.push_back(x.token_ids);
    auto tb = pad_tokens(seqs);
    b.tokens = tb.ids;
    b.attention_mask = tb.attention_mask;
  }
  if (any([](const Sample& x) { return x.label >= 0; })) {
    std::vector<int64_t> v;
    for (const auto& x : s) v.push_back(x.label);
    b.labels = at::tensor(v, at::kLong);
  }
  if (any([](const Sample& x) { return !x.answer.empty(); })) {
    std::vector<int64_t> v;
    for (const auto& x : s) v.push_back(x.answer_id);
    b.answer_ids = at::tensor(v, at::kLong);
  }
  if (all([](const Sample& x) { return x.points.defined(); })) {
    std::vector<at::Tensor> ts;
    for (const auto& x : s) ts.push_back(x.points);
    b.points = stack_checked(ts, "point cloud");
  }
  if (all([](const Sample& x) { return x.frames.defined(); })) {
    std::vector<at::Tensor> ts;
    for (const auto& x : s) ts.push_back(x.frames);
    b.frames = stack_checked(ts, "video");
  }
  return b;
}

namespace {
uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
}  // namespace

DataLoader::DataLoader(DatasetPtr dataset, LoaderOptions opts, LoaderCursor start)
    : dataset_(std::move(dataset)), opts_(std::move(opts)), cursor_(start) {
  if (!dataset_) throw InputError("DataLoader: no dataset");
  if (opts_.batch_size < 1) throw InputError(fmt::format("DataLoader: batch_size {} < 1", opts_.batch_size));
  if (opts_.world_size < 1 || opts_.rank < 0 || opts_.rank >= opts_.world_size) {
    throw InputError(fmt::format("DataLoader: rank {} not in [0, {})", opts_.rank, opts_.world_size));
  }
  if (opts_.num_workers < 0 || opts_.prefetch < 1) throw InputError("DataLoader: num_workers >= 0, prefetch >= 1");
  const int64_t n = dataset_->size();
  if (n <= 0) throw InputError(fmt::format("DataLoader: dataset {} is empty", dataset_->name()));
  per_rank_ = static_cast<int64_t>(distributed_indices(n, 0, opts_.world_size, false, 0, 0, opts_.drop_last).size());
  if (per_rank_ == 0)
    throw InputError(fmt::format("DataLoader: {} samples leave rank {} nothing (drop_last)", n, opts_.rank));
  if (opts_.drop_last_batch && per_rank_ < opts_.batch_size) {
    throw InputError(fmt::format("DataLoader: {} samples per rank < batch_size {} with drop_last_batch", per_rank_,
                                 opts_.batch_size));
  }
  // A cursor at (or past) the end of an epoch starts the next one.
  const bool tail =
      opts_.drop_last_batch ? cursor_.position + opts_.batch_size > per_rank_ : cursor_.position >= per_rank_;
  if (tail) cursor_ = {cursor_.epoch + 1, 0};
  next_job_pos_ = {cursor_.epoch, cursor_.position};
  for (int64_t i = 0; i < opts_.num_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

DataLoader::~DataLoader() { stop(); }

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

int64_t DataLoader::batches_per_epoch() const {
  return opts_.drop_last_batch ? per_rank_ / opts_.batch_size : (per_rank_ + opts_.batch_size - 1) / opts_.batch_size;
}

DataLoader::Job DataLoader::job_after(const Job& j) const {
  Job n{j.epoch, j.position + opts_.batch_size};
  const bool tail = opts_.drop_last_batch ? n.position + opts_.batch_size > per_rank_ : n.position >= per_rank_;
  if (tail) n = {j.epoch + 1, 0};
  return n;
}

std::shared_ptr<const std::vector<int64_t>> DataLoader::order(int64_t epoch) {
  std::lock_guard<std::mutex> lock(order_mu_);
  auto it = orders_.find(epoch);
  if (it != orders_.end()) return it->second;
  auto v = std::make_shared<const std::vector<int64_t>>(distributed_indices(
      dataset_->size(), opts_.rank, opts_.world_size, opts_.shuffle, opts_.seed, epoch, opts_.drop_last));
  orders_[epoch] = v;
  while (orders_.size() > 4) orders_.erase(orders_.begin());  // only neighbouring epochs are in flight
  return v;
}

Batch DataLoader::build(const Job& job) {
  const auto ord = order(job.epoch);
  const int64_t end = std::min<int64_t>(job.position + opts_.batch_size, per_rank_);
  std::vector<Sample> samples;
  int64_t skipped = 0;
  for (int64_t p = job.position; p < end; ++p) {
    const int64_t idx = (*ord)[static_cast<size_t>(p)];
    const uint64_t s =
        splitmix(splitmix(splitmix(opts_.seed) ^ static_cast<uint64_t>(job.epoch)) ^ static_cast<uint64_t>(idx));
    try {
      Sample x = dataset_->get(idx, s);
      if (opts_.tokenizer && x.token_ids.empty() && !x.text.empty()) {
        x.token_ids = opts_.tokenizer->encode(x.text, true, true, opts_.max_text_len);
      }
      samples.push_back(std::move(x));
    } catch (const BadSampleError& e) {
      spdlog::warn("skipping sample {} of {}: {}", idx, dataset_->name(), e.what());
      ++skipped;
    }
  }
  Batch b = collate(std::move(samples));
  b.epoch = job.epoch;
  b.position = job.position;
  b.skipped = skipped;
  return b;
}

void DataLoader::worker_loop() {
  // Samples, collation and the epoch shuffle run on this thread only: an OpenMP team started from here would make
  // libgomp put the training loop's threads to sleep between parallel regions (include/janus/core/threads.h).
  serial_intra_op_in_this_thread();
  const int64_t window = opts_.num_workers * opts_.prefetch;
  for (;;) {
    int64_t k;
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || next_job_ - consumed_ < window; });
      if (stopping_) return;
      k = next_job_++;
      job = next_job_pos_;
      next_job_pos_ = job_after(job);
    }
    Batch b;
    std::exception_ptr err;
    try {
      b = build(job);
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (err) {
        if (!error_) error_ = err;
        ready_[k] = Batch{};
        ready_[k].position = -1;  // marks the failed job
      } else {
        ready_[k] = std::move(b);
      }
    }
    cv_.notify_all();
  }
}

Batch DataLoader::next() {
  Batch b;
  if (opts_.num_workers == 0) {
    b = build(Job{cursor_.epoch, cursor_.position});
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return ready_.count(consumed_) > 0; });
    auto it = ready_.find(consumed_);
    b = std::move(it->second);
    ready_.erase(it);
    if (b.position < 0) {
      auto e = error_;
      lock.unlock();
      std::rethrow_exception(e);
    }
    ++consumed_;
    lock.unlock();
    cv_.notify_all();
  }
  const Job after = job_after(Job{b.epoch, b.position});
  cursor_ = {after.epoch, after.position};
  seen_ += b.size() + b.skipped;
  bad_ += b.skipped;
  const bool epoch_end = after.epoch != b.epoch;
  if ((seen_ >= opts_.min_check || epoch_end) &&
      static_cast<double>(bad_) > opts_.max_bad_fraction * static_cast<double>(seen_)) {
    throw InputError(
        fmt::format("data: {} of {} samples of {} were unreadable, more than data.max_bad_fraction = {} "
                    "(see the warnings above for the files)",
                    bad_.load(), seen_.load(), dataset_->name(), opts_.max_bad_fraction));
  }
  return b;
}

}  // namespace janus
