#include "janus/train/toy_task.h"

#include <chrono>
#include <csignal>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include "janus/core/error.h"
#include "janus/core/registry.h"

namespace janus::train {

ToyNetImpl::ToyNetImpl(ToyNetOptions options_) : options(std::move(options_)) { reset(); }

void ToyNetImpl::reset() {
  TORCH_CHECK(options.in_dim() > 0 && options.hidden() > 0 && options.out_dim() > 0 && options.vocab() > 0,
              "ToyNet: dimensions must be positive");
  embed = register_module("embed", torch::nn::Embedding(options.vocab(), options.in_dim()));
  fc1 = register_module("fc1", torch::nn::Linear(options.in_dim(), options.hidden()));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({options.hidden()})));
  drop = register_module("drop", torch::nn::Dropout(options.dropout()));
  fc2 = register_module("fc2", torch::nn::Linear(options.hidden(), options.out_dim()));
  disc = options.discriminator() ? register_module("disc", torch::nn::Linear(options.out_dim(), 1))
                                 : torch::nn::Linear(nullptr);
}

at::Tensor ToyNetImpl::forward(const at::Tensor& x, const at::Tensor& tokens) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == options.in_dim(), "ToyNet: x must be [B, ", options.in_dim(), "], got ",
              x.sizes());
  auto h = fc1->forward(x + embed->forward(tokens));
  h = drop->forward(at::gelu(norm->forward(h)));
  return fc2->forward(h);
}

at::Tensor ToyNetImpl::discriminate(const at::Tensor& y) {
  TORCH_CHECK(!disc.is_empty(), "ToyNet: built without a discriminator");
  return disc->forward(y);
}

ToyDataSource::ToyDataSource(ToyNetOptions net, int64_t batch_size, uint64_t seed, int rank, int world_size)
    : net_(std::move(net)), batch_size_(batch_size), seed_(seed), rank_(rank), world_size_(world_size) {
  if (batch_size_ < 1) throw_input_error("toy data: batch size must be >= 1, got {}", batch_size_);
  if (world_size_ < 1 || rank_ < 0 || rank_ >= world_size_) {
    throw_input_error("toy data: rank {} outside world size {}", rank_, world_size_);
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + 17);
  a_ = at::randn({net_.in_dim(), net_.out_dim()}, gen, at::kFloat);
}

Batch ToyDataSource::next() {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + 1000 + static_cast<uint64_t>(index_));
  Batch b;
  // The whole global batch is generated on every rank (cheap here) and this rank keeps its shard of rows.
  const int64_t global = batch_size_ * world_size_;
  const auto x_all = at::randn({global, net_.in_dim()}, gen, at::kFloat);
  const auto tok_all = at::randint(net_.vocab(), {global}, gen, at::kLong);
  const auto x = x_all.narrow(0, rank_ * batch_size_, batch_size_).contiguous();
  const auto tok = tok_all.narrow(0, rank_ * batch_size_, batch_size_).contiguous();
  b.tensors["x"] = x;
  b.tensors["tokens"] = tok;
  b.tensors["y"] = at::tanh(x.matmul(a_)) + 0.1 * at::sin(tok.to(at::kFloat)).unsqueeze(1);
  b.size = batch_size_;
  b.meta["index"] = index_++;
  return b;
}

void ToyDataSource::load_state(const nlohmann::json& state) {
  if (!state.is_object() || !state.contains("index") || !state["index"].is_number_integer()) {
    throw_input_error("toy data: bad cursor {}", state.dump());
  }
  index_ = state["index"].get<int64_t>();
}

ToyTask::ToyTask(ToyTaskOptions options)
    : opt_(std::move(options)),
      net_(ToyNet(opt_.net)),
      data_(opt_.net, opt_.batch_size, opt_.seed, opt_.rank, opt_.world_size) {}

