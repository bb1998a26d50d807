#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include "janus/core/error.h"
#include "janus/io/safetensors.h"
#include "janus/train/gradnorm.h"
#include "test_util.h"

using janus::InputError;
using janus::TensorMap;
using janus::train::GradNorm;

namespace {

std::vector<std::string> names(int64_t T) {
  std::vector<std::string> n;
  for (int64_t i = 0; i < T; ++i) n.push_back("task" + std::to_string(i));
  return n;
}

// The toy network of tests/python/gradnorm_ref.py, loaded from its init weights.
struct ToyNet {
  torch::nn::Linear l1{4, 16}, l2{16, 16};
  std::vector<torch::nn::Linear> heads;
  ToyNet(const TensorMap& t, int64_t T) {
    torch::NoGradGuard ng;
    l1->weight.copy_(t.at("l1.weight"));
    l1->bias.copy_(t.at("l1.bias"));
    l2->weight.copy_(t.at("l2.weight"));
    l2->bias.copy_(t.at("l2.bias"));
    for (int64_t i = 0; i < T; ++i) {
      heads.emplace_back(16, 1);
      heads.back()->weight.copy_(t.at("head" + std::to_string(i) + ".weight"));
      heads.back()->bias.copy_(t.at("head" + std::to_string(i) + ".bias"));
    }
  }
  std::vector<at::Tensor> params() {
    std::vector<at::Tensor> p{l1->weight, l1->bias, l2->weight, l2->bias};
    for (auto& h : heads) {
      p.push_back(h->weight);
      p.push_back(h->bias);
    }
    return p;
  }
  std::vector<at::Tensor> losses(const at::Tensor& x, const at::Tensor& y) {
    auto f = at::tanh(l2->forward(at::tanh(l1->forward(x))));
    std::vector<at::Tensor> out;
    for (size_t t = 0; t < heads.size(); ++t)
      out.push_back(at::mse_loss(heads[t]->forward(f).squeeze(-1), y.select(-1, static_cast<int64_t>(t))));
    return out;
  }
};

struct Case {
  int64_t T;
  double alpha, lr;
  int64_t K;
};

void parity(const std::string& path, const Case& c) {
  const int64_t T = c.T, K = c.K;
  const double alpha = c.alpha, lr = c.lr;
  const auto t = janus::load_safetensors(path);
  ToyNet net(t, T);
  torch::optim::SGD opt(net.params(), torch::optim::SGDOptions(0.05));
  GradNorm gn(names(T), alpha, lr);
  const auto x = t.at("x"), y = t.at("y");
  double max_diff = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    opt.zero_grad();  // libtorch's zero_grad resets .grad to undefined
    auto losses = net.losses(x[k], y[k]);
    auto total = gn.combine(losses, {net.l2->weight, net.l2->bias});
    for (auto& p : net.params()) EXPECT_FALSE(p.grad().defined()) << "combine() must not populate .grad";
    EXPECT_TRUE(janus::test::all_close(at::stack(losses).detach(), t.at("expected_losses")[k], 1e-5, 1e-5))
        << "losses at step " << k;
    total.backward();
    opt.step();
    gn.step();
    ASSERT_TRUE(janus::test::all_close(gn.weights(), t.at("expected_weights")[k], 1e-5)) << "weights at step " << k;
    max_diff = std::max(max_diff, (gn.weights() - t.at("expected_weights")[k]).abs().max().item<double>());
    EXPECT_NEAR(gn.weights().sum().item<double>(), static_cast<double>(T), 1e-5);
  }
  std::string final_w;
  for (int64_t i = 0; i < T; ++i) final_w += (i ? ", " : "") + std::to_string(gn.weights()[i].item<double>());
  std::printf("gradnorm parity T=%ld alpha=%g: max |w - w_ref| over %ld steps = %.3g, final w = [%s]\n",
              static_cast<long>(T), alpha, static_cast<long>(K), max_diff, final_w.c_str());
}

// Shared parameter W and losses L_i = s_i * sum(W^2) with chosen scales.
std::vector<at::Tensor> scaled_losses(const at::Tensor& W, const std::vector<double>& s) {
  std::vector<at::Tensor> out;
  for (double v : s) out.push_back(v * (W * W).sum());
  return out;
}

}  // namespace

// One python run for both cases (interpreter start-up dominates the test time).
TEST(GradNorm, ParityWithPaperReference) {
  const std::vector<Case> cases{{3, 1.5, 0.025, 30}, {2, 0.5, 0.05, 20}};
  const auto dir = janus::test::temp_dir("gradnorm");
  std::vector<std::string> args;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    for (auto a : {dir + "/ref" + std::to_string(i) + ".safetensors", std::to_string(c.T), std::to_string(c.alpha),
                   std::to_string(c.lr), std::to_string(c.K)})
      args.push_back(a);
  }
  auto r = janus::test::run_python("gradnorm_ref.py", args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (size_t i = 0; i < cases.size(); ++i) parity(dir + "/ref" + std::to_string(i) + ".safetensors", cases[i]);
}

