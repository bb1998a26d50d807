#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/optim/adamw.h>

#include "janus/core/error.h"
#include "janus/encoders/vision_encoder.h"
#include "janus/io/module_io.h"
#include "janus/router/adapter.h"
#include "janus/router/dynamic_router.h"
#include "janus/router/freeze.h"
#include "test_util.h"

namespace jt = janus::test;

TEST(DynamicRouter, MixedBatchEqualsPerSampleFormula) {
  torch::manual_seed(0);
  janus::DynamicRouter r(janus::DynamicRouterOptions(12, 7));
  const auto x = torch::randn({6, 5, 12});
  const auto ids = torch::tensor({3, 0, 0, 2, 1, 3}, torch::kLong);
  const auto out = r->forward(x, ids);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{6, 5, 7}));
  for (int64_t b = 0; b < 6; ++b) {  // reference: the seed's formula written out per sample
    const auto m = ids[b].item<int64_t>();
    auto* p = r->proj->ptr<torch::nn::LinearImpl>(m).get();
    const auto gate = torch::sigmoid(torch::matmul(x[b], r->gate->weight.t()) + r->gate->bias);
    const auto feat = torch::matmul(x[b], p->weight.t()) + p->bias;
    EXPECT_TRUE(jt::all_close(out[b], gate * feat, 1e-6)) << "sample " << b;
  }
  // 2-D input and a single-modality call agree with the mixed call.
  const auto x2 = torch::randn({4, 12});
  EXPECT_TRUE(
      jt::all_close(r->forward(x2, janus::Modality::kText), r->forward(x2, torch::full({4}, 3, torch::kLong)), 0));
}

TEST(DynamicRouter, GradientsReachOnlyUsedProjections) {
  janus::DynamicRouter r(janus::DynamicRouterOptions(4, 3));
  r->forward(torch::randn({3, 4}), torch::tensor({0, 2, 2}, torch::kLong)).sum().backward();
  EXPECT_TRUE(r->proj->ptr<torch::nn::LinearImpl>(0)->weight.grad().defined());
  EXPECT_TRUE(r->proj->ptr<torch::nn::LinearImpl>(2)->weight.grad().defined());
  EXPECT_FALSE(r->proj->ptr<torch::nn::LinearImpl>(1)->weight.grad().defined());
  EXPECT_TRUE(r->gate->weight.grad().defined());
}

TEST(DynamicRouter, NamesSaveLoadAndErrors) {
  const auto dir = jt::temp_dir();
  janus::DynamicRouter a(janus::DynamicRouterOptions(4, 3));
  janus::DynamicRouter b(janus::DynamicRouterOptions(4, 3));
  const auto st = janus::module_state(*a);
  for (const char* k : {"gate.weight", "gate.bias", "proj.0.weight", "proj.3.bias"}) EXPECT_TRUE(st.count(k)) << k;
  EXPECT_EQ(st.size(), 10u);
  janus::save_module(*a, dir + "/r.safetensors");
  janus::load_module(*b, dir + "/r.safetensors");
  const auto x = torch::randn({2, 4});
  const auto ids = torch::tensor({1, 3}, torch::kLong);
  EXPECT_TRUE(torch::equal(a->forward(x, ids), b->forward(x, ids)));
  using ::testing::HasSubstr;
  EXPECT_THAT(
      [&] {
        a->forward(x, torch::tensor({0, 4}, torch::kLong));
      },
      ::testing::ThrowsMessage<c10::Error>(HasSubstr("expected [0, 4)")));
  EXPECT_THAT([&] { a->forward(x, torch::tensor({0}, torch::kLong)); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("modality_id must be an integer tensor [2]")));
  EXPECT_THROW(janus::modality_from_name("audio"), janus::InputError);
  EXPECT_EQ(janus::modality_from_name("point_cloud"), janus::Modality::kPointCloud);
}

TEST(Adapter, StartsAsIdentityAndRoundTrips) {
  const auto dir = jt::temp_dir();
  janus::Adapter a(janus::AdapterOptions(8, 2));
  const auto x = torch::randn({3, 5, 8});
  EXPECT_TRUE(torch::equal(a->forward(x), x));
  {
    torch::NoGradGuard g;
    a->up->weight.normal_();
  }
  EXPECT_FALSE(torch::allclose(a->forward(x), x));
  janus::Adapter b(janus::AdapterOptions(8, 2));
  janus::save_module(*a, dir + "/a.safetensors");
  janus::load_module(*b, dir + "/a.safetensors");
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
}

