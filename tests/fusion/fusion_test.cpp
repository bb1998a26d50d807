#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "janus/core/registry.h"
#include "janus/fusion/fusion.h"
#include "janus/io/module_io.h"
#include "test_util.h"

using janus::test::all_close;

namespace {
janus::FusionTransformerOptions small(bool causal) {
  janus::FusionTransformerOptions o(32, 4, 2);
  o.block().causal(causal).block_size(8).density(0.5).bucket_size(8).n_hashes(2).chunk(16);
  return o;
}
}  // namespace

TEST(DualStreamFusion, ShapesGateAndMask) {
  torch::manual_seed(0);
  janus::DualStreamFusion m(janus::DualStreamFusionOptions(32, 4).block_size(8).bucket_size(8).n_hashes(2));
  auto x = torch::randn({2, 50, 32});  // 50: not a multiple of the block or 2 * bucket size (padded inside)
  auto y = m->forward(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_EQ(m->last_gate().sizes(), x.sizes());
  EXPECT_TRUE(((m->last_gate() > 0) & (m->last_gate() < 1)).all().item<bool>());
  // Masked (padding) tokens do not influence real tokens. Exact for the causal variant; the LSH stream is not
  // invariant, because padding tokens still take slots in the hash-sorted chunks (as in reformer-pytorch).
  janus::DualStreamFusion c(janus::DualStreamFusionOptions(32, 4).block_size(8).causal(true).chunk(16));
  auto mask = torch::ones({2, 64}, torch::kBool);
  mask.narrow(1, 10, 6).fill_(false);
  mask[1].narrow(0, 40, 24).fill_(false);
  auto x64 = torch::randn({2, 64, 32});
  auto x64b = x64.clone();
  x64b.narrow(1, 10, 6).normal_();
  x64b[1].narrow(0, 40, 24).normal_();
  auto keep = mask.unsqueeze(-1);
  auto y1 = c->forward(x64, mask) * keep;
  auto y2 = c->forward(x64b, mask) * keep;
  EXPECT_TRUE(all_close(y1, y2, 1e-5));
  EXPECT_FALSE(all_close(c->forward(x64), c->forward(x64b), 1e-3));
  EXPECT_TRUE(m->forward(x64, mask).isfinite().all().item<bool>());
  EXPECT_THROW(m->forward(torch::randn({2, 8, 31})), c10::Error);
  EXPECT_THROW(janus::DualStreamFusion(janus::DualStreamFusionOptions(30, 4)), c10::Error);
}

TEST(DualStreamFusion, GateMixesTheTwoStreams) {
  torch::manual_seed(1);
  janus::DualStreamFusion m(janus::DualStreamFusionOptions(16, 2).block_size(8).bucket_size(8).n_hashes(1));
  auto x = torch::randn({1, 32, 16});
  m->lsh_attn->set_rotations(torch::randn({8, 1, 2}));  // otherwise every call draws new rotations
  torch::NoGradGuard ng;
  // Gate saturated to 1: the LSH stream must not matter; saturated to 0: the sparse stream must not matter.
  m->gate->weight.zero_();
  m->gate->bias.fill_(40.0);
  auto a1 = m->forward(x);
  m->lsh_proj->weight.normal_();
  EXPECT_TRUE(all_close(m->forward(x), a1, 1e-6));
  m->gate->bias.fill_(-40.0);
  auto b1 = m->forward(x);
  m->sparse_proj->weight.normal_();
  EXPECT_TRUE(all_close(m->forward(x), b1, 1e-6));
  m->gate->bias.zero_();
  EXPECT_FALSE(all_close(m->forward(x), b1, 1e-3));
}

TEST(FusionTransformer, CachedDecodingEqualsUncachedCausalForward) {
  torch::manual_seed(2);
  janus::FusionTransformer net(small(true));
  net->eval();
  const int64_t L = 37;
  auto x = torch::randn({2, L, 32});
  torch::NoGradGuard ng;
  auto full = net->forward(x);
  // Causality: changing the future does not change the past.
  auto x2 = x.clone();
  x2.narrow(1, 20, L - 20).normal_();
  EXPECT_TRUE(all_close(net->forward(x2).narrow(1, 0, 20), full.narrow(1, 0, 20), 1e-5));
  // Prefill 5 tokens, then one token at a time, then a 3-token step.
  auto cache = net->new_cache();
  std::vector<at::Tensor> outs{net->forward_step(x.narrow(1, 0, 5), cache)};
  int64_t t = 5;
  for (; t < L - 3; ++t) outs.push_back(net->forward_step(x.narrow(1, t, 1), cache));
  outs.push_back(net->forward_step(x.narrow(1, t, 3), cache));
  EXPECT_EQ(cache.length(), L);
  auto cached = torch::cat(outs, 1);
  for (int64_t p = 0; p < L; ++p)
    EXPECT_TRUE(all_close(cached.select(1, p), full.select(1, p), 1e-5)) << "position " << p;
}

TEST(FusionTransformer, CacheErrors) {
  janus::FusionTransformer bidir(small(false));
  auto cache = bidir->new_cache();
  EXPECT_THROW(bidir->forward_step(torch::randn({1, 1, 32}), cache), c10::Error);
  janus::FusionTransformer causal(small(true));
  janus::KVCache wrong;
  EXPECT_THROW(causal->forward_step(torch::randn({1, 1, 32}), wrong), c10::Error);
}

TEST(FusionTransformer, SaveLoadRoundTripAndKeys) {
  const auto dir = janus::test::temp_dir();
  torch::manual_seed(3);
  janus::FusionTransformer a(small(true));
  torch::manual_seed(4);
  janus::FusionTransformer b(small(true));
  auto x = torch::randn({1, 20, 32});
  ASSERT_FALSE(torch::allclose(a->forward(x), b->forward(x)));
  janus::save_module(*a, dir + "/f.safetensors");
  EXPECT_TRUE(janus::load_module(*b, dir + "/f.safetensors").ok());
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
  auto names = a->named_parameters().keys();
  EXPECT_THAT(names, ::testing::Contains("blocks.0.sparse_qkv.weight"));
  EXPECT_THAT(names, ::testing::Contains("blocks.1.lsh_qkv.weight"));
  EXPECT_THAT(names, ::testing::Contains("blocks.1.gate.weight"));
  EXPECT_THAT(names, ::testing::Contains("blocks.0.mlp.fc1.weight"));
  EXPECT_THAT(names, ::testing::Contains("norm.weight"));
}

TEST(FusionTransformer, TrainsGradientsReachEveryParameter) {
  torch::manual_seed(5);
  janus::FusionTransformer net(small(false));
  auto x = torch::randn({2, 32, 32});
  net->forward(x).pow(2).mean().backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(p.value().grad().isfinite().all().item<bool>()) << p.key();
  }
}

