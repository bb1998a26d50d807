// janus_serve as a subprocess on a random-weight tiny run, driven by the PyPI tritonclient[http] client
// (tests/python/serve_tritonclient.py): health, metadata, every model, errors, batching, 503, SIGTERM drain.
#include <gtest/gtest.h>

#include "../infer/infer_fixture.h"
#include "janus/train/distributed.h"
#include "test_util.h"

namespace janus::test {
namespace {

TEST(ServeE2E, TritonClientEveryModelErrorsBatchingAndDrain) {
  const auto dir = temp_dir("serve_e2e");
  const auto run_dir = make_run(dir);
  const int port = janus::dist::free_loopback_port();
  int port2 = janus::dist::free_loopback_port();
  while (port2 == port) port2 = janus::dist::free_loopback_port();
  const auto r = run_python("serve_tritonclient.py",
                            {tool("janus_serve"), run_dir, std::to_string(port), std::to_string(port2), dir});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ALL OK"), std::string::npos) << r.output;
  std::cout << r.output;
}

TEST(ServeE2E, BadFlagsExitTwo) {
  const auto dir = temp_dir("serve_flags");
  auto r = run(quote(tool("janus_serve")) + " --run " + quote(dir + "/missing") + " --port 0 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run(quote(tool("janus_serve")) + " --run x --max-batch 0 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace janus::test
