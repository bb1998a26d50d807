#include "janus/router/freeze.h"

#include <fnmatch.h>

#include <fmt/format.h>

#include "janus/core/error.h"

namespace janus {

bool parameter_matches(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0 || fnmatch((pattern + ".*").c_str(), name.c_str(), 0) == 0;
}

int64_t set_trainable(torch::nn::Module& module, const std::vector<std::string>& patterns, bool trainable) {
  int64_t n = 0;
  for (const auto& pattern : patterns) {
    int64_t hits = 0;
    for (auto& p : module.named_parameters(/*recurse=*/true)) {
      if (!parameter_matches(pattern, p.key())) continue;
      p.value().set_requires_grad(trainable);
      ++hits;
    }
    if (hits == 0)
      throw InputError(
          fmt::format("{}: pattern '{}' matches no parameter", trainable ? "unfreeze" : "freeze", pattern));
    n += hits;
  }
  return n;
}

int64_t freeze(torch::nn::Module& module, const std::string& pattern) {
  return set_trainable(module, {pattern}, false);
}
int64_t unfreeze(torch::nn::Module& module, const std::string& pattern) {
  return set_trainable(module, {pattern}, true);
}

ParameterReport parameter_report(const torch::nn::Module& module) {
  ParameterReport r;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (p.value().requires_grad()) {
      r.trainable += p.value().numel();
      ++r.trainable_tensors;
    } else {
      r.frozen += p.value().numel();
      ++r.frozen_tensors;
    }
  }
  return r;
}

std::string ParameterReport::summary() const {
  const double pct = total() > 0 ? 100.0 * static_cast<double>(trainable) / static_cast<double>(total()) : 0.0;
  return fmt::format("trainable {} ({:.2f}%) in {} tensors, frozen {} in {} tensors", trainable, pct, trainable_tensors,
                     frozen, frozen_tensors);
}

}  // namespace janus