TEST(FusionRegistry, EveryModuleBuildsAndRuns) {
  auto& reg = janus::ModuleRegistry::global();
  for (const std::string name : {"block_sparse_attention", "chunked_attention", "lsh_attention"}) {
    ASSERT_TRUE(reg.contains(name)) << name;
    auto m = reg.build(name, nlohmann::json::object());
    EXPECT_TRUE(m.module != nullptr);
  }
  auto opts = nlohmann::json{{"dim", 16}, {"num_heads", 2}, {"block_size", 8}, {"bucket_size", 8}, {"n_hashes", 1}};
  for (const std::string name : {"dual_stream_fusion", "fusion_transformer"}) {
    ASSERT_TRUE(reg.contains(name)) << name;
    auto m = reg.build(name, opts);
    auto out = reg.run(name, m, {{"x", torch::randn({1, 24, 16})}});
    EXPECT_EQ(out.at("y").sizes(), (at::IntArrayRef{1, 24, 16})) << name;
  }
  auto q = torch::randn({1, 2, 32, 8});
  auto bs = reg.build("block_sparse_attention", {{"block_size", 8}, {"density", 1.0}});
  auto ch = reg.build("chunked_attention", {{"query_chunk", 8}});
  auto y1 = reg.run("block_sparse_attention", bs, {{"q", q}, {"k", q}, {"v", q}}).at("y");
  auto y2 = reg.run("chunked_attention", ch, {{"q", q}, {"k", q}, {"v", q}}).at("y");
  EXPECT_TRUE(all_close(y1, y2, 1e-5));
  auto lsh = reg.build("lsh_attention", {{"bucket_size", 8}});
  EXPECT_EQ(reg.run("lsh_attention", lsh, {{"qk", q}, {"v", q}}).at("y").sizes(), q.sizes());
}

// dense = true (ablation): a plain pre-LN transformer block, checked against the formula written out with
// dense_attention; masked keys are ignored; the causal variant's KV cache equals its uncached forward.
TEST(DualStreamFusion, DenseBlockIsAPlainTransformerBlock) {
  torch::manual_seed(4);
  auto o = small(false).block();
  o.dense(true);
  janus::DualStreamFusion blk(o);
  blk->eval();
  EXPECT_FALSE(blk->lsh_qkv) << "dense blocks have no generation stream";
  EXPECT_FALSE(blk->gate);
  auto x = torch::randn({2, 11, 32});
  auto mask = torch::ones({2, 11}, torch::kBool);
  mask[1].slice(0, 8).fill_(false);
  torch::NoGradGuard ng;
  auto y = blk->forward(x, mask);
  auto h = blk->norm1->forward(x);
  auto qkv = blk->sparse_qkv->forward(h).chunk(3, -1);
  auto heads = [](const at::Tensor& t) { return t.reshape({2, 11, 4, 8}).transpose(1, 2); };
  auto a = janus::dense_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), mask.view({2, 1, 1, 11}),
                                  1.0 / std::sqrt(8.0));
  auto r = x + blk->sparse_proj->forward(a.transpose(1, 2).reshape({2, 11, 32}));
  r = r + blk->mlp->forward(blk->norm2->forward(r));
  EXPECT_TRUE(all_close(y, r, 1e-5));

  auto oc = small(true);
  oc.block().dense(true);
  janus::FusionTransformer net(oc);
  net->eval();
  auto xs = torch::randn({2, 13, 32});
  auto full = net->forward(xs);
  auto cache = net->new_cache();
  auto first = net->forward_step(xs.narrow(1, 0, 4), cache);
  std::vector<at::Tensor> outs{first};
  for (int64_t t = 4; t < 13; ++t) outs.push_back(net->forward_step(xs.narrow(1, t, 1), cache));
  EXPECT_TRUE(all_close(torch::cat(outs, 1), full, 1e-5));
}
