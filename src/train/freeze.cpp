#include "janus/train/freeze.h"

#include <spdlog/spdlog.h>

#include "janus/core/error.h"

namespace janus::train {

bool glob_match(const std::string& p, const std::string& t) {
  // Iterative matcher with single-star backtracking: O(|p| * |t|) worst case, no recursion.
  size_t pi = 0, ti = 0, star = std::string::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi, ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++, mark = ti;
    } else if (star != std::string::npos) {
      pi = star + 1, ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool matches_path(const std::string& pattern, const std::string& name) {
  if (glob_match(pattern, name)) return true;
  for (size_t pos = name.find('.'); pos != std::string::npos; pos = name.find('.', pos + 1)) {
    if (glob_match(pattern, name.substr(0, pos))) return true;
  }
  return false;
}

std::vector<std::string> apply_freeze(torch::nn::Module& module, const std::vector<std::string>& rules) {
  std::vector<std::string> frozen;
  if (rules.empty()) return frozen;
  std::vector<bool> used(rules.size(), false);
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    bool hit = false;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (matches_path(rules[i], item.key())) used[i] = hit = true;
    }
    if (hit) {
      item.value().set_requires_grad(false);
      frozen.push_back(item.key());
    }
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    if (!used[i]) throw_input_error("train.freeze: rule '{}' matches no parameter of the model", rules[i]);
  }
  spdlog::info("froze {} parameter tensors ({} rules)", frozen.size(), rules.size());
  return frozen;
}

}  // namespace janus::train
