// Weight-only quantisation: layer accuracy (stated tolerances), packed kernels == fallback, the in-place route
// through LinearImpl, AWQ on outlier channels, whole-model parity, save/load round trip and janus_quantize.
#include "janus/infer/quantize.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include "infer_fixture.h"
#include "janus/core/error.h"
#include "janus/infer/pipeline.h"

namespace {

double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  return ((a.to(at::kFloat) - ref.to(at::kFloat)).norm() / ref.to(at::kFloat).norm()).item<double>();
}

torch::nn::Linear make_linear(int64_t in, int64_t out, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Linear(torch::nn::LinearOptions(in, out));
}

struct TwoLayer : torch::nn::Module {
  TwoLayer() {
    torch::manual_seed(3);
    a = register_module("a", torch::nn::Linear(128, 256));
    b = register_module("b", torch::nn::Linear(256, 64));
  }
  at::Tensor forward(const at::Tensor& x) { return b->forward(at::gelu(a->forward(x))); }
  torch::nn::Linear a{nullptr}, b{nullptr};
};

}  // namespace

// Tolerances: int8 per-channel rounding error is ~max|w|/127/sqrt(12) per weight, ~0.5% of the output for Gaussian
// weights; int4 asymmetric groups have a step of ~range/15, ~6-9% relative output error for Gaussian weights
// (group 32 < 64 < 128).
TEST(Quantize, LayerErrorWithinStatedTolerance) {
  auto lin = make_linear(512, 256, 1);
  const auto x = at::randn({32, 512});
  const auto ref = lin->forward(x).detach();
  auto q8 = janus::quantize_linear(*lin, 8, 128);
  q8->prepare();
  const double e8 = rel_err(q8->forward(x), ref);
  EXPECT_LT(e8, 0.01);
  double prev = 1.0;
  for (int64_t g : {128, 64, 32}) {
    auto q4 = janus::quantize_linear(*lin, 4, g);
    q4->prepare();
    const double e4 = rel_err(q4->forward(x), ref);
    EXPECT_LT(e4, 0.10) << "group " << g;
    EXPECT_LT(e4, prev) << "smaller groups must be more accurate, group " << g;
    EXPECT_GT(e4, e8);
    prev = e4;
  }
  // dequantized_weight is what the fallback multiplies by
  EXPECT_TRUE(janus::test::all_close(at::matmul(x, q8->dequantized_weight().t()) + lin->bias.detach(),
                                     q8->forward_fallback(x), 1e-3, 1e-4));
}

TEST(Quantize, PackedKernelsEqualTheFallback) {
  for (int bits : {8, 4}) {
    for (int64_t g : {32, 64, 128}) {
      if (bits == 8 && g != 128) continue;
      auto lin = make_linear(256, 96, 2 + g);
      auto q = janus::quantize_linear(*lin, bits, g, at::rand({256}) + 0.5);  // with an input multiplier
      q->prepare();
      ASSERT_TRUE(q->packed_kernel_used()) << "int" << bits << " g" << g << ": the ATen packed kernel was not usable";
      const auto x = at::randn({2, 5, 256});
      const auto a = q->forward(x), b = q->forward_fallback(x);
      ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2, 5, 96}));
      // the packed path computes fp32 activations in bf16 (the kernels' fast path): ~0.3% relative difference
      EXPECT_LT(rel_err(a, b), 0.01) << "int" << bits << " g" << g;
      EXPECT_GT(rel_err(a, b), 0.0) << "the packed path must really have run";
      // bf16 activations
      q->to(at::kBFloat16);
      q->prepare();
      const auto xb = x.to(at::kBFloat16);
      EXPECT_LT(rel_err(q->forward(xb), b), 0.02) << "bf16 int" << bits << " g" << g;
      EXPECT_EQ(q->forward(xb).scalar_type(), at::kBFloat16);
    }
  }
}

