#include "test_util.h"

#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "janus/core/fs.h"
#include "janus/data/shapes.h"

namespace janus::test {
namespace fs = std::filesystem;

std::string source_dir() { return JANUS_SOURCE_DIR; }
std::string binary_dir() { return JANUS_BINARY_DIR; }
std::string python() {
  const char* env = std::getenv("JANUS_TEST_PYTHON");
  return env && *env ? env : JANUS_TEST_PYTHON;
}
std::string tool(const std::string& name) { return binary_dir() + "/bin/" + name; }

std::string temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? fmt::format("{}.{}", info->test_suite_name(), info->name()) : "global";
  for (auto& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_') c = '_';
  }
  const fs::path dir =
      fs::path(binary_dir()) / "test_tmp" / fmt::format("{}_{}_{}_{}", name, tag, ::getpid(), counter++);
  janus::remove_tree(dir.string());
  fs::create_directories(dir);
  return dir.string();
}

std::string make_shapes_dir(const std::string& dir, int64_t train, int64_t val, int64_t size, uint64_t seed) {
  janus::ShapesOptions o;
  o.out = dir;
  o.train = train;
  o.val = val;
  o.size = size;
  o.seed = seed;
  o.videos = 0;
  o.clouds = 0;
  janus::generate_shapes(o);
  return dir;
}

std::string quote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

CommandResult run_python(const std::string& script, const std::vector<std::string>& args) {
  std::string cmd = quote(python()) + " " + quote(source_dir() + "/tests/python/" + script);
  for (const auto& a : args) cmd += " " + quote(a);
  return run(cmd);
}

::testing::AssertionResult all_close(const at::Tensor& actual, const at::Tensor& expected, double atol, double rtol) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " vs expected " << expected.sizes();
  }
  const auto a = actual.detach().to(at::kCPU).to(at::kDouble);
  const auto e = expected.detach().to(at::kCPU).to(at::kDouble);
  if (a.numel() == 0) return ::testing::AssertionSuccess();
  const auto diff = (a - e).abs();
  const auto tol = atol + rtol * e.abs();
  const bool ok = (diff <= tol).all().item<bool>() && !a.isnan().any().item<bool>();
  const double max_diff = diff.max().item<double>();
  if (ok) return ::testing::AssertionSuccess() << "max abs diff " << max_diff;
  return ::testing::AssertionFailure() << "max abs diff " << max_diff << " exceeds atol " << atol << " (rtol " << rtol
                                       << "), nan in actual: " << a.isnan().any().item<bool>();
}

}  // namespace janus::test
