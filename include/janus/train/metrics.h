#pragma once
// Training metrics: one Metrics object with three sinks — a live progress line (spdlog), metrics.jsonl, and
// TensorBoard event files. Only the process that constructs it with enabled=true writes (rank 0).
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

namespace janus::train {

// CRC-32C (Castagnoli) and TFRecord's masked form ((crc >> 15 | crc << 17) + 0xa282ead8).
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

// Writes TensorBoard event files: TFRecord framing (u64 length, masked crc of the length, payload, masked crc of
// the payload) around hand-encoded tensorflow.Event protobufs (wall_time=1 double, step=2 int64,
// file_version=3 string, summary=5 {value=1 {tag=1 string, simple_value=2 float}}), field numbers as in
// TensorFlow's event.proto / summary.proto.
class TensorBoardWriter {
 public:
  // Creates <dir>/events.out.tfevents.<unix time>.<host>.<pid> and writes the file_version record.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void scalars(int64_t step, const std::map<std::string, double>& values, double wall_time);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& payload);
  std::string path_;
  std::FILE* file_ = nullptr;
};

struct MetricsOptions {
  std::string run_dir;
  bool enabled = true;  // false on ranks != 0
  bool jsonl = true;
  bool tensorboard = true;
  int64_t total_steps = 0;
};

class Metrics {
 public:
  explicit Metrics(MetricsOptions options);
  ~Metrics();
  // Drops metrics.jsonl records with step > `step` (they are recomputed after a resume).
  void truncate_after(int64_t step);
  // One record: values such as loss parts, lr, grad_norm; `samples_per_s` and eta are derived by the caller.
  void log(int64_t step, const std::map<std::string, double>& values, double samples_per_s, double eta_s);
  // A validation record: values logged as "<prefix><name>" (metrics.jsonl record with "kind": "val", TensorBoard).
  void log_eval(int64_t step, const std::map<std::string, double>& values, const std::string& prefix = "val/");
  void flush();

 private:
  MetricsOptions opt_;
  std::unique_ptr<TensorBoardWriter> tb_;
  std::FILE* jsonl_ = nullptr;
};

// "1h02m03s" style duration.
std::string format_duration(double seconds);

}  // namespace janus::train
