#include "janus/train/losses.h"

#include "janus/core/error.h"

namespace janus::train {

at::Tensor itm_hard_negatives(const at::Tensor& sim, at::Generator gen) {
  if (!sim.defined() || sim.dim() != 2 || sim.size(0) != sim.size(1))
    throw_input_error("itm_hard_negatives: sim must be a square [B, B] matrix, got {}",
                      sim.defined() ? c10::str(sim.sizes()) : std::string("an undefined tensor"));
  const int64_t B = sim.size(0);
  if (B < 2) throw_input_error("itm_hard_negatives: batch size {} has no negative pair (need B >= 2)", B);
  at::NoGradGuard no_grad;
  auto s = sim.detach().to(at::kFloat);
  if (!at::isfinite(s).all().item<bool>()) throw_input_error("itm_hard_negatives: sim holds non-finite values");
  auto weights = at::softmax(s, 1) + 1e-4;
  weights.fill_diagonal_(0.0);
  // multinomial needs a generator of the tensor's device: sample where the generator lives.
  auto picks = at::multinomial(weights.to(gen.device()), 1, /*replacement=*/false, gen).squeeze(1);
  return picks.to(sim.device());
}

at::Tensor masked_mean(const at::Tensor& x, const at::Tensor& mask) {
  auto m = mask.to(x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat).expand_as(x);
  auto num = (x.to(m.scalar_type()) * m).sum();
  return num / m.sum().clamp_min(1.0);
}

}  // namespace janus::train
