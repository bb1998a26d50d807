// Reliability suite, fast subset: each test runs one trial of a tools/reliability.sh fault test and requires it to
// pass. The full suite (10 kill -9 trials and more) is `tools/reliability.sh`; see docs/reliability.md.
//
// This executable doubles as the DDP rank program of the fault test `ddp`: when JANUS_REL_WORKER=ddp is set, a
// static initializer runs one rank of a small data-parallel training loop (Gloo, CPU) that injects the fault
// JANUS_REL_FAULT (kill | hang) on rank JANUS_REL_VICTIM at step 3, and exits before GoogleTest starts.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <thread>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include "janus/core/config.h"
#include "janus/train/distributed.h"
#include "test_util.h"

namespace {

int env_i(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

double now_s() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

int ddp_worker() {
  at::set_num_threads(1);
  janus::ParallelConfig cfg;
  cfg.backend = "gloo";
  cfg.timeout_s = env_i("JANUS_REL_TIMEOUT_S", 10);
  auto pg = janus::dist::ProcessGroup::from_env(cfg);
  const int rank = pg->rank();
  const int victim = env_i("JANUS_REL_VICTIM", 1);
  const std::string fault = std::getenv("JANUS_REL_FAULT") ? std::getenv("JANUS_REL_FAULT") : "kill";
  torch::manual_seed(3);
  torch::nn::Sequential model(torch::nn::Linear(8, 16), torch::nn::Tanh(), torch::nn::Linear(16, 4));
  janus::dist::DistributedDataParallel ddp(model.ptr(), pg);
  for (int step = 0; step < 2000; ++step) {
    if (rank == victim && step == 3) {
      // The time of the fault, for the caller's "survivors exited within" figure.
      std::ofstream("victim_pid") << ::getpid() << "\n";
      std::ofstream("fault_time") << std::fixed << now_s() << "\n";
      std::fflush(nullptr);
      raise(fault == "hang" ? SIGSTOP : SIGKILL);
    }
    auto x = at::randn({6, 8});
    model->forward(x).sum().backward();
    ddp.finish();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "rank %d: finished without noticing the %s rank\n", rank, fault.c_str());
  return 0;
}

struct WorkerEntry {
  WorkerEntry() {
    const char* w = std::getenv("JANUS_REL_WORKER");
    if (w == nullptr) return;
    int rc = 1;
    try {
      if (std::string(w) == "ddp") {
        rc = ddp_worker();
      } else {
        std::fprintf(stderr, "unknown JANUS_REL_WORKER %s\n", w);
        rc = 2;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker error: %s\n", e.what());
      rc = 1;
    }
    std::fflush(stderr);
    std::_Exit(rc);
  }
} g_worker_entry;

// Runs `tools/reliability.sh --trials 1 --only <test>` and expects its RESULT line to report all trials passed.
void run_fault_test(const std::string& test, int trials = 1) {
  const auto work = janus::test::temp_dir("rel-" + test);
  const std::string cmd = "timeout -s KILL 170 " +
                          janus::test::quote(janus::test::source_dir() + "/tools/reliability.sh") + " --build-dir " +
                          janus::test::quote(janus::test::binary_dir()) + " --work " + janus::test::quote(work) +
                          " --trials " + std::to_string(trials) + " --only " + test + " 2>&1";
  const auto r = janus::test::run(cmd);
  const std::regex line("RESULT " + test + " trials=([0-9]+) passed=([0-9]+)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, line)) << "no RESULT line for " << test << ":\n" << r.output;
  EXPECT_GT(std::stoi(m[1]), 0) << r.output;
  EXPECT_EQ(m[1], m[2]) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace

// kill -9 during a checkpoint write (checkpoint.every_steps 1), then --resume auto: final weights bit-identical.
TEST(Reliability, KillDuringCheckpointWriteResumesBitIdentical) { run_fault_test("kill", 1); }

// The same for janus_train --task stage (stage 2 StageTask on a 32-image Shapes set, a checkpoint every step, EMA, 2
// loader workers): SIGKILL mid-checkpoint-write, --resume auto, final model + EMA bit-identical to the uninterrupted
// run. Two trials: one killed during a checkpoint write, one after a random delay inside a step.
TEST(Reliability, KillStageTaskResumesBitIdentical) { run_fault_test("killstage", 2); }

// Truncated / bit-flipped / header-damaged / missing files / broken manifest in the newest checkpoint: detected,
// reported, the previous checkpoint is used (final weights identical), an explicit --resume of it exits 2.
TEST(Reliability, CorruptNewestCheckpointFallsBack) { run_fault_test("corrupt"); }

// RLIMIT_FSIZE at checkpoint time: exit 1 with "File too large", the previous checkpoint intact, resume works.
TEST(Reliability, DiskFullKeepsPreviousCheckpoint) { run_fault_test("diskfull"); }

// A real full (ENOSPC) and read-only (EROFS) tmpfs under the run directory: exit 1 naming the error, previous
// checkpoints intact, resume identical. Skipped where mounting a tmpfs is not permitted.
TEST(Reliability, FullOrReadOnlyFilesystemKeepsPreviousCheckpoint) {
  const auto probe = janus::test::run("d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d 2>/dev/null && umount $d; "
                                      "r=$?; rmdir $d; exit $r");
  if (probe.exit_code != 0) GTEST_SKIP() << "mounting a tmpfs is not permitted here";
  run_fault_test("fsfault");
}

// janus_train (stage 2) on Shapes with 5 % corrupt images and malformed captions completes and reports the skipped
// counts; with 35 % corrupt images it stops with exit 2 naming data.max_bad_fraction.
TEST(Reliability, CorruptDataSkippedOrStopsTheRun) { run_fault_test("datafault"); }

// Injected NaN losses: one is skipped (weights as if the step did not happen), K consecutive stop the run.
TEST(Reliability, NonFiniteLossesSkipThenStop) { run_fault_test("nonfinite"); }

// DDP: a SIGKILLed and a SIGSTOPped rank make the others exit non-zero within parallel.timeout_s (+ diagnosis).
TEST(Reliability, DdpLostOrHungRankStopsTheOthers) { run_fault_test("ddp"); }
