#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace janus {

std::size_t edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `key` when it is close enough to be a likely typo, else "".
std::string closest_match(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace janus
