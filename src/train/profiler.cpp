#include "janus/train/profiler.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include "janus/core/error.h"

namespace janus::train {

namespace fs = std::filesystem;
namespace tpi = torch::profiler::impl;
namespace tap = torch::autograd::profiler;

std::vector<OpStat> summarize_op_events(std::vector<OpEvent> events) {
  // Per thread, by start time (an enclosing call first when two start together); a stack of the open calls gives
  // each call its parent, whose self time loses the child's duration.
  std::sort(events.begin(), events.end(), [](const OpEvent& a, const OpEvent& b) {
    if (a.thread != b.thread) return a.thread < b.thread;
    if (a.start_ns != b.start_ns) return a.start_ns < b.start_ns;
    return a.end_ns > b.end_ns;
  });
  std::map<std::string, OpStat> by_name;
  std::vector<std::pair<const OpEvent*, OpStat*>> open;
  uint64_t thread = 0;
  for (const auto& e : events) {
    if (e.end_ns < e.start_ns) continue;  // a call still running when the recording stopped
    if (open.empty() || e.thread != thread) {
      open.clear();
      thread = e.thread;
    }
    while (!open.empty() && open.back().first->end_ns <= e.start_ns) open.pop_back();
    const double ms = static_cast<double>(e.end_ns - e.start_ns) * 1e-6;
    auto& s = by_name[e.name];
    s.name = e.name;
    ++s.calls;
    s.total_ms += ms;
    s.self_ms += ms;
    if (!open.empty()) open.back().second->self_ms -= ms;
    open.emplace_back(&e, &s);
  }
  std::vector<OpStat> out;
  out.reserve(by_name.size());
  for (auto& [name, s] : by_name) out.push_back(std::move(s));
  std::sort(out.begin(), out.end(), [](const OpStat& a, const OpStat& b) {
    return a.self_ms != b.self_ms ? a.self_ms > b.self_ms : a.name < b.name;
  });
  return out;
}

std::string format_op_table(const std::vector<OpStat>& stats, double span_ms, std::size_t limit) {
  const std::size_t n = limit == 0 ? stats.size() : std::min(limit, stats.size());
  constexpr std::size_t kMaxName = 120;
  std::size_t width = 8;
  for (std::size_t i = 0; i < n; ++i) width = std::max(width, std::min(kMaxName, stats[i].name.size()));
  std::string s =
      fmt::format("{:<{}} {:>8} {:>11} {:>11} {:>7}\n", "operator", width, "calls", "self ms", "total ms", "self %");
  for (std::size_t i = 0; i < n; ++i) {
    const auto& o = stats[i];
    const auto name = o.name.size() > kMaxName ? o.name.substr(0, kMaxName - 3) + "..." : o.name;
    s += fmt::format("{:<{}} {:>8} {:>11.2f} {:>11.2f} {:>6.1f}%\n", name, width, o.calls, o.self_ms, o.total_ms,
                     span_ms > 0 ? 100.0 * o.self_ms / span_ms : 0.0);
  }
  return s;
}

namespace {
uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}
tpi::ProfilerConfig profiler_config(bool shapes) {
  return tpi::ProfilerConfig(tpi::ProfilerState::KINETO, /*report_input_shapes=*/shapes, /*profile_memory=*/false,
                             /*with_stack=*/false, /*with_flops=*/false, /*with_modules=*/false);
}
}  // namespace

StepProfiler::StepProfiler(const std::vector<int64_t>& steps, std::string run_dir, bool enabled, bool cuda, bool shapes)
    : dir_((fs::path(std::move(run_dir)) / "profile").string()), enabled_(enabled), cuda_(cuda), shapes_(shapes) {
  if (steps.empty()) {
    enabled_ = false;
    return;
  }
  if (steps.size() != 2 || steps[0] < 0 || steps[1] < 1) {
    throw_input_error("train.profile_steps must be [first step >= 0, count >= 1], got [{}]", fmt::join(steps, ", "));
  }
  first_ = steps[0];
  count_ = steps[1];
}

StepProfiler::~StepProfiler() {
  if (!active_) return;
  try {
    tap::disableProfiler();  // an exception left the window open: stop recording, write nothing
  } catch (...) {
  }
}

void StepProfiler::before_step(int64_t step) {
  if (!enabled_ || active_ || done_ || step < first_ || step >= first_ + count_) return;
  std::set<tpi::ActivityType> acts{tpi::ActivityType::CPU};
  if (cuda_) acts.insert(tpi::ActivityType::CUDA);
  const auto cfg = profiler_config(shapes_);
  tap::prepareProfiler(cfg, acts);
  tap::enableProfiler(cfg, acts);
  active_ = true;
  t0_ns_ = now_ns();
  spdlog::info("profiler: recording steps {}..{}", step, first_ + count_ - 1);
}

void StepProfiler::after_step(int64_t step) {
  if (active_ && step >= first_ + count_ - 1) stop_and_write();
}

void StepProfiler::finish() {
  if (active_) stop_and_write();
}

void StepProfiler::stop_and_write() {
  const double span_ms = static_cast<double>(now_ns() - t0_ns_) * 1e-6;
  auto result = tap::disableProfiler();
  active_ = false;
  done_ = true;
  fs::create_directories(dir_);
  const auto trace = (fs::path(dir_) / "trace.json").string();
  result->save(trace);
  std::vector<OpEvent> events;
  events.reserve(result->events().size());
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CPU) continue;  // kernels on a GPU have their own timeline
    std::string nm = e.name();
    if (shapes_ && e.hasShapes()) {  // e.g. aten::mm[3072,512][512,128]
      for (const auto& sh : e.shapes()) {
        if (!sh.empty()) nm += fmt::format("[{}]", fmt::join(sh, ","));  // scalars and non-tensors: nothing
      }
    }
    events.push_back({e.startThreadId(), e.startNs(), e.endNs(), nm});
  }
  const auto stats = summarize_op_events(std::move(events));
  const auto table = format_op_table(stats, span_ms);
  const auto ops = (fs::path(dir_) / "ops.txt").string();
  std::ofstream out(ops);
  out << fmt::format("# {:.1f} ms recorded; self time by operator (recording thread)\n", span_ms) << table;
  if (!out) throw_error("profiler: cannot write {}", ops);
  spdlog::info("profiler: {:.1f} ms recorded -> {}, {}; top operators by self time:\n{}", span_ms, trace, ops,
               format_op_table(stats, span_ms, 10));
}

}  // namespace janus::train