TEST(GradNorm, SlowerTaskGetsLargerWeightAndSumIsT) {
  auto W = at::ones({4}).requires_grad_(true);
  GradNorm gn(names(2), 1.5, 0.05);
  gn.combine(scaled_losses(W, {1.0, 1.0}), {W});  // fixes L(0)
  gn.step();
  for (int k = 0; k < 10; ++k) {
    // task 0's loss halved (fast), task 1's unchanged (slow)
    gn.combine(scaled_losses(W, {0.5, 1.0}), {W});
    gn.step();
    EXPECT_NEAR(gn.weights().sum().item<double>(), 2.0, 1e-5);
  }
  const auto w = gn.weights();
  EXPECT_GT(w[1].item<double>(), w[0].item<double>());
  EXPECT_GT(w[0].item<double>(), 0.0);
  EXPECT_FALSE(W.grad().defined());
}

TEST(GradNorm, CombineReturnsDetachedWeightedSum) {
  auto W = at::ones({3}).requires_grad_(true);
  GradNorm gn(names(2));
  auto losses = scaled_losses(W, {2.0, 3.0});
  auto total = gn.combine(losses, {W});
  EXPECT_EQ(total.scalar_type(), at::kFloat);
  EXPECT_NEAR(total.item<double>(), 15.0, 1e-6);  // w = 1 initially: 2*3 + 3*3
  total.backward();
  // d/dW (w0 * 2 + w1 * 3) * sum(W^2) = 10 * W with w detached at 1
  EXPECT_TRUE(janus::test::all_close(W.grad(), at::full({3}, 10.0), 1e-6));
}

TEST(GradNorm, AccumulationAveragesMicroBatches) {
  auto W = at::ones({4}).requires_grad_(true);
  GradNorm a(names(2)), b(names(2));
  for (auto* g : {&a, &b}) {
    g->combine(scaled_losses(W, {1.0, 1.0}), {W});
    g->step();
  }
  for (int k = 0; k < 3; ++k) {
    a.combine(scaled_losses(W, {0.5, 1.0}), {W});
    b.combine(scaled_losses(W, {0.5, 1.0}), {W});
    b.combine(scaled_losses(W, {0.5, 1.0}), {W});  // the same micro-batch twice = one call
    a.step();
    b.step();
    EXPECT_TRUE(janus::test::all_close(a.weights(), b.weights(), 1e-7));
  }
  a.step();  // nothing recorded: no-op
  EXPECT_TRUE(janus::test::all_close(a.weights(), b.weights(), 1e-7));
}

TEST(GradNorm, Bf16LossesComputeInFloat) {
  auto W = at::ones({4}).requires_grad_(true);
  GradNorm gn(names(2));
  auto l = scaled_losses(W, {1.0, 2.0});
  auto total = gn.combine({l[0].to(at::kBFloat16), l[1].to(at::kBFloat16)}, {W});
  EXPECT_EQ(total.scalar_type(), at::kFloat);
  gn.step();
  EXPECT_TRUE(at::isfinite(gn.weights()).all().item<bool>());
}

TEST(GradNorm, SaveLoadRoundTripContinuesIdentically) {
  auto W = at::ones({4}).requires_grad_(true);
  GradNorm a(names(3), 1.2, 0.03);
  std::vector<std::vector<double>> schedule;
  for (int k = 0; k < 12; ++k) schedule.push_back({1.0 / (1 + 0.3 * k), 1.0 / (1 + 0.05 * k), 1.0});
  for (int k = 0; k < 6; ++k) {
    a.combine(scaled_losses(W, schedule[k]), {W});
    a.step();
  }
  TensorMap state;
  a.save(state, "gradnorm.");
  const auto file = janus::test::temp_dir("gradnorm_io") + "/gn.safetensors";
  janus::save_safetensors(file, state);
  GradNorm b(names(3), 1.2, 0.03);
  b.load(janus::load_safetensors(file), "gradnorm.");
  EXPECT_TRUE(at::equal(a.weights(), b.weights()));
  for (int k = 6; k < 12; ++k) {
    a.combine(scaled_losses(W, schedule[k]), {W});
    b.combine(scaled_losses(W, schedule[k]), {W});
    a.step();
    b.step();
    EXPECT_TRUE(at::equal(a.weights(), b.weights())) << "step " << k;
  }
  // A fresh object (no L(0), no Adam state) diverges: the state matters.
  GradNorm c(names(3), 1.2, 0.03);
  c.combine(scaled_losses(W, schedule[6]), {W});
  c.step();
  EXPECT_FALSE(at::equal(c.weights(), b.weights()));
}

TEST(GradNorm, LoadRejectsMissingOrMisShapedKeys) {
  GradNorm a(names(2));
  TensorMap state;
  a.save(state, "gn.");
  auto missing = state;
  missing.erase("gn.adam_exp_avg");
  GradNorm b(names(2));
  try {
    b.load(missing, "gn.");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gn.adam_exp_avg"), std::string::npos) << e.what();
  }
  GradNorm three(names(3));
  try {
    three.load(state, "gn.");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gn.weights"), std::string::npos) << e.what();
  }
}

TEST(GradNorm, RejectsBadInput) {
  EXPECT_THROW(GradNorm({}), InputError);
  EXPECT_THROW(GradNorm(names(2), 1.5, 0.0), InputError);
  auto W = at::ones({2}).requires_grad_(true);
  GradNorm gn(names(2));
  EXPECT_THROW(gn.combine(scaled_losses(W, {1.0}), {W}), InputError);
  EXPECT_THROW(gn.combine(scaled_losses(W, {1.0, 1.0}), {}), InputError);
  EXPECT_THROW(gn.combine({at::ones({2}), at::ones({})}, {W}), InputError);
}
