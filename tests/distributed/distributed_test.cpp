// Data parallelism on c10d Gloo, CPU, with ranks spawned as separate processes on loopback.
//
// This test executable doubles as the rank program: when JANUS_DIST_WORKER names a scenario, a static
// initializer runs that scenario (a rank of a job started by janus_launch or by the test itself) and exits
// before GoogleTest starts.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>

#include "janus/core/error.h"
#include "janus/train/distributed.h"
#include "test_util.h"

namespace {

using janus::dist::DistributedDataParallel;
using janus::dist::ProcessGroup;

constexpr int64_t kIn = 8, kHidden = 16, kOut = 4, kRowsPerRank = 6;

int env_i(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}
std::string env_s(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

torch::nn::Sequential make_mlp(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(kIn, kHidden), torch::nn::Tanh(), torch::nn::Linear(kHidden, kOut));
}

// The global batch of one micro-step: identical on every rank and in the single-process reference.
std::pair<at::Tensor, at::Tensor> global_batch(int64_t micro_step, int world) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + micro_step);
  auto x = at::randn({world * kRowsPerRank, kIn}, gen);
  auto y = at::randn({world * kRowsPerRank, kOut}, gen);
  return {x, y};
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name, torch::nn::Module& m) {
  if (name == "sgd") {
    return std::make_unique<torch::optim::SGD>(m.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  }
  return std::make_unique<torch::optim::AdamW>(m.parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
}

// Trains `steps` optimizer steps of `accum` micro-steps. pg null: the single-process run over the global batch.
// Checkpoint/resume for the rank program: stop after `stop_after` steps writing a checkpoint into `ckpt_dir`
// (rank 0 writes, barriers around it), or start from the checkpoint in `resume_dir`.
struct Resume {
  int stop_after = -1;
  std::string ckpt_dir, resume_dir;
};

std::vector<at::Tensor> train(const std::shared_ptr<ProcessGroup>& pg, int world, const std::string& opt_name,
                              int steps, int accum, double bucket_mb, size_t* overlapped = nullptr,
                              const Resume& resume = {}) {
  const int rank = pg ? pg->rank() : 0;
  // Ranks start from different weights on purpose: the wrapper's broadcast from rank 0 must fix that.
  auto model = make_mlp(7 + static_cast<uint64_t>(rank));
  auto opt = make_optimizer(opt_name, *model);
  int start = 0;
  if (!resume.resume_dir.empty()) {
    torch::load(model, resume.resume_dir + "/model.pt");
    torch::load(*opt, resume.resume_dir + "/optim.pt");
    std::ifstream(resume.resume_dir + "/step.txt") >> start;
  }
  std::unique_ptr<DistributedDataParallel> ddp;
  if (pg) ddp = std::make_unique<DistributedDataParallel>(model.ptr(), pg, janus::dist::DdpOptions{bucket_mb, true});
  int64_t micro = static_cast<int64_t>(start) * accum;
  for (int s = start; s < steps; ++s) {
    opt->zero_grad();
    for (int a = 0; a < accum; ++a, ++micro) {
      auto [x, y] = global_batch(micro, world);
      if (pg) {
        x = x.narrow(0, rank * kRowsPerRank, kRowsPerRank);
        y = y.narrow(0, rank * kRowsPerRank, kRowsPerRank);
      }
      auto loss = at::mse_loss(model->forward(x), y) / accum;
      if (ddp && a + 1 < accum) {
        auto guard = ddp->no_sync();
        loss.backward();
      } else {
        loss.backward();
      }
    }
    if (ddp) {
      ddp->finish();
      if (overlapped) *overlapped += ddp->buckets_launched_in_backward();
    }
    opt->step();
    if (s + 1 == resume.stop_after) {
      if (pg) pg->barrier();
      if (rank == 0) {
        torch::save(model, resume.ckpt_dir + "/model.pt");
        torch::save(*opt, resume.ckpt_dir + "/optim.pt");
        std::ofstream(resume.ckpt_dir + "/step.txt") << s + 1;
      }
      if (pg) pg->barrier();
      break;
    }
  }
  std::vector<at::Tensor> out;
  for (auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

struct ClipResult {
  at::Tensor loss, grad_w, grad_scale;
};

// A toy two-tower model: image/text projections of the same rows, normalized, CLIP loss.
ClipResult clip_step(const std::shared_ptr<ProcessGroup>& pg, int world) {
  const int rank = pg ? pg->rank() : 0;
  torch::manual_seed(11);
  auto towers = std::make_shared<torch::nn::Module>();
  auto image = towers->register_module("image", torch::nn::Linear(kIn, 6));
  auto text = towers->register_module("text", torch::nn::Linear(kIn, 6));
  auto scale = towers->register_parameter("logit_scale", at::full({}, 2.5));
  std::unique_ptr<DistributedDataParallel> ddp;
  if (pg) ddp = std::make_unique<DistributedDataParallel>(towers, pg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(77);
  auto xi = at::randn({world * kRowsPerRank, kIn}, gen);
  auto xt = at::randn({world * kRowsPerRank, kIn}, gen);
  if (pg) {
    xi = xi.narrow(0, rank * kRowsPerRank, kRowsPerRank);
    xt = xt.narrow(0, rank * kRowsPerRank, kRowsPerRank);
  }
  auto fi = image->forward(xi);
  auto ft = text->forward(xt);
  fi = fi / fi.norm(2, {1}, true);
  ft = ft / ft.norm(2, {1}, true);
  auto loss = janus::dist::gathered_clip_loss(fi, ft, scale, pg);
  loss.backward();
  if (ddp) ddp->finish();
  ClipResult r;
  r.loss =
      pg ? at::full({1}, pg->average(loss.item<double>()), at::kDouble) : loss.detach().to(at::kDouble).reshape({1});
  r.grad_w = at::cat({image->weight.grad().reshape(-1), text->weight.grad().reshape(-1)});
  r.grad_scale = scale.grad().reshape({1}).clone();
  return r;
}

// Rank program scenarios.
int worker_main(const std::string& scenario) {
  at::set_num_threads(1);
  const std::string out = env_s("JANUS_DIST_OUT");
  janus::ParallelConfig cfg;
  cfg.backend = "gloo";
  cfg.timeout_s = env_i("JANUS_DIST_TIMEOUT_S", 30);
  auto pg = ProcessGroup::from_env(cfg);
  const int rank = pg->rank(), world = pg->size();
  if (scenario == "train") {
    size_t overlapped = 0;
    Resume resume{env_i("JANUS_DIST_STOP_AFTER", -1), env_s("JANUS_DIST_CKPT"), env_s("JANUS_DIST_RESUME")};
    auto w = train(pg, world, env_s("JANUS_DIST_OPT", "sgd"), env_i("JANUS_DIST_STEPS", 5),
                   env_i("JANUS_DIST_ACCUM", 1), 0.0005, &overlapped, resume);
    // Helpers: metric average, found-inf MAX, barrier.
    const double avg = pg->average(static_cast<double>(rank));
    const bool inf_any = pg->any_found_inf(rank == world - 1);
    const bool inf_none = pg->any_found_inf(false);
    pg->barrier();
    torch::save(w, out + "/rank" + std::to_string(rank) + ".pt");
    std::ofstream(out + "/rank" + std::to_string(rank) + ".txt")
        << avg << " " << inf_any << " " << inf_none << " " << overlapped << "\n";
  } else if (scenario == "clip") {
    auto r = clip_step(pg, world);
    torch::save(std::vector<at::Tensor>{r.loss, r.grad_w, r.grad_scale}, out + "/rank" + std::to_string(rank) + ".pt");
  } else if (scenario == "unused") {
    // Rank 0 uses both heads, the others only the first: the second head's gradient is rank 0's / world.
    torch::manual_seed(5);
    auto heads = std::make_shared<torch::nn::Module>();
    auto h0 = heads->register_module("h0", torch::nn::Linear(kIn, kOut));
    auto h1 = heads->register_module("h1", torch::nn::Linear(kIn, kOut));
    DistributedDataParallel ddp(heads, pg, janus::dist::DdpOptions{0.0001, true});
    auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + rank);
    auto x = at::randn({kRowsPerRank, kIn}, gen);
    auto y = h0->forward(x).sum();
    if (rank == 0) y = y + h1->forward(x).pow(2).sum();
    y.backward();
    ddp.finish();
    torch::save(std::vector<at::Tensor>{h0->weight.grad(), h1->weight.grad()},
                out + "/rank" + std::to_string(rank) + ".pt");
  } else if (scenario == "die") {
    const int victim = env_i("JANUS_DIST_DIE_RANK", 1);
    auto model = make_mlp(3);
    DistributedDataParallel ddp(model.ptr(), pg);
    for (int step = 0; step < 1000; ++step) {
      if (rank == victim && step == 3) raise(SIGKILL);
      auto x = at::randn({kRowsPerRank, kIn});
      model->forward(x).sum().backward();
      ddp.finish();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::fprintf(stderr, "rank %d: finished without noticing the lost rank\n", rank);
    return 0;
  } else {
    std::fprintf(stderr, "unknown scenario %s\n", scenario.c_str());
    return 2;
  }
  return 0;
}

struct WorkerEntry {
  WorkerEntry() {
    const char* scenario = std::getenv("JANUS_DIST_WORKER");
    if (scenario == nullptr) return;
    int rc = 1;
    try {
      rc = worker_main(scenario);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker error: %s\n", e.what());
      rc = 1;
    }
    std::fflush(stderr);
    std::exit(rc);
  }
} g_worker_entry;

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
}


// Runs the scenario on `world` ranks through janus_launch.
janus::test::CommandResult launch(const std::string& scenario, int world, const std::string& out,
                                  const std::string& extra_env = "") {
  const std::string cmd = "timeout 120 env JANUS_DIST_WORKER=" + scenario +
                          " JANUS_DIST_OUT=" + janus::test::quote(out) + " " + extra_env + " " +
                          janus::test::quote(janus::test::tool("janus_launch")) + " --nproc " + std::to_string(world) +
                          " -- " + janus::test::quote(self_exe());
  return janus::test::run(cmd);
}

std::vector<at::Tensor> load(const std::string& path) {
  std::vector<at::Tensor> v;
  torch::load(v, path);
  return v;
}

::testing::AssertionResult rel_close(const at::Tensor& a, const at::Tensor& b, double rtol) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-12);
  const double diff = (a - b).abs().max().item<double>();
  if (diff <= rtol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max abs diff " << diff << " > " << rtol << " * max|expected| " << scale;
}

class DdpTraining : public ::testing::TestWithParam<std::tuple<int, std::string, int>> {};

TEST_P(DdpTraining, MatchesSingleProcessOnGlobalBatch) {
  const auto [world, opt, accum] = GetParam();
  const int steps = 4;
  const auto out = janus::test::temp_dir("ddp");
  const auto r = launch("train", world, out,
                        "JANUS_DIST_OPT=" + opt + " JANUS_DIST_STEPS=" + std::to_string(steps) +
                            " JANUS_DIST_ACCUM=" + std::to_string(accum));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  at::set_num_threads(1);
  const auto expected = train(nullptr, world, opt, steps, accum, 25);
  const auto rank0 = load(out + "/rank0.pt");
  ASSERT_EQ(rank0.size(), expected.size());
  for (int rank = 0; rank < world; ++rank) {
    const auto w = load(out + "/rank" + std::to_string(rank) + ".pt");
    for (size_t i = 0; i < w.size(); ++i) {
      EXPECT_TRUE(at::equal(w[i], rank0[i])) << "rank " << rank << " parameter " << i << " differs from rank 0";
      EXPECT_TRUE(rel_close(w[i], expected[i], 1e-6)) << "rank " << rank << " parameter " << i;
    }
    std::ifstream f(out + "/rank" + std::to_string(rank) + ".txt");
    double avg = -1;
    int inf_any = -1, inf_none = -1;
    size_t overlapped = 0;
    f >> avg >> inf_any >> inf_none >> overlapped;
    EXPECT_DOUBLE_EQ(avg, (world - 1) / 2.0);
    EXPECT_EQ(inf_any, 1);
    EXPECT_EQ(inf_none, 0);
    // Tiny buckets: most of them must have been launched from hooks while backward was still running.
    EXPECT_GT(overlapped, 0u) << "no bucket was all-reduced during backward";
  }
  // The reference must actually have moved away from the initial weights (the test can fail).
  const auto init = make_mlp(7)->parameters();
  EXPECT_FALSE(at::allclose(expected[0], init[0]));
}

INSTANTIATE_TEST_SUITE_P(Gloo, DdpTraining,
                         ::testing::Values(std::make_tuple(2, std::string("sgd"), 1),
                                           std::make_tuple(2, std::string("adamw"), 2),
                                           std::make_tuple(4, std::string("sgd"), 2),
                                           std::make_tuple(4, std::string("adamw"), 1)));

// Stop all ranks after 2 of 4 steps (checkpoint written by rank 0), restart the job from the checkpoint: the
// weights equal those of the uninterrupted run.
TEST(Ddp, ResumeMatchesUninterruptedRun) {
  const auto full = janus::test::temp_dir("full"), part = janus::test::temp_dir("part"),
             ckpt = janus::test::temp_dir("ckpt");
  const std::string common = "JANUS_DIST_OPT=adamw JANUS_DIST_STEPS=4 JANUS_DIST_ACCUM=2";
  auto r = launch("train", 2, full, common);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = launch("train", 2, part, common + " JANUS_DIST_STOP_AFTER=2 JANUS_DIST_CKPT=" + janus::test::quote(ckpt));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto stopped = load(part + "/rank0.pt");
  r = launch("train", 2, part, common + " JANUS_DIST_RESUME=" + janus::test::quote(ckpt));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto expected = load(full + "/rank0.pt");
  EXPECT_FALSE(at::equal(stopped[0], expected[0])) << "the interrupted run already held the final weights";
  for (int rank = 0; rank < 2; ++rank) {
    const auto w = load(part + "/rank" + std::to_string(rank) + ".pt");
    ASSERT_EQ(w.size(), expected.size());
    for (size_t i = 0; i < w.size(); ++i)
      EXPECT_TRUE(at::equal(w[i], expected[i])) << "rank " << rank << " param " << i;
  }
}

class GatheredClip : public ::testing::TestWithParam<int> {};

TEST_P(GatheredClip, LossAndGradientsMatchSingleProcess) {
  const int world = GetParam();
  const auto out = janus::test::temp_dir("clip");
  const auto r = launch("clip", world, out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto expected = clip_step(nullptr, world);
  for (int rank = 0; rank < world; ++rank) {
    const auto v = load(out + "/rank" + std::to_string(rank) + ".pt");
    EXPECT_TRUE(rel_close(v[0], expected.loss, 1e-6)) << "loss on rank " << rank;
    EXPECT_TRUE(rel_close(v[1], expected.grad_w, 1e-5)) << "projection gradients on rank " << rank;
    EXPECT_TRUE(rel_close(v[2], expected.grad_scale, 1e-5)) << "logit scale gradient on rank " << rank;
  }
}

INSTANTIATE_TEST_SUITE_P(Gloo, GatheredClip, ::testing::Values(2, 4));

TEST(Ddp, UnusedParametersCountAsZero) {
  const int world = 2;
  const auto out = janus::test::temp_dir("unused");
  const auto r = launch("unused", world, out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Reference: each rank's local gradients, averaged.
  at::Tensor g0 = at::zeros({kOut, kIn}), g1 = at::zeros({kOut, kIn});
  for (int rank = 0; rank < world; ++rank) {
    torch::manual_seed(5);
    auto heads = std::make_shared<torch::nn::Module>();
    auto h0 = heads->register_module("h0", torch::nn::Linear(kIn, kOut));
    auto h1 = heads->register_module("h1", torch::nn::Linear(kIn, kOut));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + rank);
    auto x = at::randn({kRowsPerRank, kIn}, gen);
    auto y = h0->forward(x).sum();
    if (rank == 0) y = y + h1->forward(x).pow(2).sum();
    y.backward();
    g0 += h0->weight.grad() / world;
    if (rank == 0) g1 += h1->weight.grad() / world;
  }
  for (int rank = 0; rank < world; ++rank) {
    const auto v = load(out + "/rank" + std::to_string(rank) + ".pt");
    EXPECT_TRUE(rel_close(v[0], g0, 1e-6)) << "rank " << rank;
    EXPECT_TRUE(rel_close(v[1], g1, 1e-6)) << "rank " << rank;
  }
}

// Victim 1: an ordinary rank. Victim 0: also the TCPStore host, so the survivors can only name it by the store
// going away.
class KilledRank : public ::testing::TestWithParam<int> {};

TEST_P(KilledRank, OthersFailWithin60sNamingIt) {
  const int world = 3, victim = GetParam();
  const auto out = janus::test::temp_dir("die");
  const int port = janus::dist::free_loopback_port();
  std::string cmd = "cd " + janus::test::quote(out) + " && export JANUS_DIST_WORKER=die JANUS_DIST_TIMEOUT_S=20 " +
                    "JANUS_DIST_DIE_RANK=" + std::to_string(victim) + " WORLD_SIZE=" + std::to_string(world) +
                    " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + "; ";
  for (int r = 0; r < world; ++r) {
    cmd += "(RANK=" + std::to_string(r) + " timeout -s KILL 90 " + janus::test::quote(self_exe()) + " > log" +
           std::to_string(r) + " 2>&1; echo $? > rc" + std::to_string(r) + ") & ";
  }
  cmd += "wait";
  const auto t0 = std::chrono::steady_clock::now();
  janus::test::run(cmd);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 60.0) << "the surviving ranks took too long to give up";
  for (int r = 0; r < world; ++r) {
    if (r == victim) continue;
    int rc = -1;
    std::ifstream(out + "/rc" + std::to_string(r)) >> rc;
    std::ifstream lf(out + "/log" + std::to_string(r));
    const std::string log((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
    EXPECT_NE(rc, 0) << "rank " << r << " exited 0:\n" << log;
    EXPECT_NE(rc, 137) << "rank " << r << " hung until killed:\n" << log;
    EXPECT_NE(log.find("lost rank " + std::to_string(victim)), std::string::npos) << "rank " << r << ":\n" << log;
    EXPECT_EQ(log.find("finished without noticing"), std::string::npos) << log;
  }
}

// PyTorch's own launcher: torchrun's agent hosts the TCPStore (TORCHELASTIC_USE_AGENT_STORE=True) and the
// ranks connect as clients.
TEST(Torchrun, AgentStoreRendezvousTrainsIdentically) {
  const std::string py = janus::test::python();
  const std::string torchrun = py.substr(0, py.rfind('/')) + "/torchrun";
  ASSERT_EQ(access(torchrun.c_str(), X_OK), 0) << "torchrun not found next to " << py;
  const auto out = janus::test::temp_dir("torchrun");
  const auto r = janus::test::run(
      "timeout 120 env JANUS_DIST_WORKER=train JANUS_DIST_OPT=adamw JANUS_DIST_OUT=" + janus::test::quote(out) + " " +
      janus::test::quote(torchrun) + " --standalone --nproc-per-node 2 --no-python " + janus::test::quote(self_exe()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("from torchrun, torchrun agent's TCPStore"), std::string::npos) << r.output;
  at::set_num_threads(1);
  const auto expected = train(nullptr, 2, "adamw", 5, 1, 25);
  for (int rank = 0; rank < 2; ++rank) {
    const auto w = load(out + "/rank" + std::to_string(rank) + ".pt");
    ASSERT_EQ(w.size(), expected.size());
    for (size_t i = 0; i < w.size(); ++i) EXPECT_TRUE(rel_close(w[i], expected[i], 1e-6)) << "rank " << rank;
  }
}

INSTANTIATE_TEST_SUITE_P(Gloo, KilledRank, ::testing::Values(1, 0));

TEST(JanusLaunch, ForwardsSigtermToTheRanks) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r =
      janus::test::run("exec 2>&1; timeout -s KILL 60 " + janus::test::quote(janus::test::tool("janus_launch")) +
                       " --nproc 2 -- sleep 50 & p=$!; sleep 2; kill -TERM $p; wait $p; echo rc=$?");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.output.find("rc=143"), std::string::npos) << r.output;  // 128 + SIGTERM
  EXPECT_NE(r.output.find("forwarding"), std::string::npos) << r.output;
  EXPECT_LT(seconds, 20.0) << "the ranks did not stop on the forwarded SIGTERM";
}

TEST(JanusLaunch, FailingRankStopsTheOthersAndIsNamed) {
  const auto out = janus::test::temp_dir("launch");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = launch("die", 2, out, "JANUS_DIST_DIE_RANK=1 JANUS_DIST_TIMEOUT_S=20");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "janus_launch hung:\n" << r.output;
  EXPECT_LT(seconds, 60.0);
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("failed"), std::string::npos) << r.output;
}

TEST(JanusLaunch, SetsTorchrunEnvironment) {
  const auto r = janus::test::run(
      janus::test::quote(janus::test::tool("janus_launch")) +
      " --nproc 2 --master-port 29999 -- sh -c 'echo R=$RANK/$WORLD_SIZE L=$LOCAL_RANK/$LOCAL_WORLD_SIZE "
      "M=$MASTER_ADDR:$MASTER_PORT'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("R=0/2 L=0/2 M=127.0.0.1:29999"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("R=1/2 L=1/2 M=127.0.0.1:29999"), std::string::npos) << r.output;
}

TEST(LaunchEnv, ReadsSlurmAndRejectsBadValues) {
  EXPECT_EQ(janus::dist::first_slurm_host("node[003-005,7],gpu1"), "node003");
  EXPECT_EQ(janus::dist::first_slurm_host("a1,b2"), "a1");
  EXPECT_EQ(janus::dist::first_slurm_host("gpu-[12,14]-ib"), "gpu-12-ib");
  EXPECT_THROW(janus::dist::first_slurm_host(""), janus::InputError);
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
  setenv("SLURM_PROCID", "3", 1);
  setenv("SLURM_NTASKS", "8", 1);
  setenv("SLURM_LOCALID", "1", 1);
  setenv("SLURM_NTASKS_PER_NODE", "2", 1);
  setenv("SLURM_NODELIST", "n[10-13]", 1);
  unsetenv("MASTER_ADDR");
  unsetenv("MASTER_PORT");
  auto e = janus::dist::LaunchEnv::from_env();
  EXPECT_EQ(e.source, "slurm");
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "n10");
  EXPECT_EQ(e.master_port, 29500);
  setenv("SLURM_PROCID", "9", 1);
  EXPECT_THROW(janus::dist::LaunchEnv::from_env(), janus::InputError);
  for (const char* v : {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODELIST"}) {
    unsetenv(v);
  }
  setenv("RANK", "x", 1);
  setenv("WORLD_SIZE", "2", 1);
  EXPECT_THROW(janus::dist::LaunchEnv::from_env(), janus::InputError);
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
  EXPECT_EQ(janus::dist::LaunchEnv::from_env().source, "none");
}

TEST(ProcessGroup, SingleProcessNeedsNoNetworkAndRejectsNcclOnCpu) {
  janus::ParallelConfig cfg;
  auto pg = ProcessGroup::create(cfg, janus::dist::LaunchEnv{});
  EXPECT_EQ(pg->size(), 1);
  EXPECT_EQ(pg->backend_name(), "gloo");
  EXPECT_DOUBLE_EQ(pg->average(3.5), 3.5);
  EXPECT_TRUE(pg->any_found_inf(true));
  auto g = pg->all_gather(at::ones({2, 3}));
  EXPECT_EQ(g.sizes(), (at::IntArrayRef{2, 3}));
  cfg.backend = "nccl";
  EXPECT_THROW(ProcessGroup::create(cfg, janus::dist::LaunchEnv{}), janus::InputError);
}

}  // namespace

// Hard negative captions (train.text_negatives) join the image->text side's candidates only:
// loss = (mean_i -log softmax([s_i. ; n_i.])_i + mean_j -log softmax(s_.j)_j) / 2, checked in double by hand.
TEST(GatheredClip, HardNegativesJoinTheImageToTextSide) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const auto unit = [&](int64_t n) {
    auto x = at::randn({n, 4}, gen, at::kDouble);
    return x / x.norm(2, {1}, true);
  };
  const auto fi = unit(3), ft = unit(3), fn = unit(2);
  const auto scale = at::full({}, 4.0, at::kDouble);
  const double got = janus::dist::gathered_clip_loss(fi, ft, scale, nullptr, fn).item<double>();
  double i2t = 0, t2i = 0;
  for (int64_t i = 0; i < 3; ++i) {
    double zi = 0, zt = 0;
    for (int64_t j = 0; j < 3; ++j) {
      zi += std::exp(4 * fi[i].dot(ft[j]).item<double>());
      zt += std::exp(4 * ft[i].dot(fi[j]).item<double>());
    }
    for (int64_t k = 0; k < 2; ++k) zi += std::exp(4 * fi[i].dot(fn[k]).item<double>());
    i2t += -(4 * fi[i].dot(ft[i]).item<double>() - std::log(zi)) / 3;
    t2i += -(4 * ft[i].dot(fi[i]).item<double>() - std::log(zt)) / 3;
  }
  EXPECT_NEAR(got, (i2t + t2i) / 2, 1e-12);
  // Without negatives (or with none) it is the plain loss, which the negatives can only raise.
  const double plain = janus::dist::gathered_clip_loss(fi, ft, scale, nullptr).item<double>();
  EXPECT_DOUBLE_EQ(
      janus::dist::gathered_clip_loss(fi, ft, scale, nullptr, at::empty({0, 4}, at::kDouble)).item<double>(), plain);
  EXPECT_GT(got, plain);
  EXPECT_THROW(janus::dist::gathered_clip_loss(fi, ft, scale, nullptr, unit(2).narrow(1, 0, 3)), c10::Error);
}
