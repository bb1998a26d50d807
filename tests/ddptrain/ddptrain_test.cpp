// janus_train under data parallelism (issue 9 + issue 8 wiring): real processes on loopback through janus_launch,
// direct spawning with torchrun's variables, and torchrun itself; Gloo on CPU.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/io/safetensors.h"
#include "janus/train/distributed.h"
#include "test_util.h"

namespace {

namespace jt = janus::test;
namespace fs = std::filesystem;


std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// janus_train flags shared by the runs of one test: one compute thread per rank, accumulation, AdamW with warmup.
std::string train_args(const std::string& run_dir, int64_t batch, int64_t steps, const std::string& extra = "") {
  return jt::quote(jt::tool("janus_train")) + " --task toy --set train.run_dir=" + jt::quote(run_dir) +
         " --set train.threads=1 --set data.batch_size=" + std::to_string(batch) + " --set train.steps=" +
         std::to_string(steps) +
         " --set train.grad_accum=2 --set optim.lr=3e-3 --set schedule.warmup_steps=2 --set log.every_steps=3"
         " --set parallel.timeout_s=30 " +
         extra;
}

jt::CommandResult launch(int nproc, const std::string& args) {
  return jt::run("exec 2>&1; timeout -s KILL 55 " + jt::quote(jt::tool("janus_launch")) + " --nproc " +
                 std::to_string(nproc) + " -- " + args);
}

janus::TensorMap weights(const std::string& path) {
  EXPECT_TRUE(fs::exists(path)) << path;
  return fs::exists(path) ? janus::load_safetensors(path) : janus::TensorMap{};
}

// Every tensor of `a` within rel (relative to the tensor's max magnitude) of `b`.
void expect_close(const janus::TensorMap& a, const janus::TensorMap& b, double rel, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  for (const auto& [k, v] : b) {
    ASSERT_TRUE(a.count(k)) << what << ": missing " << k;
    const double scale = std::max(1e-12, v.abs().max().item<double>());
    EXPECT_TRUE(jt::all_close(a.at(k), v, rel * scale, rel)) << what << ": " << k;
  }
}

void expect_bit_identical(const janus::TensorMap& a, const janus::TensorMap& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  for (const auto& [k, v] : b) {
    ASSERT_TRUE(a.count(k)) << what << ": missing " << k;
    EXPECT_TRUE(a.at(k).equal(v)) << what << ": " << k << " differs (max diff "
                                  << (a.at(k).to(at::kDouble) - v.to(at::kDouble)).abs().max().item<double>() << ")";
  }
}

std::vector<nlohmann::json> jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_text(path));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace

