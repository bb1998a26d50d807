#pragma once
// janus::train::StepProfiler: records chosen training steps with the torch (Kineto) profiler, like torchtitan's
// `profiling` options. train.profile_steps: [first, count] records the 0-based steps first .. first+count-1 and
// writes, under <run_dir>/profile/:
//   trace.json  Chrome trace (open in https://ui.perfetto.dev or chrome://tracing)
//   ops.txt     operators by self time on the recording threads (calls, self ms, total ms, share of the steps)
// and logs the ten most expensive operators. Off (empty) by default: the profiler costs time per operator.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace janus::train {

// One recorded operator call: the thread it ran on, its wall-clock interval and its name.
struct OpEvent {
  uint64_t thread = 0;
  uint64_t start_ns = 0, end_ns = 0;
  std::string name;
};

// Operators aggregated by name. Self time is a call's time minus that of the calls nested in it on the same thread
// (aten::linear -> aten::addmm -> ...), so self times add up to the recorded threads' busy time.
struct OpStat {
  std::string name;
  int64_t calls = 0;
  double self_ms = 0, total_ms = 0;
};

// Aggregates events by name, most self time first (ties by name). Events may come in any order.
std::vector<OpStat> summarize_op_events(std::vector<OpEvent> events);

// The table ops.txt holds: one line per operator, `limit` lines at most (0 = all). `span_ms` is the recorded
// steps' wall time, for the share column.
std::string format_op_table(const std::vector<OpStat>& stats, double span_ms, std::size_t limit = 0);

class StepProfiler {
 public:
  // `steps` is train.profile_steps (empty = off; else [first >= 0, count >= 1], checked here with a one-line
  // error). Only the main rank records (`enabled` false elsewhere). `cuda` adds the CUDA activity; `shapes`
  // (train.profile_shapes) keys the table by operator and input shapes, e.g. aten::mm[3072,512][512,128].
  StepProfiler(const std::vector<int64_t>& steps, std::string run_dir, bool enabled, bool cuda, bool shapes = false);
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  // Around each optimizer step; `step` is its 0-based index. Starts before `first`, stops and writes after the
  // last profiled step (or when the run ends inside the window: finish()).
  void before_step(int64_t step);
  void after_step(int64_t step);
  void finish();
  bool active() const { return active_; }

 private:
  void stop_and_write();
  int64_t first_ = -1, count_ = 0;
  std::string dir_;
  bool enabled_ = false, cuda_ = false, shapes_ = false, active_ = false, done_ = false;
  uint64_t t0_ns_ = 0;
};

}  // namespace janus::train
