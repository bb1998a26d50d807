#include "janus/core/logging.h"

#include <atomic>

#include <spdlog/sinks/stdout_color_sinks.h>

#include "janus/core/error.h"

namespace janus {
namespace {
std::atomic<int> g_rank{0};

spdlog::level::level_enum parse_level(const std::string& level) {
  const auto lvl = spdlog::level::from_str(level);
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (lvl == spdlog::level::off && level != "off") {
    throw InputError(fmt::format("log level '{}' is not one of trace, debug, info, warn, error, critical, off", level));
  }
  return lvl;
}
}  // namespace

void init_logging(const std::string& level, int rank) {
  const auto lvl = parse_level(level);
  g_rank = rank;
  const std::string name = "janus_r" + std::to_string(rank);
  spdlog::drop(name);  // re-initialisation (e.g. once the rank is known) replaces the logger
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern(fmt::format("[%H:%M:%S.%e] [rank {}] [%^%l%$] %v", rank));
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

void set_log_level(const std::string& level) { spdlog::set_level(parse_level(level)); }

int log_rank() { return g_rank; }

}  // namespace janus