StepOutput ToyTask::compute_loss(const Batch& batch, const StepContext& ctx) {
  if (opt_.step_sleep_ms > 0 && ctx.micro == 0 && ctx.optimizer == "main") {
    std::this_thread::sleep_for(std::chrono::milliseconds(opt_.step_sleep_ms));
  }
  StepOutput out;
  const auto pred = net_->forward(batch.at("x"), batch.at("tokens"));
  const auto& y = batch.at("y");
  if (ctx.optimizer == "disc") {
    // Hinge discriminator loss: real targets vs detached predictions.
    const auto real = net_->discriminate(y);
    const auto fake = net_->discriminate(pred.detach());
    out.parts["hinge"] = 0.5 * (at::relu(1 - real).mean() + at::relu(1 + fake).mean());
    out.total = out.parts["hinge"];
    return out;
  }
  out.parts["mse"] = at::mse_loss(pred.to(at::kFloat), y);
  out.total = out.parts["mse"];
  if (opt_.net.discriminator()) {
    out.parts["gen"] = -net_->discriminate(pred).mean() * 0.01;
    out.total = out.total + out.parts["gen"];
  }
  return out;
}

std::vector<ExtraOptimizerSpec> ToyTask::extra_optimizers() const {
  if (!opt_.net.discriminator()) return {};
  ExtraOptimizerSpec s;
  s.name = "disc";
  s.param_prefixes = {"disc"};
  s.lr = 1e-3;
  return {s};
}

void ToyTask::after_step(const StepContext&) {
  ++steps_seen_;
  if (opt_.kill_at_step >= 0 && steps_seen_ == opt_.kill_at_step && (opt_.kill_rank < 0 || opt_.kill_rank == opt_.rank)) {
    spdlog::warn("toy task: killing rank {} with SIGKILL after step {} (--toy-kill-at-step)", opt_.rank, steps_seen_);
    spdlog::default_logger()->flush();
    std::raise(SIGKILL);
  }
}

void ToyTask::save_state(TensorMap& tensors, nlohmann::json& meta) const {
  meta["steps_seen"] = steps_seen_;
  tensors["steps_seen"] = at::scalar_tensor(steps_seen_, at::kLong);
}

void ToyTask::load_state(const TensorMap& tensors, const nlohmann::json& meta) {
  steps_seen_ = meta.value("steps_seen", int64_t{0});
  const auto it = tensors.find("steps_seen");
  if (it == tensors.end() || it->second.item<int64_t>() != steps_seen_) {
    throw_input_error("toy task: checkpoint state inconsistent (steps_seen)");
  }
}

JANUS_REGISTER_MODULE(ModuleEntry{"train.toy_net",
                                  "trainer test net: fc2(drop(gelu(norm(fc1(x + embed(tokens)))))), optional disc head",
                                  {{"in_dim", "int", 8, "input features"},
                                   {"hidden", "int", 32, "hidden features"},
                                   {"out_dim", "int", 4, "output features"},
                                   {"vocab", "int", 16, "token vocabulary"},
                                   {"dropout", "float", 0.1, "dropout probability"},
                                   {"discriminator", "bool", false, "add the disc head"}},
                                  {{"x", "[B, in_dim] float"}, {"tokens", "[B] int64"}},
                                  {{"y", "[B, out_dim] float"}},
                                  [](const nlohmann::json& o) {
                                    auto m = ToyNet(ToyNetOptions()
                                                        .in_dim(o["in_dim"].get<int64_t>())
                                                        .hidden(o["hidden"].get<int64_t>())
                                                        .out_dim(o["out_dim"].get<int64_t>())
                                                        .vocab(o["vocab"].get<int64_t>())
                                                        .dropout(o["dropout"].get<double>())
                                                        .discriminator(o["discriminator"].get<bool>()));
                                    return RunnableModule{
                                        m.ptr(), [m](const TensorMap& in) mutable {
                                          return TensorMap{{"y", m->forward(in.at("x"), in.at("tokens"))}};
                                        }};
                                  }});

}  // namespace janus::train
