// Bucketed, hook-driven gradient all-reduce (DDP) and the all-gather-with-gradient used by the contrastive loss.
#include <map>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/nn/functional/loss.h>

#include "janus/core/error.h"
#include "janus/train/distributed.h"

namespace janus::dist {
// Autograd hooks may outlive the wrapper (they stay on the parameters' accumulators): they reach it only
// through this, cleared by the destructor.
struct DistributedDataParallel::HookTarget {
  std::mutex mutex;
  DistributedDataParallel* ddp = nullptr;
};

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<torch::nn::Module> module,
                                                 std::shared_ptr<ProcessGroup> pg, DdpOptions options)
    : module_(std::move(module)), pg_(std::move(pg)), options_(options) {
  TORCH_CHECK(module_ != nullptr, "DistributedDataParallel: module is null");
  TORCH_CHECK(pg_ != nullptr, "DistributedDataParallel: process group is null");
  TORCH_CHECK(options_.bucket_mb > 0, "DistributedDataParallel: bucket_mb must be > 0, got ", options_.bucket_mb);
  for (auto& p : module_->parameters()) {
    if (!p.requires_grad()) continue;
    TORCH_CHECK(p.device() == pg_->device(), "DistributedDataParallel: parameter on ", p.device(),
                " but the process group works on ", pg_->device());
    params_.push_back(p);
  }
  broadcast_state();

  // Buckets in reverse registration order, which roughly follows the order backward produces gradients.
  const double cap_bytes = options_.bucket_mb * 1024.0 * 1024.0;
  param_bucket_.assign(params_.size(), 0);
  double bucket_bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    const double bytes = static_cast<double>(p.numel()) * static_cast<double>(p.element_size());
    const bool new_bucket = buckets_.empty() || buckets_.back().flat.scalar_type() != p.scalar_type() ||
                            (bucket_bytes + bytes > cap_bytes && !buckets_.back().params.empty());
    if (new_bucket) {
      buckets_.emplace_back();
      buckets_.back().flat = at::empty({0}, p.options());
      bucket_bytes = 0;
    }
    auto& b = buckets_.back();
    b.offsets.push_back(b.offsets.empty() ? 0 : b.offsets.back() + params_[b.params.back()].numel());
    b.params.push_back(k);
    b.flat = at::empty({b.offsets.back() + p.numel()}, p.options());  // sized once construction ends
    param_bucket_[k] = buckets_.size() - 1;
    bucket_bytes += bytes;
  }
  for (auto& b : buckets_) b.flat.zero_();
  param_ready_.assign(params_.size(), false);
  reset_step();

  if (pg_->size() == 1) return;  // nothing to reduce
  auto target = std::make_shared<HookTarget>();
  target->ddp = this;
  hook_target_ = target;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
    TORCH_CHECK(acc != nullptr, "DistributedDataParallel: parameter ", i, " has no gradient accumulator");
    acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [target, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          std::lock_guard<std::mutex> lock(target->mutex);
          if (target->ddp != nullptr) target->ddp->on_grad_ready(i);
          return outputs;
        }));
    accumulators_.push_back(std::move(acc));
  }
  spdlog::info("ddp: {} parameters in {} buckets of <= {} MiB, world size {}", params_.size(), buckets_.size(),
               options_.bucket_mb, pg_->size());
}

DistributedDataParallel::~DistributedDataParallel() {
  if (hook_target_) {
    std::lock_guard<std::mutex> lock(hook_target_->mutex);
    hook_target_->ddp = nullptr;
  }
}

DistributedDataParallel::NoSyncGuard::NoSyncGuard(DistributedDataParallel& ddp) : ddp_(ddp), previous_(ddp.sync_) {
  ddp_.sync_ = false;
}

DistributedDataParallel::NoSyncGuard::~NoSyncGuard() { ddp_.sync_ = previous_; }

std::vector<size_t> DistributedDataParallel::bucket_of_parameters() const { return param_bucket_; }

void DistributedDataParallel::broadcast_state() {
  if (pg_->size() == 1) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> tensors;
  for (auto& p : module_->parameters()) tensors.push_back(p);
  if (options_.broadcast_buffers) {
    for (auto& b : module_->buffers()) tensors.push_back(b);
  }
  // One broadcast per dtype: flatten, send, scatter back.
  std::map<at::ScalarType, std::vector<at::Tensor>> by_type;
  for (auto& t : tensors) {
    TORCH_CHECK(t.device() == pg_->device(), "DistributedDataParallel: tensor on ", t.device(),
                " but the process group works on ", pg_->device());
    by_type[t.scalar_type()].push_back(t);
  }
  for (auto& [type, ts] : by_type) {
    std::vector<at::Tensor> flat_parts;
    for (auto& t : ts) flat_parts.push_back(t.reshape({-1}));
    auto flat = at::cat(flat_parts);
    pg_->broadcast(flat, 0);
    int64_t off = 0;
    for (auto& t : ts) {
      t.copy_(flat.narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }
}

void DistributedDataParallel::reset_step() {
  std::fill(param_ready_.begin(), param_ready_.end(), false);
  for (auto& b : buckets_) {
    b.pending = b.params.size();
    b.ready = false;
    b.work.reset();
  }
  next_bucket_ = 0;
  step_active_ = false;
}

void DistributedDataParallel::on_grad_ready(size_t i) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sync_) return;
  if (!step_active_) {
    step_active_ = true;
    launched_in_backward_ = 0;
  }
  TORCH_CHECK(!param_ready_[i], "DistributedDataParallel: parameter ", i,
              " received a second gradient before finish(); call finish() after each synced backward or run "
              "earlier backwards under no_sync()");
  param_ready_[i] = true;
  auto& b = buckets_[param_bucket_[i]];
  if (--b.pending == 0) b.ready = true;
  launch_ready_buckets(true);
}