// (a) 2 ranks x batch 8 == 1 process x batch 16 (grad accumulation 2, AdamW, clipping); every rank holds the same
// weights; rank 0 alone logs, and its logged loss is the mean over ranks (= the single-process loss).
TEST(DdpTrain, TwoRanksMatchSingleProcessOnGlobalBatch) {
  const auto dir = jt::temp_dir("ddp_match");
  const auto single = jt::run("exec 2>&1; " + train_args(dir + "/single", 16, 9, "--toy-dropout 0"));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const auto ddp = launch(2, train_args(dir + "/ddp", 8, 9, "--toy-dropout 0 --save-rank-weights"));
  ASSERT_EQ(ddp.exit_code, 0) << ddp.output;
  EXPECT_NE(ddp.output.find("data parallel: 2 ranks"), std::string::npos) << ddp.output;

  const auto w_single = weights(dir + "/single/final/model.safetensors");
  const auto w_ddp = weights(dir + "/ddp/final/model.safetensors");
  expect_close(w_ddp, w_single, 1e-6, "2 ranks vs single process");
  // The run really trained (a broken DDP that never stepped would not match, but make the failure obvious).
  EXPECT_GT(w_ddp.size(), 0u);
  expect_bit_identical(weights(dir + "/ddp/final/model.rank1.safetensors"),
                       weights(dir + "/ddp/final/model.rank0.safetensors"), "rank 1 vs rank 0");
  expect_bit_identical(weights(dir + "/ddp/final/model.rank0.safetensors"), w_ddp, "rank 0 vs final");

  // One writer: records at steps 3, 6, 9 only (two writers would duplicate them), global loss and samples.
  const auto m_single = jsonl(dir + "/single/metrics.jsonl");
  const auto m_ddp = jsonl(dir + "/ddp/metrics.jsonl");
  ASSERT_EQ(m_ddp.size(), 3u) << read_text(dir + "/ddp/metrics.jsonl");
  ASSERT_EQ(m_single.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(m_ddp[i]["step"], m_single[i]["step"]);
    const double a = m_ddp[i]["loss"].get<double>(), b = m_single[i]["loss"].get<double>();
    EXPECT_NEAR(a, b, 1e-5 * std::abs(b)) << "logged loss must be the mean over ranks, step " << m_ddp[i]["step"];
  }
  EXPECT_LT(m_ddp[2]["loss"].get<double>(), m_ddp[0]["loss"].get<double>()) << "loss did not fall";
  // Only rank 0 writes checkpoints: exactly one final checkpoint directory.
  int ckpts = 0;
  for (const auto& e : fs::directory_iterator(dir + "/ddp/checkpoints")) ckpts += e.is_directory() ? 1 : 0;
  EXPECT_EQ(ckpts, 1);
}

