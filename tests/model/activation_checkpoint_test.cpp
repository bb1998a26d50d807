// Activation checkpointing: janus::checkpoint and JanusModelImpl::set_activation_checkpointing.
#include <malloc.h>

#include <cstdio>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn.h>

#include "janus/core/checkpoint_fn.h"
#include "janus/core/layers.h"
#include "janus/model/janus_model.h"
#include "test_util.h"

namespace {

using janus::test::all_close;

// A block with dropout in two places (the RNG must replay identically on recomputation).
struct DropBlockImpl : torch::nn::Module {
  DropBlockImpl() {
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({16})));
    mlp = register_module("mlp", janus::Mlp(janus::MlpOptions(16, 32).dropout(0.3)));
  }
  at::Tensor forward(const at::Tensor& x) { return x + at::dropout(mlp->forward(norm->forward(x)), 0.2, is_training()); }
  torch::nn::LayerNorm norm{nullptr};
  janus::Mlp mlp{nullptr};
};
TORCH_MODULE(DropBlock);

std::map<std::string, at::Tensor> grads_of(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters())
    if (p.value().grad().defined()) out[p.key()] = p.value().grad().clone();
  return out;
}

// Runs a two-block stack (with or without checkpointing): returns loss, x.grad, parameter grads and the next
// random number drawn after backward (to check the RNG stream advanced exactly as without checkpointing).
struct StackRun {
  at::Tensor loss, xgrad, next_random;
  std::map<std::string, at::Tensor> grads;
};

StackRun run_stack(DropBlock& a, DropBlock& b, bool ckpt, bool input_requires_grad) {
  torch::manual_seed(5);
  auto x = at::randn({4, 8, 16}).requires_grad_(input_requires_grad);
  a->zero_grad();
  b->zero_grad();
  at::Tensor h = x;
  for (auto* blk : {&a, &b}) {
    auto m = *blk;
    auto impl = m.ptr();
    h = ckpt ? janus::checkpoint([impl](const at::Tensor& t) { return impl->forward(t); }, h,
                                 janus::trainable_parameters(*m))
             : m->forward(h);
  }
  auto loss = (h * h).mean() + at::dropout(h, 0.5, true).sum() * 1e-3;  // RNG used after the blocks too
  loss.backward();
  StackRun r;
  r.loss = loss.detach();
  r.xgrad = input_requires_grad ? x.grad().clone() : at::Tensor();
  r.next_random = at::rand({4});
  for (auto& kv : grads_of(*a)) r.grads["a." + kv.first] = kv.second;
  for (auto& kv : grads_of(*b)) r.grads["b." + kv.first] = kv.second;
  return r;
}

void expect_same_grads(const std::map<std::string, at::Tensor>& on, const std::map<std::string, at::Tensor>& off,
                       double atol) {
  ASSERT_EQ(on.size(), off.size()) << "different sets of parameters received gradients";
  for (const auto& [name, g] : off) {
    ASSERT_TRUE(on.count(name)) << name;
    EXPECT_TRUE(all_close(on.at(name), g, atol)) << name;
  }
}

janus::JanusModel tiny_model() {
  torch::manual_seed(0);
  auto o = janus::model_flavour("tiny", /*vocab=*/50, /*image_size=*/32);
  return janus::JanusModel(o);
}

// Every transformer stack of the model in one loss: ViT and text encoder (contrastive), bidirectional fusion with
// LSH (ITM), causal stack (caption, text->image codes). SimMIM/MLM use the same encoder blocks (left out: speed).
at::Tensor all_losses(janus::JanusModelImpl& m, int64_t B = 2) {
  torch::manual_seed(3);
  const int64_t L = 6;
  auto images = torch::randn({B, 3, 32, 32});
  janus::TextInput text{torch::randint(5, 50, {B, L}), torch::ones({B, L}, torch::kBool)};
  text.ids.select(1, 0).fill_(1);
  text.mask[B - 1].slice(0, L - 2).fill_(false);
  auto codes = torch::randint(0, 512, {B, m.options.code_tokens()});
  auto loss = m.contrastive(images, text).loss;
  loss = loss + m.itm(images, text, (torch::arange(B) % 2)).loss;
  loss = loss + m.caption(images, text).loss;
  loss = loss + m.image_code_logits(text.ids, codes).loss;
  return loss;
}

size_t heap_in_use() {
  const auto mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

}  // namespace

