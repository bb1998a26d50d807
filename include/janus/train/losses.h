#pragma once
// Small loss helpers shared by the stage tasks.
#include <ATen/ATen.h>

namespace janus::train {

// ITM hard-negative mining as in ALBEF/BLIP: sim [B, B] image-text similarity (row i = image i). For each row i
// draws one column j != i with probability proportional to softmax(sim[i]) + 1e-4 (computed in float, diagonal
// zeroed), via at::multinomial with `gen` (sampled on gen's device; a CPU generator gives the same draws on any
// device), so the draw is deterministic given the generator state.
// For text -> image negatives pass sim.t(). -> int64 [B] on sim's device. InputError when sim is not square
// [B, B], B < 2 (no negative exists) or holds non-finite values.
at::Tensor itm_hard_negatives(const at::Tensor& sim, at::Generator gen);

// Mean of x over the positions where mask is true (mask broadcastable to x; nonzero = keep). Returns 0 (with
// graph) when the mask is empty instead of NaN.
at::Tensor masked_mean(const at::Tensor& x, const at::Tensor& mask);

}  // namespace janus::train
