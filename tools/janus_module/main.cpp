// janus_module: list the module registry, or build one module from JSON options and run it on named tensors
// (how libjanus modules are compared with PyTorch implementations).
#include <torch/utils.h>

#include "cli.h"
#include "janus/core/fs.h"
#include "janus/core/registry.h"
#include "janus/io/module_io.h"

namespace {

nlohmann::json parse_options(const std::string& text) {
  if (text.empty()) return nlohmann::json::object();
  const std::string body = text[0] == '@' ? janus::read_file(text.substr(1)) : text;
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw janus::InputError(fmt::format("--options is not valid JSON: {}", e.what()));
  }
}

void print_entry(const nlohmann::json& d) {
  fmt::print("{}\n  {}\n", d["name"].get<std::string>(), d["summary"].get<std::string>());
  for (const auto& o : d["options"]) {
    fmt::print("    --{} : {} {}  {}\n", o["name"].get<std::string>(), o["type"].get<std::string>(),
               o["required"].get<bool>() ? "(required)" : "= " + o["default"].dump(), o["help"].get<std::string>());
  }
  for (const auto& t : d["inputs"]) {
    fmt::print("    in  {}{} {}\n", t["name"].get<std::string>(), t["optional"].get<bool>() ? "?" : "",
               t["doc"].get<std::string>());
  }
  for (const auto& t : d["outputs"])
    fmt::print("    out {} {}\n", t["name"].get<std::string>(), t["doc"].get<std::string>());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_module: list registered modules, or run one on safetensors inputs"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  app.require_subcommand(1);

  auto* list = app.add_subcommand("list", "print every registered module with its options and tensors");
  bool as_json = false;
  list->add_flag("--json", as_json, "print JSON");

  auto* run = app.add_subcommand("run", "build a module, load weights, run forward, write outputs");
  std::string name, options, weights, inputs, out, save_init;
  int64_t seed = 0;
  bool train_mode = false;
  run->add_option("--name", name, "registered module name")->required();
  run->add_option("--options", options, "JSON object of options, or @file.json");
  run->add_option("--weights", weights, "safetensors with the module's parameters and buffers (strict)");
  run->add_option("--inputs", inputs, "safetensors holding the named input tensors");
  run->add_option("--out", out, "safetensors to write the named outputs to");
  run->add_option("--save-init", save_init, "write the freshly initialised weights here");
  run->add_option("--seed", seed, "seed for initialisation and any randomness in forward")->capture_default_str();
  run->add_flag("--train", train_mode, "run in training mode (default: eval)");

  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    auto& reg = janus::ModuleRegistry::global();
    if (*list) {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& n : reg.names()) all.push_back(reg.describe(n));
      if (as_json) {
        fmt::print("{}\n", all.dump(2));
      } else {
        for (const auto& d : all) print_entry(d);
      }
      return 0;
    }
    if (inputs.empty() != out.empty()) throw janus::InputError("--inputs and --out go together");
    if (inputs.empty() && save_init.empty())
      throw janus::InputError("nothing to do: give --inputs/--out or --save-init");
    torch::manual_seed(static_cast<uint64_t>(seed));
    auto m = reg.build(name, parse_options(options));
    if (!weights.empty()) {
      janus::load_module(*m.module, weights);
      spdlog::info("loaded weights from {}", weights);
    }
    if (!save_init.empty()) {
      janus::save_module(*m.module, save_init, {{"module", name}});
      spdlog::info("wrote initial weights to {}", save_init);
    }
    if (!inputs.empty()) {
      m.module->train(train_mode);
      janus::TensorMap outputs;
      {
        torch::NoGradGuard no_grad;
        outputs = reg.run(name, m, janus::load_safetensors(inputs));
      }
      janus::save_safetensors(out, outputs, {{"module", name}});
      spdlog::info("wrote {} output tensor(s) to {}", outputs.size(), out);
    }
    return 0;
  });
}
