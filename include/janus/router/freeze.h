#pragma once
// Freezing by module-path glob. A parameter "encoders.vision.blocks.0.attn.qkv.weight" matches a pattern when
// fnmatch(pattern, name) holds ('*' crosses dots) or the pattern names one of its module prefixes
// ("encoders.vision" == "encoders.vision.*"). Frozen = requires_grad false: no gradient is produced, so optimizers
// (AdamW weight decay included) leave the tensor untouched.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>

namespace janus {

bool parameter_matches(const std::string& pattern, const std::string& name);

// Sets requires_grad on every matching parameter; returns how many tensors matched. InputError when none do.
int64_t freeze(torch::nn::Module& module, const std::string& pattern);
int64_t unfreeze(torch::nn::Module& module, const std::string& pattern);
int64_t set_trainable(torch::nn::Module& module, const std::vector<std::string>& patterns, bool trainable);

struct ParameterReport {
  int64_t trainable = 0;  // elements
  int64_t frozen = 0;
  int64_t trainable_tensors = 0;
  int64_t frozen_tensors = 0;
  int64_t total() const { return trainable + frozen; }
  std::string summary() const;  // "trainable 1,234 (12.3%) in 4 tensors, frozen 8,766 in 20 tensors"
};
ParameterReport parameter_report(const torch::nn::Module& module);

}  // namespace janus
