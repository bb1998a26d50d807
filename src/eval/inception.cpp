#include "janus/eval/inception.h"

#include <ATen/ATen.h>

#include "janus/core/registry.h"

namespace janus::eval {
namespace {

using Conv = InceptionConv;
using Opt = InceptionConvOptions;

at::Tensor avg3(const at::Tensor& x) { return at::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}); }
at::Tensor max3s2(const at::Tensor& x) { return at::max_pool2d(x, {3, 3}, {2, 2}); }

// A block whose forward is a function of its registered convs (looked up by name).
class BlockImpl : public torch::nn::Cloneable<BlockImpl> {
 public:
  using Fn = std::function<at::Tensor(BlockImpl&, const at::Tensor&)>;
  BlockImpl(std::vector<std::pair<std::string, Opt>> convs, Fn fn) : convs_(std::move(convs)), fn_(std::move(fn)) {
    reset();
  }
  void reset() override {
    c_.clear();
    for (const auto& [name, o] : convs_) c_.insert_or_assign(name, register_module(name, Conv(o)));
  }
  at::Tensor forward(const at::Tensor& x) { return fn_(*this, x); }
  at::Tensor operator()(const std::string& name, const at::Tensor& x) { return c_.at(name)->forward(x); }

 private:
  std::vector<std::pair<std::string, Opt>> convs_;
  Fn fn_;
  std::map<std::string, Conv> c_;
};
TORCH_MODULE(Block);

Block inception_a(int64_t in, int64_t pool_features) {
  return Block(std::vector<std::pair<std::string, Opt>>{{"branch1x1", Opt(in, 64, {1, 1})},
                                                        {"branch5x5_1", Opt(in, 48, {1, 1})},
                                                        {"branch5x5_2", Opt(48, 64, {5, 5}, {1, 1}, {2, 2})},
                                                        {"branch3x3dbl_1", Opt(in, 64, {1, 1})},
                                                        {"branch3x3dbl_2", Opt(64, 96, {3, 3}, {1, 1}, {1, 1})},
                                                        {"branch3x3dbl_3", Opt(96, 96, {3, 3}, {1, 1}, {1, 1})},
                                                        {"branch_pool", Opt(in, pool_features, {1, 1})}},
               [](BlockImpl& b, const at::Tensor& x) {
                 return at::cat(
                     {b("branch1x1", x), b("branch5x5_2", b("branch5x5_1", x)),
                      b("branch3x3dbl_3", b("branch3x3dbl_2", b("branch3x3dbl_1", x))), b("branch_pool", avg3(x))},
                     1);
               });
}

Block inception_b(int64_t in) {
  return Block(std::vector<std::pair<std::string, Opt>>{{"branch3x3", Opt(in, 384, {3, 3}, {2, 2})},
                                                        {"branch3x3dbl_1", Opt(in, 64, {1, 1})},
                                                        {"branch3x3dbl_2", Opt(64, 96, {3, 3}, {1, 1}, {1, 1})},
                                                        {"branch3x3dbl_3", Opt(96, 96, {3, 3}, {2, 2})}},
               [](BlockImpl& b, const at::Tensor& x) {
                 return at::cat(
                     {b("branch3x3", x), b("branch3x3dbl_3", b("branch3x3dbl_2", b("branch3x3dbl_1", x))), max3s2(x)},
                     1);
               });
}

Block inception_c(int64_t in, int64_t c7) {
  return Block(std::vector<std::pair<std::string, Opt>>{{"branch1x1", Opt(in, 192, {1, 1})},
                                                        {"branch7x7_1", Opt(in, c7, {1, 1})},
                                                        {"branch7x7_2", Opt(c7, c7, {1, 7}, {1, 1}, {0, 3})},
                                                        {"branch7x7_3", Opt(c7, 192, {7, 1}, {1, 1}, {3, 0})},
                                                        {"branch7x7dbl_1", Opt(in, c7, {1, 1})},
                                                        {"branch7x7dbl_2", Opt(c7, c7, {7, 1}, {1, 1}, {3, 0})},
                                                        {"branch7x7dbl_3", Opt(c7, c7, {1, 7}, {1, 1}, {0, 3})},
                                                        {"branch7x7dbl_4", Opt(c7, c7, {7, 1}, {1, 1}, {3, 0})},
                                                        {"branch7x7dbl_5", Opt(c7, 192, {1, 7}, {1, 1}, {0, 3})},
                                                        {"branch_pool", Opt(in, 192, {1, 1})}},
               [](BlockImpl& b, const at::Tensor& x) {
                 at::Tensor d = b("branch7x7dbl_1", x);
                 for (const char* n : {"branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"})
                   d = b(n, d);
                 return at::cat({b("branch1x1", x), b("branch7x7_3", b("branch7x7_2", b("branch7x7_1", x))), d,
                                 b("branch_pool", avg3(x))},
                                1);
               });
}

