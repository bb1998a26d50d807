#pragma once
// Registry of runnable modules. Each module registers once (JANUS_REGISTER_MODULE in its .cpp) with its
// option schema and named tensor inputs/outputs; `janus_module list|run` and the parity tests use it to build a
// module from JSON options, load weights and run forward on named tensors.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <nlohmann/json.hpp>

#include "janus/io/safetensors.h"

namespace janus {

struct OptionSpec {
  std::string name;
  std::string type;              // int, float, bool, string, int_list, float_list, string_list, json
  nlohmann::json default_value;  // ignored when required
  std::string help;
  bool required = false;
};

using ForwardFn = std::function<TensorMap(const TensorMap&)>;

struct RunnableModule {
  std::shared_ptr<torch::nn::Module> module;
  ForwardFn forward;
};

struct TensorSpec {
  std::string name;
  std::string doc;  // shape and meaning, e.g. "[B, L, D] float"
  bool optional = false;
};

struct ModuleEntry {
  std::string name;
  std::string summary;
  std::vector<OptionSpec> options;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  // Receives options with every key present (defaults filled in, types checked).
  std::function<RunnableModule(const nlohmann::json& options)> build;
};

class ModuleRegistry {
 public:
  static ModuleRegistry& global();

  bool add(ModuleEntry entry);  // throws on a duplicate name
  bool contains(const std::string& name) const;
  const ModuleEntry& at(const std::string& name) const;  // InputError with a suggestion
  std::vector<std::string> names() const;                // sorted

  // Fills defaults, rejects unknown keys (naming the closest), checks types and required keys.
  nlohmann::json resolve_options(const std::string& name, const nlohmann::json& user) const;
  RunnableModule build(const std::string& name, const nlohmann::json& user_options) const;
  // Checks required inputs are present and no unknown ones are given, then runs forward.
  TensorMap run(const std::string& name, RunnableModule& module, const TensorMap& inputs) const;

  nlohmann::json describe(const std::string& name) const;  // JSON for `janus_module list --json`

 private:
  std::vector<ModuleEntry> entries_;
};

}  // namespace janus

#define JANUS_REGISTRY_CAT2(a, b) a##b
#define JANUS_REGISTRY_CAT(a, b) JANUS_REGISTRY_CAT2(a, b)
// Registers a module at library load time: JANUS_REGISTER_MODULE(ModuleEntry{...});
#define JANUS_REGISTER_MODULE(...)                                                            \
  static const bool JANUS_REGISTRY_CAT(janus_module_registered_, __LINE__) [[maybe_unused]] = \
      ::janus::ModuleRegistry::global().add(__VA_ARGS__)
