#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>

#include "janus/core/error.h"
#include "janus/core/registry.h"
#include "janus/io/module_io.h"
#include "test_util.h"

using ::testing::HasSubstr;
namespace jt = janus::test;

TEST(Registry, ResolvesDefaultsAndRejectsBadOptions) {
  auto& reg = janus::ModuleRegistry::global();
  const auto o = reg.resolve_options("linear", {{"in_features", 3}, {"out_features", 2}});
  EXPECT_EQ(o["bias"], true);
  auto err = [&](const std::string& name, const nlohmann::json& j) {
    try {
      reg.resolve_options(name, j);
    } catch (const janus::InputError& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  EXPECT_THAT(err("linear", {{"in_features", 3}}), HasSubstr("option 'out_features' is required"));
  EXPECT_THAT(err("linear", {{"in_features", 3}, {"out_features", 2}, {"biass", true}}),
              HasSubstr("unknown option 'biass' (did you mean 'bias'?)"));
  EXPECT_THAT(err("linear", {{"in_features", "3"}, {"out_features", 2}}), HasSubstr("'in_features' expects int"));
  EXPECT_THAT(err("linearr", {}), HasSubstr("did you mean 'linear'?"));
}

TEST(Registry, RunChecksInputNames) {
  auto& reg = janus::ModuleRegistry::global();
  auto m = reg.build("linear", {{"in_features", 3}, {"out_features", 2}});
  EXPECT_THROW(reg.run("linear", m, {}), janus::InputError);
  EXPECT_THROW(reg.run("linear", m, {{"x", torch::ones({1, 3})}, {"z", torch::ones({1})}}), janus::InputError);
  EXPECT_EQ(reg.run("linear", m, {{"x", torch::ones({5, 3})}}).at("y").sizes(), (std::vector<int64_t>{5, 2}));
}

TEST(JanusModule, ListShowsModulesWithOptions) {
  const auto r = jt::run(jt::tool("janus_module") + " list");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("linear"));
  EXPECT_THAT(r.output, HasSubstr("--in_features : int (required)"));
  const auto j = jt::run(jt::tool("janus_module") + " list --json 2>/dev/null");
  ASSERT_EQ(j.exit_code, 0);
  EXPECT_NO_THROW(nlohmann::json::parse(j.output));
}

// janus_module run on weights and inputs made by PyTorch gives PyTorch's outputs.
TEST(JanusModule, RunMatchesPyTorch) {
  const auto dir = jt::temp_dir();
  auto r = jt::run_python("linear_case.py", {dir});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"linear", R"({"in_features": 7, "out_features": 5})"},
      {"mlp", R"({"in_features": 7, "hidden_features": 11, "out_features": 5})"}};
  for (const auto& [name, opts] : cases) {
    r = jt::run(jt::tool("janus_module") + " run --name " + name + " --options " + jt::quote(opts) + " --weights " +
                dir + "/" + name + "_weights.safetensors --inputs " + dir + "/inputs.safetensors --out " + dir + "/" +
                name + "_out.safetensors");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = janus::load_safetensors(dir + "/" + name + "_out.safetensors").at("y");
    const auto want = janus::load_safetensors(dir + "/" + name + "_expected.safetensors").at("y");
    EXPECT_TRUE(jt::all_close(got, want, 1e-6)) << name;
  }
}

// --save-init writes weights PyTorch can load and that reproduce janus' outputs there.
TEST(JanusModule, SaveInitLoadsIntoPyTorch) {
  const auto dir = jt::temp_dir();
  const std::string opts = jt::quote(R"({"in_features": 7, "out_features": 5})");
  auto r = jt::run(jt::tool("janus_module") + " run --name linear --options " + opts + " --seed 3 --save-init " + dir +
                   "/init.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = jt::run_python("linear_case.py", {dir, "--check", dir + "/init.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = jt::run(jt::tool("janus_module") + " run --name linear --options " + opts + " --weights " + dir +
              "/init.safetensors --inputs " + dir + "/inputs.safetensors --out " + dir + "/out.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(jt::all_close(janus::load_safetensors(dir + "/out.safetensors").at("y"),
                            janus::load_safetensors(dir + "/expected_init.safetensors").at("y"), 1e-6));
}

TEST(JanusModule, BadInputsExitTwo) {
  const auto dir = jt::temp_dir();
  auto r = jt::run(jt::tool("janus_module") + " run --name nope --save-init " + dir + "/x.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  r = jt::run(jt::tool("janus_module") + " run --name linear --options '{bad json' --save-init " + dir +
              "/x.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not valid JSON"));
  janus::save_safetensors(dir + "/w.safetensors", {{"weight", torch::zeros({2, 2})}});
  r = jt::run(jt::tool("janus_module") +
              " run --name linear --options '{\"in_features\": 3, \"out_features\": 2}' --weights " + dir +
              "/w.safetensors --save-init " + dir + "/y.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("missing 1 [bias]"));
}
