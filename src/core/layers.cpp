#include "janus/core/layers.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/registry.h"

namespace janus {

void check_activation(const std::string& name) {
  if (name != "gelu" && name != "gelu_tanh" && name != "relu" && name != "silu" && name != "identity") {
    throw InputError(fmt::format("activation '{}' is not one of gelu, gelu_tanh, relu, silu, identity", name));
  }
}

at::Tensor activation(const at::Tensor& x, const std::string& name) {
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_tanh") return at::gelu(x, "tanh");
  if (name == "relu") return at::relu(x);
  if (name == "silu") return at::silu(x);
  if (name == "identity") return x;
  check_activation(name);
  return x;
}

MlpImpl::MlpImpl(const MlpOptions& options_) : options(options_) { reset(); }

void MlpImpl::reset() {
  check_activation(options.act());
  const int64_t out = options.out_features() > 0 ? options.out_features() : options.in_features();
  fc1 = register_module(
      "fc1", torch::nn::Linear(
                 torch::nn::LinearOptions(options.in_features(), options.hidden_features()).bias(options.bias())));
  fc2 = register_module(
      "fc2", torch::nn::Linear(torch::nn::LinearOptions(options.hidden_features(), out).bias(options.bias())));
  drop = register_module("drop", torch::nn::Dropout(options.dropout()));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  return fc2->forward(drop->forward(activation(fc1->forward(x), options.act())));
}

// ---- registry entries for the basic layers ---------------------------------------------------------------------
JANUS_REGISTER_MODULE(ModuleEntry{"linear",
                                  "y = x W^T + b (torch.nn.Linear layout: weight [out, in], bias [out])",
                                  {{"in_features", "int", nullptr, "input features", true},
                                   {"out_features", "int", nullptr, "output features", true},
                                   {"bias", "bool", true, "learn an additive bias"}},
                                  {{"x", "[*, in_features] float"}},
                                  {{"y", "[*, out_features] float"}},
                                  [](const nlohmann::json& o) {
                                    auto m =
                                        torch::nn::Linear(torch::nn::LinearOptions(o["in_features"].get<int64_t>(),
                                                                                   o["out_features"].get<int64_t>())
                                                              .bias(o["bias"].get<bool>()));
                                    return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                                                            return TensorMap{{"y", m->forward(in.at("x"))}};
                                                          }};
                                  }});

JANUS_REGISTER_MODULE(ModuleEntry{"mlp",
                                  "fc2(act(fc1(x))) with timm Mlp names (fc1, fc2)",
                                  {{"in_features", "int", nullptr, "input features", true},
                                   {"hidden_features", "int", nullptr, "hidden features", true},
                                   {"out_features", "int", 0, "output features; 0 = in_features"},
                                   {"act", "string", "gelu", "activation: gelu, gelu_tanh, relu, silu, identity"},
                                   {"bias", "bool", true, "learn biases"}},
                                  {{"x", "[*, in_features] float"}},
                                  {{"y", "[*, out_features] float"}},
                                  [](const nlohmann::json& o) {
                                    auto m = Mlp(MlpOptions(o["in_features"].get<int64_t>(),
                                                            o["hidden_features"].get<int64_t>(),
                                                            o["out_features"].get<int64_t>())
                                                     .act(o["act"].get<std::string>())
                                                     .bias(o["bias"].get<bool>()));
                                    return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                                                            return TensorMap{{"y", m->forward(in.at("x"))}};
                                                          }};
                                  }});

}  // namespace janus
