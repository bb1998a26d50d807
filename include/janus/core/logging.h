#pragma once
// One logging family (spdlog) for the whole project. Library code calls spdlog::info/warn/... directly;
// init_logging() sets the pattern with the rank prefix and the level.
#include <string>

#include <spdlog/spdlog.h>

namespace janus {

// Installs the default logger: "[time] [rank R] [level] message" on stderr. Safe to call again (e.g. once the
// rank is known). `level` is one of trace, debug, info, warn, error, critical, off.
void init_logging(const std::string& level = "info", int rank = 0);

// Changes only the level; throws InputError naming the valid levels on a bad name.
void set_log_level(const std::string& level);

// The rank the logger prefixes (0 when not distributed).
int log_rank();

}  // namespace janus
