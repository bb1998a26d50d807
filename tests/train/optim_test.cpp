#include <cmath>

#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/train/freeze.h"
#include "janus/train/optim.h"
#include "janus/train/toy_task.h"
#include "test_util.h"

using namespace janus;
using namespace janus::train;

namespace {
NamedParams named(torch::nn::Module& m) {
  NamedParams out;
  for (auto& it : m.named_parameters()) out.emplace_back(it.key(), it.value());
  return out;
}
}  // namespace

TEST(Freeze, GlobMatching) {
  EXPECT_TRUE(glob_match("encoders.vision.*", "encoders.vision.blocks.0.weight"));
  EXPECT_FALSE(glob_match("encoders.vision.*", "encoders.text.blocks.0.weight"));
  EXPECT_TRUE(glob_match("*.bias", "a.b.bias"));
  EXPECT_TRUE(glob_match("blocks.?.attn*", "blocks.3.attn.qkv.weight"));
  EXPECT_FALSE(glob_match("blocks.?.attn*", "blocks.12.attn.qkv.weight"));
  EXPECT_TRUE(glob_match("", ""));
  EXPECT_FALSE(glob_match("", "a"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(matches_path("encoders.vision", "encoders.vision.blocks.0.weight"));
  EXPECT_FALSE(matches_path("encoders.vis", "encoders.vision.blocks.0.weight"));
}

TEST(Freeze, AppliesRulesAndRejectsUnmatched) {
  ToyNet net;
  const auto frozen = apply_freeze(*net, {"fc1", "norm.*"});
  EXPECT_EQ(frozen.size(), 4u);  // fc1.weight, fc1.bias, norm.weight, norm.bias
  for (auto& it : net->named_parameters()) {
    const bool should = it.key().rfind("fc1.", 0) == 0 || it.key().rfind("norm.", 0) == 0;
    EXPECT_EQ(it.value().requires_grad(), !should) << it.key();
  }
  ToyNet other;
  EXPECT_THROW(apply_freeze(*other, {"encoders.*"}), InputError);
}

TEST(Optim, NoDecayGroups) {
  ToyNet net;
  const auto g = split_param_groups(*net, named(*net));
  std::set<std::string> nd, d;
  for (auto& [n, p] : g.no_decay) nd.insert(n);
  for (auto& [n, p] : g.decay) d.insert(n);
  EXPECT_EQ(d, (std::set<std::string>{"fc1.weight", "fc2.weight"}));
  EXPECT_EQ(nd, (std::set<std::string>{"embed.weight", "fc1.bias", "fc2.bias", "norm.weight", "norm.bias"}));
  EXPECT_TRUE(is_no_decay("vit.pos_embed", at::zeros({1, 4, 8}), false));
  EXPECT_TRUE(is_no_decay("vit.cls_token", at::zeros({1, 1, 8}), false));
  EXPECT_FALSE(is_no_decay("vit.patch_embed.proj.weight", at::zeros({8, 3, 4, 4}), false));
}

TEST(Optim, ScheduleShapes) {
  LrSchedule s{"cosine", 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(s.factor(0), 0.1);
  EXPECT_DOUBLE_EQ(s.factor(9), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(10), 1.0);
  EXPECT_NEAR(s.factor(60), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(s.factor(110), 0.1, 1e-12);
  EXPECT_NEAR(s.factor(500), 0.1, 1e-12);
  LrSchedule l{"linear", 0, 100, 0.0};
  EXPECT_DOUBLE_EQ(l.factor(0), 1.0);
  EXPECT_NEAR(l.factor(25), 0.75, 1e-12);
  LrSchedule c{"constant", 5, 100, 0.0};
  EXPECT_DOUBLE_EQ(c.factor(2), 0.6);
  EXPECT_DOUBLE_EQ(c.factor(99), 1.0);
  EXPECT_THROW((LrSchedule{"bogus", 0, 10, 0}.factor(3)), InputError);
}

TEST(Optim, ClipGradNormMatchesDefinition) {
  auto a = at::randn({3, 4}).requires_grad_(true), b = at::randn({5}).requires_grad_(true);
  a.mutable_grad() = at::full({3, 4}, 2.0);
  b.mutable_grad() = at::full({5}, -1.0);
  const double expected = std::sqrt(12 * 4.0 + 5 * 1.0);
  const double n = clip_grad_norm({a, b}, 1.0);
  EXPECT_NEAR(n, expected, 1e-5);
  const double after = std::sqrt(a.grad().pow(2).sum().item<double>() + b.grad().pow(2).sum().item<double>());
  EXPECT_NEAR(after, 1.0, 1e-5);
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), after, 1e-5);  // below max: unchanged
  EXPECT_NEAR(clip_grad_norm({a, b}, 0.0), after, 1e-5);
}

TEST(Optim, ClipGradNormByModuleClipsEachModuleOnItsOwn) {
  EXPECT_EQ(top_module_of("vq.enc.0.weight"), "vq");
  EXPECT_EQ(top_module_of("logit_scale"), "<root>");
  auto big = at::zeros({4}).requires_grad_(true), big2 = at::zeros({2}).requires_grad_(true);
  auto small = at::zeros({3}).requires_grad_(true), root = at::zeros({1}).requires_grad_(true);
  auto none = at::zeros({2}).requires_grad_(true);  // no gradient: left out
  big.mutable_grad() = at::full({4}, 30.0);
  big2.mutable_grad() = at::full({2}, -40.0);
  small.mutable_grad() = at::full({3}, 0.1);
  root.mutable_grad() = at::full({1}, 3.0);
  const NamedParams params{
      {"text.a.weight", big}, {"text.b", big2}, {"vq.enc.weight", small}, {"logit_scale", root}, {"gen.w", none}};
  const auto norms = clip_grad_norm_by_module(params, 1.0);
  ASSERT_EQ(norms.size(), 3u);
  EXPECT_NEAR(norms.at("text"), std::sqrt(4 * 900.0 + 2 * 1600.0), 1e-3);
  EXPECT_NEAR(norms.at("vq"), std::sqrt(3 * 0.01), 1e-6);
  EXPECT_NEAR(norms.at("<root>"), 3.0, 1e-6);
  // text clipped to norm 1 as one group (its direction kept); vq below the limit untouched (a global clip would
  // have scaled it by ~1/82); the root parameter clipped on its own.
  const double text_after = std::sqrt(big.grad().pow(2).sum().item<double>() + big2.grad().pow(2).sum().item<double>());
  EXPECT_NEAR(text_after, 1.0, 1e-5);
  EXPECT_NEAR(big.grad()[0].item<double>() / big2.grad()[0].item<double>(), -0.75, 1e-6);
  EXPECT_TRUE(janus::test::all_close(small.grad(), at::full({3}, 0.1), 0));
  EXPECT_NEAR(root.grad().item<double>(), 1.0, 1e-5);
  EXPECT_FALSE(none.grad().defined());
  // max_norm 0 measures without clipping.
  const auto again = clip_grad_norm_by_module(params, 0.0);
  EXPECT_NEAR(again.at("text"), 1.0, 1e-5);
  EXPECT_TRUE(janus::test::all_close(small.grad(), at::full({3}, 0.1), 0));
}

TEST(Optim, GradScalerUnscalesBacksOffAndGrows) {
  GradScaler s(true, 1024.0, 2.0, 0.5, 2);
  auto p = at::ones({4}).requires_grad_(true);
  (s.scale((p * 3).sum())).backward();
  EXPECT_TRUE(janus::test::all_close(p.grad(), at::full({4}, 3072.0), 0));
  EXPECT_TRUE(s.unscale({p}));
  EXPECT_TRUE(janus::test::all_close(p.grad(), at::full({4}, 3.0), 0));
  s.update(false);
  EXPECT_EQ(s.scale_value(), 1024.0);
  s.update(false);
  EXPECT_EQ(s.scale_value(), 2048.0);  // grew after growth_interval=2 clean steps
  p.mutable_grad() = at::tensor({1.0f, INFINITY, 0.0f, 1.0f});
  EXPECT_FALSE(s.unscale({p}));
  s.update(true);
  EXPECT_EQ(s.scale_value(), 1024.0);  // backed off
  TensorMap st;
  s.save_state(st, "x.");
  GradScaler t(true, 7.0);
  t.load_state(st, "x.");
  EXPECT_EQ(t.scale_value(), 1024.0);
  GradScaler off(false);
  p.mutable_grad() = at::tensor({1.0f, NAN, 0.0f, 1.0f});
  EXPECT_FALSE(off.unscale({p}));
}

TEST(Optim, AdamWStateRoundTripGivesIdenticalSteps) {
  auto run = [](bool roundtrip) {
    at::manual_seed(3);
    ToyNet net(ToyNetOptions().dropout(0.0));
    auto o = make_adamw("main", *net, named(*net), 1e-2, 0.1, 0.9, 0.999, 1e-8);
    auto step = [&](int i) {
      for (auto& p : net->parameters()) p.mutable_grad().reset();
      auto x = at::full({2, 8}, 0.1 * (i + 1));
      net->forward(x, at::zeros({2}, at::kLong)).pow(2).sum().backward();
      o.optimizer->step();
    };
    step(0);
    step(1);
    if (roundtrip) {
      TensorMap st;
      o.save_state(st, "o.");
      EXPECT_EQ(st.at("o.fc1.weight.step").item<int64_t>(), 2);
      const auto bytes = safetensors_bytes(st);
      auto fresh = make_adamw("main", *net, named(*net), 1e-2, 0.1, 0.9, 0.999, 1e-8);
      fresh.load_state(SafeTensorsFile::from_bytes(bytes).tensors(), "o.");
      o = std::move(fresh);
    }
    step(2);
    return net->fc1->weight.clone();
  };
  const auto a = run(false), b = run(true);
  EXPECT_TRUE(at::equal(a, b));
}

TEST(Optim, OverridesGiveAModuleItsOwnAdamWSettings) {
  // fc1 under "fc1: lr_scale=2, beta2=0.5, weight_decay=0" must step exactly like a plain AdamW with those settings
  // on fc1 alone; every other parameter exactly like the base optimizer.
  const auto ov = parse_optim_override("fc1: lr_scale=2, beta2=0.5, weight_decay=0", "test");
  EXPECT_EQ(ov.prefix, "fc1");
  auto grads_for = [](ToyNet& net) {
    for (auto& p : net->parameters()) p.mutable_grad().reset();
    net->forward(at::full({2, 8}, 0.3), at::zeros({2}, at::kLong)).pow(2).sum().backward();
  };
  at::manual_seed(5);
  ToyNet a(ToyNetOptions().dropout(0.0));
  ToyNet b(ToyNetOptions().dropout(0.0));
  {
    at::NoGradGuard ng;
    for (size_t i = 0; i < a->parameters().size(); ++i) b->parameters()[i].copy_(a->parameters()[i]);
  }
  auto with = make_adamw("main", *a, named(*a), 1e-2, 0.1, 0.9, 0.999, 1e-8, {ov});
  NamedParams fc1, rest;
  for (auto& np : named(*b)) (np.first.rfind("fc1.", 0) == 0 ? fc1 : rest).push_back(np);
  auto ref_fc1 = make_adamw("fc1", *b, fc1, 2e-2, 0.0, 0.9, 0.5, 1e-8);
  auto ref_rest = make_adamw("rest", *b, rest, 1e-2, 0.1, 0.9, 0.999, 1e-8);
  EXPECT_EQ(with.optimizer->param_groups().size(), 4u);  // fc1 decay / no-decay, the rest decay / no-decay
  for (int s = 0; s < 3; ++s) {
    with.set_lr(1e-2 * (s + 1) / 3.0);
    ref_fc1.set_lr(2e-2 * (s + 1) / 3.0);
    ref_rest.set_lr(1e-2 * (s + 1) / 3.0);
    EXPECT_NEAR(with.lr(), 1e-2 * (s + 1) / 3.0, 1e-15);
    grads_for(a);
    grads_for(b);
    with.optimizer->step();
    ref_fc1.optimizer->step();
    ref_rest.optimizer->step();
  }
  for (size_t i = 0; i < a->parameters().size(); ++i)
    EXPECT_TRUE(at::equal(a->parameters()[i], b->parameters()[i])) << named(*a)[i].first;
  EXPECT_THROW(make_adamw("main", *a, named(*a), 1e-2, 0.1, 0.9, 0.999, 1e-8, {parse_optim_override("fc", "t")}),
               InputError);  // a prefix matches whole name components only
  for (const char* bad : {"fc1 beta2=0.9", "fc1: beta2=1.0", "fc1: lr=3", "fc1: beta2=x", "fc1:", ": beta2=0.9",
                          "fc1.*: beta2=0.9", "fc1: beta2"})
    EXPECT_THROW(parse_optim_override(bad, "optim.overrides[0]"), ConfigError) << bad;
  EXPECT_THROW(Config::from_yaml("", {"optim.overrides=[\"vq: beta3=0.9\"]"}), ConfigError);
  EXPECT_EQ(Config::from_yaml("", {"optim.overrides=[\"vq: beta2=0.95\"]"}).optim.overrides.size(), 1u);
}

TEST(Optim, EmaFollowsParameters) {
  auto p = at::zeros({3}).requires_grad_(true);
  Ema ema({{"p", p}}, 0.9);
  {
    at::NoGradGuard ng;
    p.fill_(1.0);
  }
  ema.update({{"p", p}});
  EXPECT_TRUE(janus::test::all_close(ema.shadow().at("p"), at::full({3}, 0.1), 1e-7));
  ema.update({{"p", p}});
  EXPECT_TRUE(janus::test::all_close(ema.shadow().at("p"), at::full({3}, 0.19), 1e-6));
}
