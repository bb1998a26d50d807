#include "janus/core/registry.h"

#include <algorithm>

#include "janus/core/error.h"
#include "janus/core/text.h"

namespace janus {
namespace {
bool type_matches(const std::string& type, const nlohmann::json& v) {
  auto all = [&](auto pred) {
    if (!v.is_array()) return false;
    return std::all_of(v.begin(), v.end(), pred);
  };
  if (type == "int") return v.is_number_integer();
  if (type == "float") return v.is_number();
  if (type == "bool") return v.is_boolean();
  if (type == "string") return v.is_string();
  if (type == "int_list") return all([](const nlohmann::json& x) { return x.is_number_integer(); });
  if (type == "float_list") return all([](const nlohmann::json& x) { return x.is_number(); });
  if (type == "string_list") return all([](const nlohmann::json& x) { return x.is_string(); });
  if (type == "json") return true;
  throw Error(fmt::format("registry: unknown option type '{}'", type));
}
}  // namespace

ModuleRegistry& ModuleRegistry::global() {
  static ModuleRegistry registry;
  return registry;
}

bool ModuleRegistry::add(ModuleEntry entry) {
  if (contains(entry.name)) throw Error(fmt::format("module '{}' registered twice", entry.name));
  for (const auto& o : entry.options) {
    if (!o.required) type_matches(o.type, o.default_value);  // validates the type name
  }
  entries_.push_back(std::move(entry));
  return true;
}

bool ModuleRegistry::contains(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const ModuleEntry& e) { return e.name == name; });
}

const ModuleEntry& ModuleRegistry::at(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return e;
  }
  const std::string best = closest_match(name, names());
  throw InputError(fmt::format("unknown module '{}'{}; `janus_module list` shows the registry", name,
                               best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best)));
}

std::vector<std::string> ModuleRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.name);
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json ModuleRegistry::resolve_options(const std::string& name, const nlohmann::json& user) const {
  const ModuleEntry& e = at(name);
  if (!user.is_null() && !user.is_object()) {
    throw InputError(fmt::format("module '{}': options must be a JSON object, got {}", name, user.type_name()));
  }
  std::vector<std::string> known;
  for (const auto& o : e.options) known.push_back(o.name);
  if (user.is_object()) {
    for (auto it = user.begin(); it != user.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
        const std::string best = closest_match(it.key(), known);
        throw InputError(fmt::format("module '{}': unknown option '{}'{}", name, it.key(),
                                     best.empty() ? fmt::format(" (options: {})", fmt::join(known, ", "))
                                                  : fmt::format(" (did you mean '{}'?)", best)));
      }
    }
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& o : e.options) {
    if (user.is_object() && user.contains(o.name)) {
      const auto& v = user.at(o.name);
      if (!type_matches(o.type, v)) {
        throw InputError(fmt::format("module '{}': option '{}' expects {}, got {}", name, o.name, o.type, v.dump()));
      }
      out[o.name] = v;
    } else if (o.required) {
      throw InputError(fmt::format("module '{}': option '{}' is required ({})", name, o.name, o.help));
    } else {
      out[o.name] = o.default_value;
    }
  }
  return out;
}

RunnableModule ModuleRegistry::build(const std::string& name, const nlohmann::json& user_options) const {
  const nlohmann::json opts = resolve_options(name, user_options);
  return at(name).build(opts);
}

TensorMap ModuleRegistry::run(const std::string& name, RunnableModule& module, const TensorMap& inputs) const {
  const ModuleEntry& e = at(name);
  std::vector<std::string> expected;
  for (const auto& in : e.inputs) {
    expected.push_back(in.name);
    if (!in.optional && !inputs.count(in.name)) {
      throw InputError(fmt::format("module '{}': input tensor '{}' ({}) is missing", name, in.name, in.doc));
    }
  }
  for (const auto& kv : inputs) {
    if (std::find(expected.begin(), expected.end(), kv.first) == expected.end()) {
      throw InputError(fmt::format("module '{}': unexpected input tensor '{}' (inputs: {})", name, kv.first,
                                   fmt::join(expected, ", ")));
    }
  }
  return module.forward(inputs);
}

nlohmann::json ModuleRegistry::describe(const std::string& name) const {
  const ModuleEntry& e = at(name);
  nlohmann::json j;
  j["name"] = e.name;
  j["summary"] = e.summary;
  j["options"] = nlohmann::json::array();
  for (const auto& o : e.options) {
    nlohmann::json oj{{"name", o.name}, {"type", o.type}, {"help", o.help}, {"required", o.required}};
    if (!o.required) oj["default"] = o.default_value;
    j["options"].push_back(oj);
  }
  auto specs = [](const std::vector<TensorSpec>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& t : v) a.push_back({{"name", t.name}, {"doc", t.doc}, {"optional", t.optional}});
    return a;
  };
  j["inputs"] = specs(e.inputs);
  j["outputs"] = specs(e.outputs);
  return j;
}

}  // namespace janus
