#pragma once
// Helpers shared by every test executable.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace janus::test {

std::string source_dir();                   // repository root
std::string binary_dir();                   // build root
std::string python();                       // the venv python with torch and the oracle packages
std::string tool(const std::string& name);  // path of a built tool, e.g. tool("janus_module")

// A fresh empty directory for one test (under the build tree), removed at exit of the test binary only if
// JANUS_KEEP_TEST_TMP is unset.
std::string temp_dir(const std::string& tag = "t");

// A fresh Shapes benchmark directory (janus::generate_shapes: captions, VQA, NLVR2, GenEval prompts, no videos or
// point clouds, no tokenizer) at `dir`, with `train` / `val` images of `size` px from `seed`. Returns `dir`.
std::string make_shapes_dir(const std::string& dir, int64_t train, int64_t val, int64_t size = 32, uint64_t seed = 0);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};
// Runs a shell command line, capturing output.
CommandResult run(const std::string& command);
// Runs tests/python/<script> with the venv python; args are shell-quoted.
CommandResult run_python(const std::string& script, const std::vector<std::string>& args = {});
std::string quote(const std::string& arg);

// Max-abs-diff comparison with a readable failure message.
::testing::AssertionResult all_close(const at::Tensor& actual, const at::Tensor& expected, double atol,
                                     double rtol = 0.0);

}  // namespace janus::test
