#pragma once
// Path-aware JSON access for untrusted annotation files (internal to src/data).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "janus/core/error.h"

namespace janus::detail {

inline const char* json_kind(const nlohmann::json& j) { return j.type_name(); }

// A cursor into a document that knows its file and JSON path, for errors like
//   file: $.annotations[3].caption: expected a string, got number
struct JRef {
  const nlohmann::json& j;
  const std::string& file;
  std::string path;

  [[noreturn]] void fail(const std::string& expected) const {
    throw InputError(fmt::format("{}: {}: expected {}, got {}", file, path, expected, json_kind(j)));
  }
  JRef at(const std::string& key) const {
    if (!j.is_object()) fail("an object");
    auto it = j.find(key);
    if (it == j.end()) {
      throw InputError(fmt::format("{}: {}: missing key \"{}\"", file, path, key));
    }
    return JRef{*it, file, path + "." + key};
  }
  bool has(const std::string& key) const { return j.is_object() && j.contains(key); }
  JRef at(size_t i) const { return JRef{j[i], file, path + "[" + std::to_string(i) + "]"}; }
  size_t array_size(int64_t cap) const {
    if (!j.is_array()) fail("an array");
    if (static_cast<int64_t>(j.size()) > cap) {
      throw InputError(fmt::format("{}: {}: {} entries exceed the limit of {}", file, path, j.size(), cap));
    }
    return j.size();
  }
  std::string str() const {
    if (!j.is_string()) fail("a string");
    return j.get<std::string>();
  }
  int64_t integer() const {
    if (!j.is_number_integer()) fail("an integer");
    return j.get<int64_t>();
  }
  bool boolean() const {
    if (!j.is_boolean()) fail("a boolean");
    return j.get<bool>();
  }
};

}  // namespace janus::detail