Block inception_d(int64_t in) {
  return Block(std::vector<std::pair<std::string, Opt>>{{"branch3x3_1", Opt(in, 192, {1, 1})},
                                                        {"branch3x3_2", Opt(192, 320, {3, 3}, {2, 2})},
                                                        {"branch7x7x3_1", Opt(in, 192, {1, 1})},
                                                        {"branch7x7x3_2", Opt(192, 192, {1, 7}, {1, 1}, {0, 3})},
                                                        {"branch7x7x3_3", Opt(192, 192, {7, 1}, {1, 1}, {3, 0})},
                                                        {"branch7x7x3_4", Opt(192, 192, {3, 3}, {2, 2})}},
               [](BlockImpl& b, const at::Tensor& x) {
                 at::Tensor d = b("branch7x7x3_1", x);
                 for (const char* n : {"branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"}) d = b(n, d);
                 return at::cat({b("branch3x3_2", b("branch3x3_1", x)), d, max3s2(x)}, 1);
               });
}

Block inception_e(int64_t in) {
  return Block(std::vector<std::pair<std::string, Opt>>{{"branch1x1", Opt(in, 320, {1, 1})},
                                                        {"branch3x3_1", Opt(in, 384, {1, 1})},
                                                        {"branch3x3_2a", Opt(384, 384, {1, 3}, {1, 1}, {0, 1})},
                                                        {"branch3x3_2b", Opt(384, 384, {3, 1}, {1, 1}, {1, 0})},
                                                        {"branch3x3dbl_1", Opt(in, 448, {1, 1})},
                                                        {"branch3x3dbl_2", Opt(448, 384, {3, 3}, {1, 1}, {1, 1})},
                                                        {"branch3x3dbl_3a", Opt(384, 384, {1, 3}, {1, 1}, {0, 1})},
                                                        {"branch3x3dbl_3b", Opt(384, 384, {3, 1}, {1, 1}, {1, 0})},
                                                        {"branch_pool", Opt(in, 192, {1, 1})}},
               [](BlockImpl& b, const at::Tensor& x) {
                 const at::Tensor t = b("branch3x3_1", x);
                 const at::Tensor d = b("branch3x3dbl_2", b("branch3x3dbl_1", x));
                 return at::cat(
                     {b("branch1x1", x), at::cat({b("branch3x3_2a", t), b("branch3x3_2b", t)}, 1),
                      at::cat({b("branch3x3dbl_3a", d), b("branch3x3dbl_3b", d)}, 1), b("branch_pool", avg3(x))},
                     1);
               });
}

class AuxImpl : public torch::nn::Cloneable<AuxImpl> {
 public:
  AuxImpl(int64_t in, int64_t classes) : in_(in), classes_(classes) { reset(); }
  void reset() override {
    conv0 = register_module("conv0", Conv(Opt(in_, 128, {1, 1})));
    conv1 = register_module("conv1", Conv(Opt(128, 768, {5, 5})));
    fc = register_module("fc", torch::nn::Linear(768, classes_));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor y = conv1->forward(conv0->forward(at::avg_pool2d(x, {5, 5}, {3, 3})));
    return fc->forward(at::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }
  Conv conv0{nullptr}, conv1{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  int64_t in_, classes_;
};
TORCH_MODULE(Aux);

}  // namespace

void InceptionConvImpl::reset() {
  conv =
      register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in(), options.out(), options.kernel())
                                                    .stride(options.stride())
                                                    .padding(options.padding())
                                                    .bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(options.out()).eps(0.001)));
}

at::Tensor InceptionConvImpl::forward(const at::Tensor& x) { return at::relu(bn->forward(conv->forward(x))); }