namespace {
// encoders.vision (ViT with per-block adapters) -> router -> post-router adapter.
struct TinyModelImpl : torch::nn::Module {
  TinyModelImpl() {
    auto enc = std::make_shared<torch::nn::Module>();
    vision = enc->register_module(
        "vision",
        janus::VisionEncoder(
            janus::VisionEncoderOptions().image_size(16).patch_size(8).dim(16).depth(2).heads(2).adapter_dim(4)));
    register_module("encoders", enc);
    router = register_module("router", janus::DynamicRouter(janus::DynamicRouterOptions(16, 12)));
    adapter = register_module("adapter", janus::Adapter(janus::AdapterOptions(12, 3)));
  }
  at::Tensor forward(const at::Tensor& images) {
    auto t = vision->forward(images).tokens;
    return adapter->forward(router->forward(t, janus::Modality::kImage));
  }
  janus::VisionEncoder vision{nullptr};
  janus::DynamicRouter router{nullptr};
  janus::Adapter adapter{nullptr};
};
}  // namespace

TEST(Freeze, GlobReportAndAdapterOnlyTrainingLeavesFrozenBitIdentical) {
  torch::manual_seed(5);
  auto model = std::make_shared<TinyModelImpl>();
  EXPECT_TRUE(janus::parameter_matches("encoders.vision.*", "encoders.vision.blocks.0.attn.qkv.weight"));
  EXPECT_TRUE(janus::parameter_matches("encoders.vision", "encoders.vision.pos_embed"));
  EXPECT_FALSE(janus::parameter_matches("encoders.vis", "encoders.vision.pos_embed"));
  EXPECT_THROW(janus::freeze(*model, "decoder.*"), janus::InputError);

  const auto n_all = janus::parameter_report(*model).total();
  janus::freeze(*model, "encoders.vision.*");
  janus::freeze(*model, "router");
  janus::unfreeze(*model, "*adapters.*");
  const auto rep = janus::parameter_report(*model);
  int64_t adapter_elems = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.key().find("adapter") != std::string::npos) adapter_elems += p.value().numel();
  }
  EXPECT_EQ(rep.total(), n_all);
  EXPECT_EQ(rep.trainable, adapter_elems) << rep.summary();
  EXPECT_EQ(rep.trainable_tensors, 2 * 4 + 4);  // 2 block adapters + the router adapter, 4 tensors each

  std::map<std::string, at::Tensor> before;
  for (const auto& p : model->named_parameters()) before[p.key()] = p.value().detach().clone();
  // Optimiser over ALL parameters with weight decay: frozen ones must still not move.
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  for (int step = 0; step < 4; ++step) {
    opt.zero_grad();
    const auto x = torch::randn({2, 3, 16, 16});
    model->forward(x).pow(2).mean().backward();
    opt.step();
  }
  int changed = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.value().requires_grad()) {
      changed += !torch::equal(p.value(), before[p.key()]);
    } else {
      EXPECT_TRUE(torch::equal(p.value(), before[p.key()])) << p.key() << " moved while frozen";
    }
  }
  EXPECT_EQ(changed, rep.trainable_tensors);  // every adapter tensor trained
}

// shared = true (ablation): one plain Linear for every modality, no gate.
TEST(DynamicRouter, SharedProjectionHasNoGate) {
  torch::manual_seed(1);
  janus::DynamicRouter r(janus::DynamicRouterOptions(12, 7).shared(true));
  EXPECT_FALSE(r->gate);
  ASSERT_EQ(r->proj->size(), 1u);
  const auto x = torch::randn({3, 5, 12});
  auto* p = r->proj->ptr<torch::nn::LinearImpl>(0).get();
  const auto ref = torch::matmul(x, p->weight.t()) + p->bias;
  EXPECT_TRUE(jt::all_close(r->forward(x, torch::tensor({0, 3, 1}, torch::kLong)), ref, 1e-6));
  EXPECT_THROW(r->forward(x, torch::tensor({0, 9, 1}, torch::kLong)), c10::Error);
}