// (b) all ranks SIGKILLed after step 7 (checkpoints every 4 steps, dropout on, accumulation 2); a new 2-rank job
// with --resume auto loads step 4 on every rank and ends bit-identical to an uninterrupted 2-rank run.
TEST(DdpTrain, ResumeAfterAllRanksKilledIsBitIdentical) {
  const auto dir = jt::temp_dir("ddp_resume");
  const std::string ck = "--set checkpoint.every_steps=4 --save-rank-weights";
  const auto full = launch(2, train_args(dir + "/full", 8, 12, ck));
  ASSERT_EQ(full.exit_code, 0) << full.output;

  const auto killed = launch(2, train_args(dir + "/cut", 8, 12, ck + " --toy-kill-at-step 7"));
  ASSERT_NE(killed.exit_code, 0) << killed.output;
  EXPECT_NE(killed.output.find("killed by signal 9"), std::string::npos) << killed.output;
  ASSERT_FALSE(fs::exists(dir + "/cut/final/model.safetensors"));
  ASSERT_TRUE(fs::exists(dir + "/cut/checkpoints/step_000000004")) << killed.output;

  const auto resumed = launch(2, train_args(dir + "/cut", 8, 12, ck) + " --resume auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("at step 4"), std::string::npos) << resumed.output;

  const auto w_full = weights(dir + "/full/final/model.safetensors");
  expect_bit_identical(weights(dir + "/cut/final/model.safetensors"), w_full, "resumed vs uninterrupted");
  expect_bit_identical(weights(dir + "/cut/final/model.rank1.safetensors"), w_full, "resumed rank 1 vs uninterrupted");
}

// (b') an external kill -9 of the launcher's children at an arbitrary time, then --resume auto.
TEST(DdpTrain, ResumeAfterExternalKillIsBitIdentical) {
  const auto dir = jt::temp_dir("ddp_kill9");
  const std::string ck = "--set checkpoint.every_steps=3";
  const auto full = launch(2, train_args(dir + "/full", 8, 15, ck));
  ASSERT_EQ(full.exit_code, 0) << full.output;
  // Start the job slowed down, wait for the step-6 checkpoint, kill -9 the ranks (children of the launcher).
  const std::string cut = dir + "/cut";
  const auto r = jt::run("exec 2>&1; " + jt::quote(jt::tool("janus_launch")) + " --nproc 2 -- " +
                         train_args(cut, 8, 15, ck + " --toy-step-sleep-ms 150") + " > " + jt::quote(dir + "/log") +
                         " 2>&1 & L=$!; for i in $(seq 1 400); do [ -d " + jt::quote(cut + "/checkpoints/step_000000006") +
                         " ] && break; sleep 0.05; done; sleep 0.2; pkill -KILL -P $L; wait $L; echo launcher=$?");
  ASSERT_NE(r.output.find("launcher=1"), std::string::npos) << r.output << read_text(dir + "/log");
  ASSERT_FALSE(fs::exists(cut + "/final/model.safetensors")) << read_text(dir + "/log");
  const auto resumed = launch(2, train_args(cut, 8, 15, ck) + " --resume auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  expect_bit_identical(weights(cut + "/final/model.safetensors"), weights(dir + "/full/final/model.safetensors"),
                       "resumed after kill -9 vs uninterrupted");
}

// (c) rank 1 of 3 dies mid-run (no launcher: the survivors must notice on their own): ranks 0 and 2 exit
// non-zero well within 60 s, naming rank 1.
TEST(DdpTrain, KilledRankMakesOthersFailNamingIt) {
  const auto dir = jt::temp_dir("ddp_die");
  const int world = 3;
  std::string cmd = "cd " + jt::quote(dir) + " && export WORLD_SIZE=3 LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 " +
                    "MASTER_PORT=" + std::to_string(janus::dist::free_loopback_port()) + "; ";
  const std::string args =
      train_args(dir + "/run", 4, 100000, "--toy-step-sleep-ms 20 --toy-kill-at-step 5 --toy-kill-rank 1");
  for (int r = 0; r < world; ++r) {
    cmd += "(RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) + " timeout -s KILL 90 " + args +
           " > log" + std::to_string(r) + " 2>&1; echo $? > rc" + std::to_string(r) + ") & ";
  }
  cmd += "wait";
  const auto t0 = std::chrono::steady_clock::now();
  jt::run(cmd);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 60.0);
  EXPECT_EQ(std::stoi(read_text(dir + "/rc1")), 137) << read_text(dir + "/log1");
  for (int r : {0, 2}) {
    const auto log = read_text(dir + "/log" + std::to_string(r));
    const int rc = std::stoi(read_text(dir + "/rc" + std::to_string(r)));
    EXPECT_NE(rc, 0) << "rank " << r << ":\n" << log;
    EXPECT_NE(rc, 137) << "rank " << r << " hung until killed:\n" << log;
    EXPECT_NE(log.find("lost rank 1"), std::string::npos) << "rank " << r << ":\n" << log;
  }
}

