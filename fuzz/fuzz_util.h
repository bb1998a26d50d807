#pragma once
// Helpers shared by the libFuzzer targets: the readers under test take file paths, so each input is written to a
// per-process scratch file (overwritten by the next input; never removed recursively, see core/fs.h).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace janus::fuzz {

inline std::string scratch_dir() {
  static const std::string dir = [] {
    const auto d = std::filesystem::temp_directory_path() / ("janus_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d.string();
  }();
  return dir;
}

// Writes bytes to <scratch>/<name> and returns the path.
inline std::string write_scratch(const std::string& name, const char* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data, static_cast<std::streamsize>(size));
  return path;
}

// Splits at the first NUL byte (two files from one input).
inline std::pair<std::string, std::string> split_at_nul(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  const auto p = s.find('\0');
  if (p == std::string::npos) return {s, ""};
  return {s.substr(0, p), s.substr(p + 1)};
}

}  // namespace janus::fuzz