void InceptionV3Impl::reset() {
  blocks_.clear();
  const auto add = [&](const std::string& name, std::shared_ptr<torch::nn::Module> m) {
    blocks_.emplace_back(name, register_module(name, std::move(m)));
  };
  add("Conv2d_1a_3x3", Conv(Opt(3, 32, {3, 3}, {2, 2})).ptr());
  add("Conv2d_2a_3x3", Conv(Opt(32, 32, {3, 3})).ptr());
  add("Conv2d_2b_3x3", Conv(Opt(32, 64, {3, 3}, {1, 1}, {1, 1})).ptr());
  add("Conv2d_3b_1x1", Conv(Opt(64, 80, {1, 1})).ptr());
  add("Conv2d_4a_3x3", Conv(Opt(80, 192, {3, 3})).ptr());
  add("Mixed_5b", inception_a(192, 32).ptr());
  add("Mixed_5c", inception_a(256, 64).ptr());
  add("Mixed_5d", inception_a(288, 64).ptr());
  add("Mixed_6a", inception_b(288).ptr());
  add("Mixed_6b", inception_c(768, 128).ptr());
  add("Mixed_6c", inception_c(768, 160).ptr());
  add("Mixed_6d", inception_c(768, 160).ptr());
  add("Mixed_6e", inception_c(768, 192).ptr());
  aux_ = nullptr;
  if (options.aux_logits()) aux_ = register_module("AuxLogits", Aux(768, options.num_classes()).ptr());
  add("Mixed_7a", inception_d(768).ptr());
  add("Mixed_7b", inception_e(1280).ptr());
  add("Mixed_7c", inception_e(2048).ptr());
  fc_ = register_module("fc", torch::nn::Linear(2048, options.num_classes()));
}

void InceptionV3Impl::reset_parameters() {
  torch::NoGradGuard g;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<torch::nn::Conv2d>()) {
      c->weight.normal_(0.0, 0.1);  // trunc_normal_(std 0.1, +-2): the cut is 20 sigma out
    } else if (auto* l = m->as<torch::nn::Linear>()) {
      l->weight.normal_(0.0, 0.1);
    } else if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
      b->weight.fill_(1.0);
      b->bias.zero_();
    }
  }
}

InceptionV3Output InceptionV3Impl::forward(const at::Tensor& input) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) == 3, "inception_v3: expected [B, 3, H, W], got ", input.sizes());
  TORCH_CHECK(input.size(2) >= 75 && input.size(3) >= 75, "inception_v3: H and W must be >= 75, got ", input.sizes());
  at::Tensor x = input;
  if (options.transform_input()) {
    x = at::cat({x.select(1, 0).unsqueeze(1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                 x.select(1, 1).unsqueeze(1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                 x.select(1, 2).unsqueeze(1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5},
                1);
  }
  InceptionV3Output out;
  for (const auto& [name, m] : blocks_) {
    if (auto* c = m->as<InceptionConvImpl>()) {
      x = c->forward(x);
      if (name == "Conv2d_2b_3x3" || name == "Conv2d_4a_3x3") x = max3s2(x);  // maxpool1 / maxpool2
    } else {
      x = m->as<BlockImpl>()->forward(x);
    }
    if (name == "Mixed_6e" && aux_ && is_training()) out.aux = aux_->as<AuxImpl>()->forward(x);
  }
  out.pool = at::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  // Dropout(0.5) is active in training mode only, as in torchvision.
  out.logits = fc_->forward(at::dropout(out.pool, 0.5, is_training()));
  return out;
}

JANUS_REGISTER_MODULE(ModuleEntry{
    "inception_v3",
    "torchvision inception_v3 (same key names); outputs logits and the 2048-d pool features used by FID",
    {{"num_classes", "int", 1000, "classifier outputs"},
     {"aux_logits", "bool", false, "register AuxLogits (computed in training mode only)"},
     {"transform_input", "bool", false, "torchvision's transform_input re-scaling"}},
    {{"x", "[B, 3, H, W] float, H, W >= 75"}},
    {{"logits", "[B, num_classes] float"}, {"pool", "[B, 2048] float"}},
    [](const nlohmann::json& o) {
      auto m = InceptionV3(InceptionV3Options()
                               .num_classes(o["num_classes"].get<int64_t>())
                               .aux_logits(o["aux_logits"].get<bool>())
                               .transform_input(o["transform_input"].get<bool>()));
      m->reset_parameters();
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              const auto r = m->forward(in.at("x"));
                              return TensorMap{{"logits", r.logits}, {"pool", r.pool}};
                            }};
    }});

}  // namespace janus::eval
