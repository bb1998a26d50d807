// janus_train end to end as a separate process: exact resume after SIGKILL, fallback past a corrupt newest
// checkpoint, SIGTERM handling, the non-finite stop rule and TensorBoard files read back by tensorboard itself.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "janus/core/fs.h"
#include "janus/train/checkpoint.h"
#include "test_util.h"

extern char** environ;

using namespace janus;
namespace fs = std::filesystem;
using janus::test::quote;

namespace {

std::string train_cmd(const std::string& run_dir, const std::string& extra = "") {
  return janus::test::tool("janus_train") + " --task toy --set train.run_dir=" + quote(run_dir) +
         " --set train.steps=40 --set train.threads=1 --set train.device=cpu --set log.every_steps=1"
         " --set checkpoint.every_steps=6 --set checkpoint.keep_last=3 --set data.batch_size=8"
         " --set train.grad_accum=2 --set train.ema_decay=0.95 --set schedule.warmup_steps=4 " +
         extra;
}

pid_t spawn_shell(const std::string& cmd) {
  pid_t pid = 0;
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  // exec replaces the shell so the pid is the trainer's own.
  const std::string exec_cmd = "exec " + cmd;
  argv[2] = exec_cmd.c_str();
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  return pid;
}

int64_t count_lines(const std::string& path) {
  std::ifstream in(path);
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

// Waits until metrics.jsonl has at least `lines` records (steps done), or fails after a timeout.
bool wait_for_steps(const std::string& run_dir, int64_t lines, double timeout_s = 60) {
  const auto t0 = std::chrono::steady_clock::now();
  while (count_lines(run_dir + "/metrics.jsonl") < lines) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

int wait_exit(pid_t pid, bool* signaled = nullptr) {
  int status = 0;
  waitpid(pid, &status, 0);
  if (signaled) *signaled = WIFSIGNALED(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The uninterrupted reference run, computed once per test binary.
const std::string& reference_run() {
  static const std::string dir = [] {
    const auto d = janus::test::temp_dir("ref");
    const auto r = janus::test::run(train_cmd(d));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return d;
  }();
  return dir;
}

void expect_same_final(const std::string& a, const std::string& b) {
  for (const char* f : {"/final/model.safetensors", "/final/ema.safetensors"}) {
    ASSERT_TRUE(fs::exists(a + f) && fs::exists(b + f)) << f;
    EXPECT_TRUE(read_file(a + f) == read_file(b + f)) << f << " differs between " << a << " and " << b;
  }
}

}  // namespace

TEST(JanusTrain, KillNineThenResumeIsBitIdentical) {
  const auto& ref = reference_run();
  for (int64_t kill_after : {9, 23}) {  // mid-way between checkpoints (every 6 steps)
    const auto dir = janus::test::temp_dir("kill9");
    const pid_t pid = spawn_shell(train_cmd(dir, "--toy-step-sleep-ms 25") + " > " + quote(dir + ".log") + " 2>&1");
    ASSERT_TRUE(wait_for_steps(dir, kill_after));
    ::kill(pid, SIGKILL);
    bool signaled = false;
    wait_exit(pid, &signaled);
    ASSERT_TRUE(signaled);
    ASSERT_FALSE(fs::exists(dir + "/final/model.safetensors"));
    const auto ckpts = train::CheckpointStore(dir + "/checkpoints", 3).list();
    ASSERT_FALSE(ckpts.empty());
    const auto r = janus::test::run(train_cmd(dir, "--resume auto"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
    expect_same_final(ref, dir);
    EXPECT_EQ(count_lines(dir + "/metrics.jsonl"), 40);  // records past the checkpoint were recomputed once
  }
}

TEST(JanusTrain, CorruptNewestCheckpointFallsBackToPrevious) {
  const auto& ref = reference_run();
  const auto dir = janus::test::temp_dir("corrupt");
  const pid_t pid = spawn_shell(train_cmd(dir, "--toy-step-sleep-ms 25") + " > " + quote(dir + ".log") + " 2>&1");
  ASSERT_TRUE(wait_for_steps(dir, 20));
  ::kill(pid, SIGKILL);
  wait_exit(pid);
  const auto ckpts = train::CheckpointStore(dir + "/checkpoints", 3).list();
  ASSERT_GE(ckpts.size(), 2u);
  {  // flip one bit in the middle of the newest checkpoint's weights
    const auto f = ckpts[0] + "/model.safetensors";
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    const auto off = static_cast<std::streamoff>(fs::file_size(f) / 2);
    io.seekg(off);
    char c;
    io.get(c);
    io.seekp(off);
    io.put(static_cast<char>(c ^ 0x01));
  }
  // Keep a copy of the previous checkpoint for the explicit-resume check below (retention prunes it later).
  const auto dir2 = janus::test::temp_dir("corrupt2");
  fs::create_directories(dir2 + "/ck");
  fs::copy(ckpts[1], dir2 + "/ck/step", fs::copy_options::recursive);
  const auto r = janus::test::run(train_cmd(dir, "--resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("is corrupt"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resumed from " + ckpts[1]), std::string::npos) << r.output;
  expect_same_final(ref, dir);
  // An explicit --resume of a corrupt checkpoint is an input error (exit 2), not a silent fallback.
  fs::resize_file(dir2 + "/ck/step/state.safetensors", 16);
  const auto r2 = janus::test::run(train_cmd(dir2, "--resume " + quote(dir2 + "/ck/step")));
  EXPECT_EQ(r2.exit_code, 2) << r2.output;
  EXPECT_NE(r2.output.find("corrupt"), std::string::npos) << r2.output;
}

TEST(JanusTrain, SigtermCheckpointsAndExitsZero) {
  const auto& ref = reference_run();
  const auto dir = janus::test::temp_dir("sigterm");
  const pid_t pid = spawn_shell(train_cmd(dir, "--toy-step-sleep-ms 25") + " > " + quote(dir + ".log") + " 2>&1");
  ASSERT_TRUE(wait_for_steps(dir, 8));
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit(pid), 0) << read_file(dir + ".log");
  const auto ckpts = train::CheckpointStore(dir + "/checkpoints", 3).list();
  ASSERT_FALSE(ckpts.empty());
  const int64_t stopped_at = train::CheckpointStore::step_of(ckpts[0]);
  EXPECT_GE(stopped_at, 8);
  EXPECT_LT(stopped_at, 40);
  EXPECT_EQ(count_lines(dir + "/metrics.jsonl"), stopped_at);
  const auto r = janus::test::run(train_cmd(dir, "--resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_final(ref, dir);
}

TEST(JanusTrain, NonFiniteStopExitsOneAndKeepsLastGoodCheckpoint) {
  const auto dir = janus::test::temp_dir("nanstop");
  const auto r = janus::test::run(
      train_cmd(dir, "--set train.debug_nonfinite_steps=[13,14,15,16] --set train.max_nonfinite_steps=4"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("gradients of module 'embed'"), std::string::npos) << r.output;
  const auto ckpts = train::CheckpointStore(dir + "/checkpoints", 3).list();
  ASSERT_FALSE(ckpts.empty());
  EXPECT_EQ(train::CheckpointStore::step_of(ckpts[0]), 12);
  EXPECT_EQ(train::CheckpointStore::validate(ckpts[0]), "");
  EXPECT_FALSE(fs::exists(dir + "/final"));
}

TEST(JanusTrain, TensorBoardAndJsonlAgree) {
  const auto& ref = reference_run();
  const auto out = janus::test::temp_dir("tbread") + "/scalars.json";
  const auto r = janus::test::run_python("read_tb_events.py", {ref + "/tb", out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto tb = nlohmann::json::parse(read_file(out));
  std::ifstream in(ref + "/metrics.jsonl");
  std::string line;
  int64_t n = 0;
  for (const char* tag : {"loss", "mse", "lr", "grad_norm"}) ASSERT_TRUE(tb.contains(tag)) << tag << tb.dump();
  ASSERT_EQ(tb["loss"].size(), 40u);
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    for (const char* tag : {"loss", "mse", "lr", "grad_norm"}) {
      EXPECT_EQ(tb[tag][n][0].get<int64_t>(), j["step"].get<int64_t>());
      EXPECT_FLOAT_EQ(tb[tag][n][1].get<float>(), static_cast<float>(j[tag].get<double>())) << tag;
    }
    ++n;
  }
  EXPECT_EQ(n, 40);
}

TEST(JanusTrain, BadFlagsAndConfigExitTwo) {
  const auto dir = janus::test::temp_dir("badflags");
  EXPECT_EQ(janus::test::run(train_cmd(dir, "--set train.precision=fp8")).exit_code, 2);
  EXPECT_EQ(janus::test::run(train_cmd(dir, "--resume /nonexistent/ckpt")).exit_code, 2);
  EXPECT_EQ(janus::test::run(train_cmd(dir, "--task nope")).exit_code, 2);
}
