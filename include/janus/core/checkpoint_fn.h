#pragma once
// Activation checkpointing (gradient checkpointing) for LibTorch C++, which has no torch.utils.checkpoint.
//
// y = checkpoint(fn, x, params) runs fn(x) without recording a graph and keeps only x. In backward it re-runs fn
// with grad enabled on a detached copy of x and returns the gradients of x AND of `params` through the ordinary
// autograd engine (params are explicit inputs of the checkpoint node), so:
//   - parameter .grad accumulates exactly as without checkpointing (and torch::autograd::grad(loss, params) works,
//     e.g. GradNorm on a parameter inside a checkpointed block);
//   - RNG replays: the default CPU generator, the default CUDA generator of x's device (when x is on CUDA) and any
//     `generators` given (e.g. LSH rotation generators) are set to their forward-time state for the recomputation
//     and restored afterwards, so dropout masks and random rotations are identical and the RNG streams advance
//     exactly as in a run without checkpointing;
//   - autocast (CPU and CUDA enabled flags and dtypes) is re-entered as it was during the forward.
// Contract: fn must be a deterministic function of x, `params` and the RNG states above. Other tensors it captures
// must not require grad (they would get no gradient). Double backward works when the outer backward uses
// create_graph (the recomputation then records a graph). Trade: one extra forward per block in backward for not
// keeping the block's intermediate activations.
#include <functional>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

namespace janus {

using CheckpointFn = std::function<at::Tensor(const at::Tensor&)>;

// x: any tensor fn accepts; params: the trainable tensors fn uses (those not requiring grad are ignored).
at::Tensor checkpoint(const CheckpointFn& fn, const at::Tensor& x, const std::vector<at::Tensor>& params = {},
                      const std::vector<at::Generator>& generators = {});

// The parameters of `module` (recursively) that require grad: the `params` argument for a block.
std::vector<at::Tensor> trainable_parameters(const torch::nn::Module& module);

// Whether a training forward should checkpoint: flag on, module in training mode and grad mode enabled.
bool use_checkpoint(bool flag, const torch::nn::Module& module);

}  // namespace janus
