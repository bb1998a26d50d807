// tune_malloc_for_tensors (include/janus/core/allocator.h): when it steps aside, and that after it a training
// step's freed activation buffers are reused without page faults (below the mmap threshold each is a fresh mapping).
#include <cstdlib>
#include <string>

#include <sys/resource.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "janus/core/allocator.h"

using ::testing::HasSubstr;

// The sanitizer build replaces malloc (ASan's mallopt does nothing), so the fault test is for the real allocator.
#if defined(__SANITIZE_ADDRESS__)
#define JANUS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JANUS_TEST_ASAN 1
#endif
#endif

namespace {
// Sets (or, with nullptr, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value != nullptr)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Minor faults over `steps` forward + backward passes of two 3x3 convolutions on [8, 16, 32, 32] (512 KiB
// activations, a training step in miniature), after two warm-up passes.
long faults_of_conv_steps(int steps) {
  const auto w = at::randn({16, 16, 3, 3}).requires_grad_();
  const auto x = at::randn({8, 16, 32, 32});
  auto step = [&] {
    const auto y = at::conv2d(at::relu(at::conv2d(x, w, {}, 1, 1)), w, {}, 1, 1);
    y.sum().backward();
    w.mutable_grad().zero_();
  };
  step();
  step();
  const long f0 = minor_faults();
  for (int i = 0; i < steps; ++i) step();
  return minor_faults() - f0;
}
}  // namespace

TEST(MallocTuning, StepsAsideWhenAskedOrWhenTheEnvironmentConfiguresMalloc) {
  {
    ScopedEnv off("JANUS_MALLOC_TUNING", "0");
    const auto t = janus::tune_malloc_for_tensors();
    EXPECT_FALSE(t.applied);
    EXPECT_THAT(t.reason, HasSubstr("JANUS_MALLOC_TUNING=0"));
  }
  {
    ScopedEnv on("JANUS_MALLOC_TUNING", nullptr);
    ScopedEnv tun("GLIBC_TUNABLES", "glibc.malloc.arena_max=2");
    const auto t = janus::tune_malloc_for_tensors();
    EXPECT_FALSE(t.applied);
    EXPECT_THAT(t.reason, HasSubstr("environment"));
  }
  {
    ScopedEnv on("JANUS_MALLOC_TUNING", nullptr);
    ScopedEnv tun("GLIBC_TUNABLES", nullptr);
    ScopedEnv mmap_env("MALLOC_TRIM_THRESHOLD_", "100000");
    EXPECT_FALSE(janus::tune_malloc_for_tensors().applied);
  }
}

#if defined(__GLIBC__) && !defined(JANUS_TEST_ASAN)
TEST(MallocTuning, FreedTensorBuffersAreReusedWithoutPageFaults) {
  ScopedEnv on("JANUS_MALLOC_TUNING", nullptr);
  ScopedEnv tun("GLIBC_TUNABLES", nullptr);
  ScopedEnv a("MALLOC_MMAP_THRESHOLD_", nullptr);
  ScopedEnv b("MALLOC_TRIM_THRESHOLD_", nullptr);
  constexpr int kSteps = 10;
  // A fixed 128 KiB mmap threshold (glibc's initial one): every activation buffer is a fresh mapping, so each pass
  // faults on every page it writes.
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  const long before = faults_of_conv_steps(kSteps);
  EXPECT_GT(before, kSteps * 500);
  const auto t = janus::tune_malloc_for_tensors();
  ASSERT_TRUE(t.applied) << t.reason;
  EXPECT_THAT(t.reason, HasSubstr("32 MiB"));
  const long after = faults_of_conv_steps(kSteps);
  EXPECT_LT(after * 10, before) << "faults before tuning " << before << ", after " << after;
}
#endif