TEST(ActivationCheckpoint, FunctionMatchesPlainWithDropout) {
  torch::manual_seed(1);
  DropBlock a, b;
  for (bool input_grad : {true, false}) {
    auto off = run_stack(a, b, false, input_grad);
    auto on = run_stack(a, b, true, input_grad);
    EXPECT_TRUE(all_close(on.loss, off.loss, 1e-6));
    if (input_grad) {
      EXPECT_TRUE(all_close(on.xgrad, off.xgrad, 1e-6));
    }
    expect_same_grads(on.grads, off.grads, 1e-6);
    EXPECT_EQ(on.grads.size(), 12u);  // every parameter of both blocks (norm, fc1, fc2), even when x needs no grad
    EXPECT_TRUE(at::equal(on.next_random, off.next_random)) << "checkpointing changed the RNG stream";
  }
}

TEST(ActivationCheckpoint, WithoutReplayDropoutWouldDiffer) {
  // Guards the test above: recomputing with a different dropout mask must give different gradients.
  torch::manual_seed(1);
  DropBlock a;
  torch::manual_seed(5);
  auto x = at::randn({4, 8, 16});
  bool consumed = false;
  auto fn = [&](const at::Tensor& t) {
    if (consumed) at::rand({1});  // shifts the stream on the recomputation only
    consumed = true;
    return a->forward(t);
  };
  auto y = janus::checkpoint(fn, x, janus::trainable_parameters(*a));
  (y * y).mean().backward();
  auto g_shifted = a->mlp->fc1->weight.grad().clone();
  a->zero_grad();
  torch::manual_seed(5);
  auto x2 = at::randn({4, 8, 16});
  (a->forward(x2).pow(2)).mean().backward();
  EXPECT_FALSE(all_close(g_shifted, a->mlp->fc1->weight.grad(), 1e-6));
}

TEST(ActivationCheckpoint, AutogradGradOnParameterInsideBlock) {
  torch::manual_seed(2);
  DropBlock a;
  a->eval();
  auto x = at::randn({2, 3, 16});
  auto w = a->mlp->fc2->weight;
  auto g_plain = torch::autograd::grad({a->forward(x).sum()}, {w})[0];
  auto impl = a.ptr();
  auto y =
      janus::checkpoint([impl](const at::Tensor& t) { return impl->forward(t); }, x, janus::trainable_parameters(*a));
  auto g_ckpt = torch::autograd::grad({y.sum()}, {w})[0];
  EXPECT_TRUE(all_close(g_ckpt, g_plain, 1e-6));
  EXPECT_FALSE(w.grad().defined()) << "autograd::grad must not populate .grad";
}

TEST(ActivationCheckpoint, ModelLossAndEveryGradientMatch) {
  auto off_model = tiny_model();
  auto on_model = tiny_model();
  for (size_t i = 0; i < off_model->parameters().size(); ++i)
    ASSERT_TRUE(at::equal(off_model->parameters()[i], on_model->parameters()[i]));
  on_model->set_activation_checkpointing(true);
  EXPECT_TRUE(on_model->activation_checkpointing());
  EXPECT_FALSE(off_model->activation_checkpointing());
  off_model->train();
  on_model->train();
  for (int rep = 0; rep < 2; ++rep) {  // twice: the LSH generators advance identically
    off_model->zero_grad();
    on_model->zero_grad();
    auto l_off = all_losses(*off_model);
    auto l_on = all_losses(*on_model);
    EXPECT_TRUE(all_close(l_on.detach(), l_off.detach(), 1e-6)) << "rep " << rep;
    l_off.backward();
    l_on.backward();
    auto g_off = grads_of(*off_model), g_on = grads_of(*on_model);
    EXPECT_GT(g_off.size(), 100u);
    expect_same_grads(g_on, g_off, 1e-6);
  }
}

TEST(ActivationCheckpoint, EvalAndKvCachePathsUnaffected) {
  auto m = tiny_model();
  m->eval();
  torch::NoGradGuard ng;
  torch::manual_seed(4);
  auto images = torch::randn({2, 3, 32, 32});
  auto off = m->generate_caption(images, /*bos=*/1, /*eos=*/2, /*max_len=*/4);
  m->set_activation_checkpointing(true);
  auto on = m->generate_caption(images, 1, 2, 4);
  EXPECT_TRUE(at::equal(on, off));
}

TEST(ActivationCheckpoint, HoldsLessActivationMemory) {
  // Heap bytes held by the autograd graph between forward and backward (glibc mallinfo2: malloc'd + mmapped).
  auto measure = [](bool ckpt) {
    auto m = tiny_model();
    m->train();
    m->set_activation_checkpointing(ckpt);
    malloc_trim(0);
    const auto before = heap_in_use();
    auto loss = all_losses(*m, /*B=*/8);
    const auto held = heap_in_use() - before;
    loss.backward();
    return static_cast<double>(held);
  };
  const double off = measure(false), on = measure(true);
  std::printf("activation memory held after forward (tiny model, B=8, all stacks): off %.1f MiB, on %.1f MiB "
              "(ratio %.2f)\n",
              off / (1 << 20), on / (1 << 20), on / off);
  EXPECT_LT(on, 0.8 * off);
}
