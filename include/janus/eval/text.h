#pragma once
// Small Unicode-aware text helpers shared by the metrics (UTF-8 in, UTF-8 out). They mirror the Python str
// methods the reference evaluators use, so that scores agree on non-ASCII text.
#include <string>
#include <vector>

namespace janus::eval {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(const std::string& s);

// Python's str.lower() for the simple one-to-one case mappings (glibc's C.UTF-8 towlower). Invalid UTF-8 bytes
// pass through unchanged.
std::string utf8_lower(const std::string& s);

// Python's str.split() with no argument: splits on runs of Unicode whitespace, drops empty pieces.
std::vector<std::string> split_whitespace(const std::string& s);

// Python's str.split(sep) for a single-character separator: keeps empty pieces ("" -> {""}).
std::vector<std::string> split_on(const std::string& s, char sep);

// Python's str.strip() (Unicode whitespace at both ends).
std::string strip_whitespace(const std::string& s);

}  // namespace janus::eval
