#pragma once
// Shared helpers for the tools' main(): CLI11 parsing with exit code 2 on bad flags, logging set-up, malloc tuned
// for tensor buffers (janus/core/allocator.h), and one place that turns exceptions into one clear log line and an
// exit code (2 bad input, 1 runtime failure).
#include <functional>
#include <string>

#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "janus/core/allocator.h"
#include "janus/core/error.h"
#include "janus/core/logging.h"

namespace janus::cli {

struct Common {
  std::string log_level = "info";
};

inline void add_common(CLI::App& app, Common& c) {
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error, critical, off")->capture_default_str();
}

// Runs body() with exceptions mapped to exit codes. Use as: return janus::cli::run(app, argc, argv, common, body);
inline int run(CLI::App& app, int argc, char** argv, const Common& common, const std::function<int()>& body) {
  init_logging("info");
  const MallocTuning malloc_tuning = tune_malloc_for_tensors();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    set_log_level(common.log_level);
    spdlog::debug("{}", malloc_tuning.reason);
    return body();
  } catch (const InputError& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const c10::Error& e) {
    spdlog::error("{}", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}

}  // namespace janus::cli
