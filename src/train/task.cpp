#include "janus/train/task.h"

#include "janus/core/error.h"

namespace janus::train {

const at::Tensor& Batch::at(const std::string& name) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) {
    std::string have;
    for (const auto& [k, v] : tensors) have += (have.empty() ? "" : ", ") + k;
    throw_input_error("batch has no tensor '{}' (has: {})", name, have);
  }
  return it->second;
}

}  // namespace janus::train