TEST(Quantize, ReplacesLinearInPlaceAndLeavesOtherMatmulsAlone) {
  TwoLayer m;
  const auto x = at::randn({4, 7, 128});
  const auto ref = m.forward(x).detach();
  janus::QuantizeOptions o;
  o.bits = 8;
  o.min_features = 16;
  const auto rep = janus::quantize_model(m, o);
  EXPECT_EQ(rep.quantized, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(janus::quantized_layers(m).size(), 2u);
  EXPECT_NO_THROW(janus::verify_quantized_model(m));
  EXPECT_EQ(m.a->weight.stride(0), 0);  // the placeholder holds no memory
  {
    torch::NoGradGuard ng;
    const auto y = m.forward(x);
    EXPECT_LT(rel_err(y, ref), 0.02);
    EXPECT_FALSE(at::equal(y, ref));  // it really is the quantised path
    // 2-D inputs (the addmm path for Linear with bias) are routed too
    const auto y2 = m.forward(x[0]);
    EXPECT_LT(rel_err(y2, y[0]), 0.01);
  }
  {
    c10::InferenceMode im;
    EXPECT_TRUE(janus::test::all_close(m.forward(x), m.forward(x).clone(), 0, 0));
    EXPECT_LT(rel_err(m.forward(x), ref), 0.02);
  }
  // other matmuls keep autograd
  auto w = torch::randn({5, 3}, torch::requires_grad());
  at::matmul(at::ones({2, 5}), w).sum().backward();
  EXPECT_TRUE(at::equal(w.grad(), at::full({5, 3}, 2.0)));
  // min_features and skip patterns
  TwoLayer m2;
  o.skip = {"b"};
  const auto rep2 = janus::quantize_model(m2, o);
  EXPECT_EQ(rep2.quantized, (std::vector<std::string>{"a"}));
  ASSERT_EQ(rep2.skipped.size(), 1u);
  janus::QuantizeOptions bad;
  bad.bits = 3;
  EXPECT_THROW(janus::quantize_model(m2, bad), janus::InputError);
}

TEST(Quantize, AwqLowersErrorOnOutlierChannels) {
  auto lin = make_linear(256, 128, 5);
  auto x = at::randn({512, 256});
  x.select(1, 3).mul_(40);  // a few activation outlier channels, as in LLM/ViT activations
  x.select(1, 77).mul_(25);
  x.select(1, 200).mul_(30);
  const auto ref = lin->forward(x).detach();
  for (int bits : {4, 8}) {
    const auto r = janus::awq_search(lin->weight.detach(), lin->bias.detach(), x, bits, 64, 20);
    EXPECT_GT(r.alpha, 0.0) << bits;
    EXPECT_LT(r.mse_best, 0.8 * r.mse_plain) << "int" << bits << ": AWQ " << r.mse_best << " vs plain " << r.mse_plain;
    auto plain = janus::quantize_linear(*lin, bits, 64);
    auto awq = janus::quantize_linear(*lin, bits, 64, r.scale);
    plain->prepare();
    awq->prepare();
    EXPECT_LT(rel_err(awq->forward(x), ref), rel_err(plain->forward(x), ref)) << bits;
  }
  // without outliers the search may keep alpha = 0, but it never increases the calibration error
  const auto y = at::randn({256, 256});
  const auto r = janus::awq_search(lin->weight.detach(), lin->bias.detach(), y, 4, 64, 10);
  EXPECT_LE(r.mse_best, r.mse_plain);
}

TEST(Quantize, CaptureRecordsLinearInputs) {
  TwoLayer m;
  const auto x = at::randn({3, 5, 128});
  const auto ref = m.forward(x).detach();
  at::Tensor y;
  const auto acts = janus::capture_linear_inputs(m, [&] { y = m.forward(x).detach(); }, 8);
  EXPECT_TRUE(janus::test::all_close(y, ref, 1e-5, 1e-5));  // capturing does not change outputs
  ASSERT_EQ(acts.size(), 2u);
  EXPECT_EQ(acts.at("a").sizes(), (std::vector<int64_t>{8, 128}));
  EXPECT_TRUE(at::equal(acts.at("a")[0], x[0][0]));
  EXPECT_TRUE(m.a->bias.defined());  // restored
}

TEST(Quantize, WholeModelPipelineParityAndRoundTrip) {
  const auto d = janus::test::temp_dir("quant_model");
  janus::test::RunSpec spec;
  spec.flavour = "tiny";
  const auto run = janus::test::make_run(d, spec);
  std::vector<std::string> imgs;
  for (int i = 0; i < 6; ++i) imgs.push_back(janus::test::make_image(d, fmt::format("c{}.png", i), 40, 40, 50 + i));
  std::vector<janus::ImageInput> in;
  for (const auto& f : imgs) in.push_back(janus::ImageInput::file(f));
  const std::vector<std::string> texts{"a red circle", "two blue stars", "is it green?"};

  janus::PipelineOptions po;
  po.max_caption_len = 8;
  auto fp = janus::Pipeline::load(run, po);
  const auto e_img = fp.embed_images(in);
  const auto e_txt = fp.embed_texts(texts);

  for (int bits : {8, 4}) {
    janus::QuantizeRunOptions qo;
    qo.quant.bits = bits;
    qo.quant.group_size = 32;
    qo.quant.awq_grid = 10;
    qo.quant.awq_max_rows = 256;
    qo.calib_images = imgs;
    qo.calib_caption_len = 6;
    const auto out = d + fmt::format("/q{}", bits);
    const auto rep = janus::quantize_run(run, out, qo);
    EXPECT_GT(rep.quantized.size(), 10u);
    EXPECT_LT(rep.quant_bytes, rep.fp32_bytes / (bits == 8 ? 3 : 5));
    ASSERT_TRUE(std::filesystem::exists(out + "/quant.json"));
    auto qp = janus::Pipeline::load(out, po);
    EXPECT_EQ(qp.quantization(), bits == 8 ? "int8" : "int4-g32");
    const auto q_img = qp.embed_images(in), q_txt = qp.embed_texts(texts);
    const double cos_img = (q_img * e_img).sum(1).min().item<double>();
    const double cos_txt = (q_txt * e_txt).sum(1).min().item<double>();
    if (bits == 8) {
      EXPECT_GT(cos_img, 0.99);
      EXPECT_GT(cos_txt, 0.99);
    } else {
      EXPECT_GT(cos_img, 0.9);
      EXPECT_GT(cos_txt, 0.9);
    }
    EXPECT_EQ(qp.caption(in).size(), in.size());
    EXPECT_EQ(qp.answer(in[0], "is it red?").top.size(), 3u);

  }
  // save/load round trip: a model quantised in memory == the directory janus_quantize writes
  auto mem = janus::Pipeline::load(run, po);
  janus::QuantizeRunOptions qo;
  qo.quant.awq = false;
  janus::quantize_model(mem.model(), qo.quant);
  janus::quantize_run(run, d + "/q8plain", qo);
  auto loaded = janus::Pipeline::load(d + "/q8plain", po);
  EXPECT_TRUE(at::equal(loaded.embed_images(in), mem.embed_images(in)));
  EXPECT_TRUE(at::equal(loaded.embed_texts(texts), mem.embed_texts(texts)));
  EXPECT_EQ(loaded.caption(in), mem.caption(in));
  // corrupt quant.json / weights are InputErrors
  janus::write_file_atomic(d + "/q8/quant.json", "{\"format\": \"other\"}");
  EXPECT_THROW(janus::Pipeline::load(d + "/q8"), janus::InputError);
  janus::write_file_atomic(d + "/q4/quant.json", "not json");
  EXPECT_THROW(janus::Pipeline::load(d + "/q4"), janus::InputError);
}

TEST(Quantize, JanusQuantizeToolWritesALoadableRun) {
  const auto d = janus::test::temp_dir("quant_tool");
  const auto run = janus::test::make_run(d);
  const auto calib = d + "/calib";
  std::filesystem::create_directories(calib);
  for (int i = 0; i < 3; ++i) janus::test::make_image(calib, fmt::format("{}.png", i), 32, 32, i);
  const auto out = d + "/q4";
  auto r = janus::test::run(janus::test::tool("janus_quantize") + " --run " + janus::test::quote(run) +
                            " --bits 4 --group 64 --awq-grid 5 --calib " + janus::test::quote(calib) + " --out " +
                            janus::test::quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Linear layers quantised"), std::string::npos) << r.output;
  r = janus::test::run(janus::test::tool("janus_infer") + " --log-level warn --json --run " + janus::test::quote(out) + " caption " +
                       janus::test::quote(calib + "/0.png") + " 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output).size(), 1u);
  r = janus::test::run(janus::test::tool("janus_quantize") + " --run " + janus::test::quote(run) + " --bits 3 --out " +
                       janus::test::quote(d + "/bad"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(janus::test::tool("janus_quantize") + " --run " + janus::test::quote(run) +
                       " --bits 4 --group 48 --out " + janus::test::quote(d + "/bad"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(janus::test::tool("janus_quantize") + " --run " + janus::test::quote(d + "/none") +
                       " --bits 8 --out " + janus::test::quote(d + "/bad"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
}
