#pragma once
// The one reader of JSON files (annotation files, results and prompt lists, run metadata, timings): every JSON file
// the library or a tool reads from a user-given path goes through read_json_file, so every such file gets the same
// size cap and the same error contract.
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace janus {

// Default size cap of read_json_file (the data loaders' DataLimits::max_json_bytes is the same 4 GiB).
inline constexpr std::size_t kMaxJsonFileBytes = std::size_t{4} << 30;

// Reads and parses the JSON file `path`. `what` names the file's role in messages ("caption results",
// "prompts list"). Throws janus::InputError with one line naming the file when it is missing or not a regular
// file, larger than `max_bytes`, unreadable, or not valid JSON: any nlohmann::json exception, not just
// parse_error (a number like 1e99999 throws out_of_range), so bad input never escapes as a non-InputError.
nlohmann::json read_json_file(const std::string& path, const std::string& what = "JSON file",
                              std::size_t max_bytes = kMaxJsonFileBytes);

// Parses one JSON text that came from `where` (a JSONL line "file:12", a request body) with the same contract:
// InputError "where: what: not valid JSON: ..." on any nlohmann::json exception.
nlohmann::json parse_json_text(const std::string& text, const std::string& where,
                               const std::string& what = "JSON text");

}  // namespace janus
