#include "janus/core/json_file.h"

#include <filesystem>
#include <fstream>

#include "janus/core/error.h"

namespace janus {
namespace fs = std::filesystem;

nlohmann::json read_json_file(const std::string& path, const std::string& what, std::size_t max_bytes) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status)) throw_input_error("{}: {} not found", path, what);
  if (!fs::is_regular_file(status)) throw_input_error("{}: {} is not a regular file", path, what);
  const auto size = fs::file_size(path, ec);
  if (ec) throw_input_error("{}: cannot read {}: {}", path, what, ec.message());
  if (size > max_bytes) throw_input_error("{}: {} is {} bytes, over the limit of {}", path, what, size, max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input_error("{}: cannot open {}", path, what);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for numbers like 1e99999
    throw_input_error("{}: {}: not valid JSON: {}", path, what, e.what());
  }
}

nlohmann::json parse_json_text(const std::string& text, const std::string& where, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("{}: {}: not valid JSON: {}", where, what, e.what());
  }
}

}  // namespace janus
