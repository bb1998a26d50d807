#pragma once
// Error types. Library code throws; every tool's main maps them to exit codes
// (InputError -> 2: bad config, data, checkpoint or request; anything else -> 1).
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace janus {

// A failure at run time that is not the user's input's fault (I/O error, numerical failure, ...).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The user's input is wrong: config, command-line flag, data file, checkpoint, request.
class InputError : public Error {
 public:
  using Error::Error;
};

// A config key or value is wrong; the message names the full key path.
class ConfigError : public InputError {
 public:
  using InputError::InputError;
};

template <class... Args>
[[noreturn]] void throw_input_error(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

template <class... Args>
[[noreturn]] void throw_error(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace janus
