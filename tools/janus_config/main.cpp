// janus_config: validate a config (print the resolved YAML), list keys, or generate docs/config.md.
#include "cli.h"
#include "janus/core/config.h"

int main(int argc, char** argv) {
  CLI::App app{"janus_config: check configs and generate the configuration reference"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  app.require_subcommand(1);
  std::string path;
  std::vector<std::string> sets;
  auto* check = app.add_subcommand("check", "load and validate a config; print the resolved YAML");
  check->add_option("--config", path, "YAML config file")->required();
  check->add_option("--set", sets, "override key.path=value (repeatable)");
  auto* docs = app.add_subcommand("docs", "print docs/config.md (generated from the schema)");
  auto* keys = app.add_subcommand("keys", "print every key path");
  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    if (*check) {
      const auto cfg = janus::Config::load(path, sets);
      fmt::print("# config hash {}\n{}", cfg.hash(), cfg.to_yaml());
    } else if (*docs) {
      fmt::print("{}", janus::Config::docs_markdown());
    } else if (*keys) {
      for (const auto& k : janus::Config::keys()) fmt::print("{}\n", k);
    }
    return 0;
  });
}