void DistributedDataParallel::launch_ready_buckets(bool from_hook) {
  // Fixed launch order keeps the collectives matched across ranks whatever order gradients arrive in.
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].ready) {
    launch(buckets_[next_bucket_]);
    ++next_bucket_;
    if (from_hook) ++launched_in_backward_;
  }
}

void DistributedDataParallel::launch(Bucket& b) {
  at::NoGradGuard no_grad;
  for (size_t j = 0; j < b.params.size(); ++j) {
    const auto& p = params_[b.params[j]];
    auto slot = b.flat.narrow(0, b.offsets[j], p.numel());
    const auto& g = p.grad();
    if (g.defined()) {
      TORCH_CHECK(!g.is_sparse(), "DistributedDataParallel: sparse gradients are not supported");
      slot.copy_(g.reshape({-1}));
    } else {
      slot.zero_();  // unused on this rank: contributes zero
    }
  }
  b.work = pg_->allreduce_async(b.flat);
}

void DistributedDataParallel::finish() {
  if (pg_->size() == 1) return;
  std::lock_guard<std::mutex> lock(mutex_);
  TORCH_CHECK(sync_, "DistributedDataParallel: finish() called inside no_sync()");
  if (!step_active_) launched_in_backward_ = 0;
  // Buckets with parameters that got no gradient this step (unused) are launched now, in order.
  for (auto& b : buckets_) b.ready = true;
  launch_ready_buckets(false);
  at::NoGradGuard no_grad;
  const double inv_world = 1.0 / static_cast<double>(pg_->size());
  for (auto& b : buckets_) {
    pg_->wait(b.work, "gradient all_reduce");
    b.flat.mul_(inv_world);
    for (size_t j = 0; j < b.params.size(); ++j) {
      auto& p = params_[b.params[j]];
      auto avg = b.flat.narrow(0, b.offsets[j], p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(avg);
      } else {
        p.mutable_grad() = avg.clone();
      }
    }
  }
  reset_step();
}

namespace {

struct AllGatherBackward : public torch::autograd::Node {
  std::shared_ptr<ProcessGroup> pg;
  int64_t rows = 0;
  at::Tensor zeros_like_out;

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    // Every rank's loss depends on every rank's rows: sum the gradients over ranks, keep our slice.
    at::Tensor g = grads[0].defined() ? grads[0].contiguous().clone() : zeros_like_out.clone();
    pg->allreduce(g);
    return {g.narrow(0, static_cast<int64_t>(pg->rank()) * rows, rows)};
  }
  std::string name() const override { return "janus::dist::AllGatherBackward"; }
};

}  // namespace

at::Tensor all_gather_with_grad(const at::Tensor& x, const std::shared_ptr<ProcessGroup>& pg) {
  TORCH_CHECK(pg != nullptr, "all_gather_with_grad: process group is null");
  TORCH_CHECK(x.dim() >= 1, "all_gather_with_grad: needs a leading batch dimension, got a scalar");
  at::Tensor out;
  {
    at::NoGradGuard no_grad;
    out = pg->all_gather(x.detach());
  }
  if (x.requires_grad() && at::GradMode::is_enabled()) {
    auto node = std::shared_ptr<AllGatherBackward>(new AllGatherBackward(), torch::autograd::deleteNode);
    node->pg = pg;
    node->rows = x.size(0);
    node->zeros_like_out = at::zeros_like(out);
    node->set_next_edges(torch::autograd::collect_next_edges(x));
    torch::autograd::set_history(out, node);
  }
  return out;
}

at::Tensor gathered_clip_loss(const at::Tensor& image_features, const at::Tensor& text_features,
                              const at::Tensor& logit_scale, const std::shared_ptr<ProcessGroup>& pg,
                              const at::Tensor& negative_text_features) {
  TORCH_CHECK(image_features.dim() == 2 && text_features.sizes() == image_features.sizes(),
              "gathered_clip_loss: expects image and text features of equal shape [n, D], got ", image_features.sizes(),
              " and ", text_features.sizes());
  const bool distributed = pg != nullptr && pg->size() > 1;
  const int64_t n = image_features.size(0);
  const int64_t rank = distributed ? pg->rank() : 0;
  auto all_image = distributed ? all_gather_with_grad(image_features, pg) : image_features;
  auto all_text = distributed ? all_gather_with_grad(text_features, pg) : text_features;
  auto logits_per_image = logit_scale * at::matmul(image_features, all_text.t());  // [n, world*n]
  if (negative_text_features.defined() && negative_text_features.size(0) > 0) {
    TORCH_CHECK(negative_text_features.dim() == 2 && negative_text_features.size(1) == text_features.size(1),
                "gathered_clip_loss: negative text features must be [m, ", text_features.size(1), "], got ",
                negative_text_features.sizes());
    logits_per_image =
        at::cat({logits_per_image, logit_scale * at::matmul(image_features, negative_text_features.t())}, 1);
  }
  auto logits_per_text = logit_scale * at::matmul(text_features, all_image.t());
  auto labels = at::arange(n, image_features.options().dtype(at::kLong)) + rank * n;
  namespace F = torch::nn::functional;
  return (F::cross_entropy(logits_per_image, labels) + F::cross_entropy(logits_per_text, labels)) / 2;
}

}  // namespace janus::dist
