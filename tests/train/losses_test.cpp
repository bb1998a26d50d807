#include <cmath>
#include <limits>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/train/losses.h"
#include "test_util.h"

using janus::InputError;
using janus::train::itm_hard_negatives;
using janus::train::masked_mean;

namespace {
at::Generator seeded(uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return g;
}
}  // namespace

TEST(ItmHardNegatives, NeverDiagonalAndInt64) {
  auto gen = seeded(0);
  // A strongly diagonal similarity (the positives dominate) must still never pick the diagonal.
  auto sim = at::eye(6) * 50.0 + at::randn({6, 6}, gen) * 0.1;
  for (int k = 0; k < 200; ++k) {
    auto j = itm_hard_negatives(sim, gen);
    ASSERT_EQ(j.scalar_type(), at::kLong);
    ASSERT_EQ(j.sizes(), (std::vector<int64_t>{6}));
    EXPECT_FALSE(at::eq(j, at::arange(6)).any().item<bool>());
    EXPECT_TRUE((j >= 0).all().item<bool>() && (j < 6).all().item<bool>());
  }
  // B = 2: the only negative is the other column.
  auto two = itm_hard_negatives(at::zeros({2, 2}), gen);
  EXPECT_EQ(two[0].item<int64_t>(), 1);
  EXPECT_EQ(two[1].item<int64_t>(), 0);
}

TEST(ItmHardNegatives, PrefersHigherSimilarity) {
  auto gen = seeded(7);
  // Row i: column (i+1)%B has similarity 2, the others 0. softmax weight ratio e^2 ~ 7.4 vs 1 each.
  const int64_t B = 4, N = 4000;
  auto sim = at::zeros({B, B});
  for (int64_t i = 0; i < B; ++i) sim[i][(i + 1) % B] = 2.0;
  std::vector<at::Tensor> draws;
  for (int64_t k = 0; k < N; ++k) draws.push_back(itm_hard_negatives(sim, gen));
  auto counts = at::one_hot(at::stack(draws), B).sum(0);  // [B rows, B columns]
  // Expected share of the hard column: e^2 / (e^2 + 2) = 0.787.
  for (int64_t i = 0; i < B; ++i) {
    const double share = counts[i][(i + 1) % B].item<double>() / N;
    EXPECT_NEAR(share, std::exp(2.0) / (std::exp(2.0) + 2.0), 0.03) << "row " << i;
    EXPECT_EQ(counts[i][i].item<int64_t>(), 0);
  }
}

TEST(ItmHardNegatives, DeterministicBySeed) {
  auto sim = at::randn({8, 8}, seeded(3));
  auto a = itm_hard_negatives(sim, seeded(42));
  auto b = itm_hard_negatives(sim, seeded(42));
  EXPECT_TRUE(at::equal(a, b));
  bool any_diff = false;
  for (uint64_t s = 0; s < 10 && !any_diff; ++s) any_diff = !at::equal(itm_hard_negatives(sim, seeded(100 + s)), a);
  EXPECT_TRUE(any_diff) << "different seeds should give different draws";
  // bf16 input and no gradient flows through the sampling
  auto sb = sim.to(at::kBFloat16).requires_grad_(true);
  auto c = itm_hard_negatives(sb, seeded(42));
  EXPECT_FALSE(c.requires_grad());
}

TEST(ItmHardNegatives, RejectsBadInput) {
  auto gen = seeded(0);
  EXPECT_THROW(itm_hard_negatives(at::zeros({1, 1}), gen), InputError);
  EXPECT_THROW(itm_hard_negatives(at::zeros({3, 2}), gen), InputError);
  EXPECT_THROW(itm_hard_negatives(at::zeros({3}), gen), InputError);
  auto bad = at::zeros({3, 3});
  bad[0][1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(itm_hard_negatives(bad, gen), InputError);
}

TEST(MaskedMean, MeanOverMaskAndEmptyMask) {
  auto x = at::tensor({1.0, 2.0, 3.0, 4.0}).requires_grad_(true);
  auto m = at::tensor({1, 0, 1, 0}).to(at::kBool);
  auto v = masked_mean(x, m);
  EXPECT_NEAR(v.item<double>(), 2.0, 1e-7);
  v.backward();
  EXPECT_TRUE(janus::test::all_close(x.grad(), at::tensor({0.5, 0.0, 0.5, 0.0}).to(at::kFloat), 1e-7));
  EXPECT_NEAR(masked_mean(x, at::zeros({4}, at::kBool)).item<double>(), 0.0, 0.0);
  // broadcast mask [B, 1] over [B, L]
  auto y = at::arange(6, at::kFloat).view({2, 3});
  EXPECT_NEAR(masked_mean(y, at::tensor({1, 0}).to(at::kBool).view({2, 1})).item<double>(), 1.0, 1e-7);
}
