#include "janus/io/module_io.h"

#include <torch/nn/module.h>

#include "janus/core/error.h"

namespace janus {

std::string LoadReport::summary() const {
  std::vector<std::string> parts;
  if (!missing.empty()) parts.push_back(fmt::format("missing {} [{}]", missing.size(), fmt::join(missing, ", ")));
  if (!unexpected.empty())
    parts.push_back(fmt::format("unexpected {} [{}]", unexpected.size(), fmt::join(unexpected, ", ")));
  if (!mismatched.empty())
    parts.push_back(fmt::format("shape mismatch {} [{}]", mismatched.size(), fmt::join(mismatched, "; ")));
  return parts.empty() ? "all keys matched" : fmt::format("{}", fmt::join(parts, "; "));
}

TensorMap module_state(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace(p.key(), p.value().detach());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    if (b.value().defined()) out.emplace(b.key(), b.value().detach());
  }
  return out;
}

void save_module(const torch::nn::Module& module, const std::string& path, const Metadata& metadata) {
  save_safetensors(path, module_state(module), metadata);
}

LoadReport load_module_state(torch::nn::Module& module, const TensorMap& state, const LoadOptions& options,
                             const std::string& source) {
  TensorMap targets = module_state(module);
  TensorMap file;
  for (const auto& [key, t] : state) {
    std::string k = key;
    if (!options.prefix.empty()) {
      if (k.rfind(options.prefix + ".", 0) != 0) continue;
      k = k.substr(options.prefix.size() + 1);
    }
    if (options.rename) k = options.rename(k);
    if (k.empty()) continue;
    file[k] = t;
  }
  LoadReport report;
  for (const auto& kv : targets) {
    if (!file.count(kv.first)) report.missing.push_back(kv.first);
  }
  for (const auto& kv : file) {
    const auto it = targets.find(kv.first);
    if (it == targets.end()) {
      report.unexpected.push_back(kv.first);
    } else if (it->second.sizes() != kv.second.sizes()) {
      report.mismatched.push_back(fmt::format("{}: file [{}] vs module [{}]", kv.first,
                                              fmt::join(kv.second.sizes(), ", "), fmt::join(it->second.sizes(), ", ")));
    }
  }
  if (options.strict && !report.ok()) {
    throw InputError(fmt::format("loading '{}' into module: {}", source, report.summary()));
  }
  torch::NoGradGuard no_grad;
  for (const auto& kv : file) {
    const auto it = targets.find(kv.first);
    if (it == targets.end() || it->second.sizes() != kv.second.sizes()) continue;
    it->second.copy_(kv.second);  // copy_ converts dtype and device
  }
  return report;
}

LoadReport load_module(torch::nn::Module& module, const std::string& path, const LoadOptions& options) {
  const auto f = SafeTensorsFile::open(path);
  return load_module_state(module, f.tensors(), options, path);
}

}  // namespace janus