// (c') the same through janus_launch: the launcher reports the dead rank and exits 1, nothing hangs.
TEST(DdpTrain, KilledRankUnderJanusLaunchFailsFast) {
  const auto dir = jt::temp_dir("ddp_die_launch");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = launch(
      2, train_args(dir + "/run", 4, 100000, "--toy-step-sleep-ms 20 --toy-kill-at-step 5 --toy-kill-rank 1"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_LT(seconds, 60.0);
  EXPECT_NE(r.output.find("rank 1 was killed by signal 9"), std::string::npos) << r.output;
}

// (d) PyTorch's torchrun from the venv (agent-hosted TCPStore) runs janus_train data-parallel: same weights as
// a single process over the global batch.
TEST(DdpTrain, TorchrunStandaloneMatchesSingleProcess) {
  const std::string py = jt::python();
  const std::string torchrun = py.substr(0, py.rfind('/')) + "/torchrun";
  ASSERT_EQ(access(torchrun.c_str(), X_OK), 0) << "torchrun not found next to " << py;
  const auto dir = jt::temp_dir("ddp_torchrun");
  const auto single = jt::run("exec 2>&1; " + train_args(dir + "/single", 16, 6, "--toy-dropout 0"));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const auto tr = jt::run("exec 2>&1; timeout -s KILL 55 " + jt::quote(torchrun) +
                          " --standalone --nproc-per-node 2 --no-python " +
                          train_args(dir + "/tr", 8, 6, "--toy-dropout 0 --save-rank-weights"));
  ASSERT_EQ(tr.exit_code, 0) << tr.output;
  EXPECT_NE(tr.output.find("data parallel: 2 ranks (torchrun via the agent's store)"), std::string::npos) << tr.output;
  expect_close(weights(dir + "/tr/final/model.safetensors"), weights(dir + "/single/final/model.safetensors"), 1e-6,
               "torchrun 2 ranks vs single process");
  expect_bit_identical(weights(dir + "/tr/final/model.rank1.safetensors"),
                       weights(dir + "/tr/final/model.rank0.safetensors"), "torchrun rank 1 vs rank 0");
}

// SIGTERM reaching only rank 1: the ranks agree (any_rank) to stop after the same step, rank 0 checkpoints, every
// rank exits 0 (launcher 0); --resume auto then ends bit-identical to the uninterrupted run. Without the agreement
// rank 1 would leave alone and rank 0 would fail with a lost rank.
TEST(DdpTrain, SigtermOnOneRankStopsAllAtTheSameStep) {
  const auto dir = jt::temp_dir("ddp_term");
  const std::string ck = "--set checkpoint.every_steps=4";
  const auto full = launch(2, train_args(dir + "/full", 8, 16, ck));
  ASSERT_EQ(full.exit_code, 0) << full.output;
  const std::string cut = dir + "/cut";
  const auto r = jt::run("exec 2>&1; " + jt::quote(jt::tool("janus_launch")) + " --nproc 2 -- " +
                         train_args(cut, 8, 16, ck + " --toy-step-sleep-ms 100") + " > " + jt::quote(dir + "/log") +
                         " 2>&1 & L=$!; for i in $(seq 1 400); do [ -d " + jt::quote(cut + "/checkpoints/step_000000004") +
                         " ] && break; sleep 0.05; done; sleep 0.25; kill -TERM $(pgrep -P $L | sort -n | tail -n 1); "
                         "wait $L; echo launcher=$?");
  const auto log = read_text(dir + "/log");
  ASSERT_NE(r.output.find("launcher=0"), std::string::npos) << r.output << log;
  EXPECT_NE(log.find("stop requested"), std::string::npos) << log;
  ASSERT_FALSE(fs::exists(cut + "/final/model.safetensors")) << log;
  const auto resumed = launch(2, train_args(cut, 8, 16, ck) + " --resume auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  EXPECT_EQ(resumed.output.find("at step 4\n"), std::string::npos) << "expected a stop checkpoint after step 4";
  expect_bit_identical(weights(cut + "/final/model.safetensors"), weights(dir + "/full/final/model.safetensors"),
                       "resumed after SIGTERM vs uninterrupted");
}

// Non-finite gradients under DDP: the skip decision and the K-consecutive stop are agreed through any_rank, so both
// ranks skip the same steps and stop together naming the module; rank 0's last good checkpoint stays the newest.
TEST(DdpTrain, NonFiniteStopIsTakenByEveryRank) {
  const auto dir = jt::temp_dir("ddp_nan");
  const auto r = launch(2, train_args(dir + "/run", 8, 12,
                                      "--set checkpoint.every_steps=3 --set train.debug_nonfinite_steps=[6,7,8] "
                                      "--set train.max_nonfinite_steps=3"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (int rank : {0, 1}) {
    EXPECT_NE(r.output.find("[rank " + std::to_string(rank) + "] [error] training stopped: gradients of module"),
              std::string::npos)
        << r.output;
  }
  EXPECT_NE(r.output.find("last good checkpoint: " + dir + "/run/checkpoints/step_000000006"), std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(dir + "/run/checkpoints/step_000000006")) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/run/checkpoints/step_000000009")) << r.output;
}
