#pragma once
// Saving and loading a torch::nn::Module's parameters and buffers as safetensors. Keys are the module's
// registered names ("blocks.0.attn.qkv.weight"), so files move to and from PyTorch state dicts.
#include <functional>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "janus/io/safetensors.h"

namespace janus {

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> mismatched;  // "name: file [a, b] vs module [c, d]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;  // one line
};

struct LoadOptions {
  bool strict = true;  // strict: any missing/unexpected/mismatched key throws InputError listing all of them
  // Maps a file key to a module key ("" drops it); for layouts from other libraries (documented per module).
  std::function<std::string(const std::string&)> rename;
  std::string prefix;  // only file keys under "prefix." are considered, with the prefix stripped
};

// Named parameters + buffers (recursive), detached.
TensorMap module_state(const torch::nn::Module& module);

void save_module(const torch::nn::Module& module, const std::string& path, const Metadata& metadata = {});
// Copies tensors into the module's parameters/buffers in place (converting dtype when they differ).
LoadReport load_module(torch::nn::Module& module, const std::string& path, const LoadOptions& options = {});
LoadReport load_module_state(torch::nn::Module& module, const TensorMap& state, const LoadOptions& options = {},
                             const std::string& source = "<state>");

}  // namespace janus
