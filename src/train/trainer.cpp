#include "janus/train/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/io/module_io.h"
#include "janus/train/freeze.h"

namespace janus::train {
namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

// Enables autocast for one device type for the guard's lifetime, restoring the previous state after.
class AutocastGuard {
 public:
  AutocastGuard(at::DeviceType type, std::optional<at::ScalarType> dtype) : type_(type), active_(dtype.has_value()) {
    if (!active_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(type_);
    prev_dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, *dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, prev_enabled_);
    at::autocast::set_autocast_dtype(type_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  at::DeviceType type_;
  bool active_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

std::string module_of(const std::string& param) {
  const auto pos = param.rfind('.');
  return pos == std::string::npos ? "<root>" : param.substr(0, pos);
}

// Metric-key prefix of an optimizer's values: none for the main one, "<name>/" for the others.
std::string pre_of(const std::string& optimizer) { return optimizer == "main" ? "" : optimizer + "/"; }

int cuda_devices() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

void save_rng(TensorMap& out) {
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    out["rng.cpu"] = gen.get_state();
  }
  for (int i = 0; i < cuda_devices(); ++i) {
    auto gen = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
    std::lock_guard<std::mutex> lock(gen.mutex());
    out[fmt::format("rng.cuda.{}", i)] = gen.get_state();
  }
}

void load_rng(const TensorMap& in) {
  const auto cpu = in.find("rng.cpu");
  if (cpu == in.end()) throw_input_error("checkpoint: CPU RNG state missing");
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(cpu->second);
  }
  for (int i = 0; i < cuda_devices(); ++i) {
    const auto it = in.find(fmt::format("rng.cuda.{}", i));
    if (it == in.end()) {
      spdlog::warn("checkpoint has no RNG state for cuda:{} (saved on a machine with fewer GPUs)", i);
      continue;
    }
    auto gen = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second);
  }
}

TensorMap prefixed(const TensorMap& in, const std::string& prefix) {
  TensorMap out;
  for (const auto& [k, v] : in) {
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  }
  return out;
}

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}
void request_stop() { g_stop.store(true); }
bool stop_requested() { return g_stop.load(); }
void clear_stop_request() { g_stop.store(false); }

at::Device resolve_device(const std::string& spec) {
  if (spec == "auto") return cuda_devices() > 0 ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  try {
    const at::Device d(spec);
    if (d.is_cuda() && (d.has_index() ? d.index() : 0) >= cuda_devices()) {
      throw_input_error("train.device: '{}' requested but {} CUDA device(s) are available", spec, cuda_devices());
    }
    if (!d.is_cpu() && !d.is_cuda()) throw_input_error("train.device: only cpu and cuda are supported, got '{}'", spec);
    return d;
  } catch (const c10::Error&) {
    throw_input_error("train.device: cannot parse '{}' (cpu, cuda, cuda:N or auto)", spec);
  }
}

at::Device resolve_device(const std::string& spec, int local_rank) {
  const at::Device d = resolve_device(spec);
  if (!d.is_cuda() || (spec != "auto" && spec != "cuda")) return d;
  if (local_rank >= cuda_devices()) {
    throw_input_error("train.device {}: local rank {} needs cuda:{} but {} CUDA device(s) are available", spec,
                      local_rank, local_rank, cuda_devices());
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
}

struct Trainer::Opt {
  NamedOptimizer optim;
  GradScaler scaler;
  Opt(NamedOptimizer o, GradScaler s) : optim(std::move(o)), scaler(std::move(s)) {}
};

Trainer::Trainer(const Config& config, TrainTask& task, DistContext dist, TrainerHooks hooks)
    : config_(config), task_(task), dist_(dist), hooks_(std::move(hooks)), run_dir_(config.train.run_dir) {
  const auto& tc = config_.train;
  if (run_dir_.empty()) throw_input_error("train.run_dir must not be empty");
  model_ = task_.model();
  if (!model_) throw_error("TrainTask::model() returned null");
  device_ = dist_.world_size > 1 ? resolve_device(tc.device, dist_.local_rank) : resolve_device(tc.device);
  model_->to(device_);
  apply_freeze(*model_, tc.freeze);

  const bool fp16 = tc.precision == "fp16";
  if (fp16 && !at::autocast::is_autocast_available(device_.type())) {
    throw_input_error("train.precision fp16: autocast is not available on {}", device_.str());
  }
  // Parameters claimed by extra optimisers leave the main one.
  NamedParams all;
  for (auto& item : model_->named_parameters(true)) {
    if (item.value().requires_grad()) all.emplace_back(item.key(), item.value());
  }
  trainable_ = all;
  const auto& oc = config_.optim;
  if (oc.name != "adamw") throw_input_error("optim.name: only adamw is implemented by the trainer, got '{}'", oc.name);
  std::vector<std::pair<ExtraOptimizerSpec, NamedParams>> extras;
  for (const auto& spec : task_.extra_optimizers()) {
    if (spec.name == "main" || spec.name.empty()) throw_error("extra optimizer needs a name other than 'main'");
    NamedParams mine, rest;
    for (auto& np : all) {
      const bool claimed = std::any_of(spec.param_prefixes.begin(), spec.param_prefixes.end(),
                                       [&](const std::string& p) { return has_name_prefix(np.first, p); });
      (claimed ? mine : rest).push_back(np);
    }
    if (mine.empty()) throw_error("extra optimizer '{}' selects no trainable parameter", spec.name);
    all = std::move(rest);
    extras.emplace_back(spec, std::move(mine));
  }
  if (all.empty()) throw_input_error("no trainable parameters left for the main optimizer (check train.freeze)");
  const auto overrides = parse_optim_overrides(oc.overrides);
  auto make_scaler = [&] { return GradScaler(fp16, tc.loss_scale_init, 2.0, 0.5, tc.loss_scale_growth_interval); };
  opts_.push_back(std::make_unique<Opt>(
      make_adamw("main", *model_, all, oc.lr, oc.weight_decay, oc.beta1, oc.beta2, oc.eps, overrides), make_scaler()));
  for (auto& [spec, params] : extras) {
    opts_.push_back(std::make_unique<Opt>(
        make_adamw(spec.name, *model_, params, spec.lr, spec.weight_decay, oc.beta1, oc.beta2, oc.eps), make_scaler()));
  }
  if (tc.ema_decay > 0) ema_ = std::make_unique<Ema>(trainable_, tc.ema_decay);
  schedule_.name = config_.schedule.name;
  schedule_.warmup_steps = config_.schedule.warmup_steps;
  schedule_.total_steps = tc.steps;
  schedule_.min_lr_ratio = config_.schedule.min_lr_ratio;
  store_ =
      std::make_unique<CheckpointStore>((fs::path(run_dir_) / "checkpoints").string(), config_.checkpoint.keep_last);
  MetricsOptions mo;
  mo.run_dir = run_dir_;
  mo.enabled = dist_.is_main();
  mo.jsonl = config_.log.jsonl;
  mo.tensorboard = config_.log.tensorboard;
  mo.total_steps = tc.steps;
  metrics_ = std::make_unique<Metrics>(mo);
  profiler_ =
      std::make_unique<StepProfiler>(tc.profile_steps, run_dir_, dist_.is_main(), device_.is_cuda(), tc.profile_shapes);
  int64_t n_main = 0;
  for (const auto& [n, p] : opts_[0]->optim.groups.all()) n_main += p.numel();
  spdlog::info("trainer: {} on {}, precision {}, {} trainable tensors ({} decay / {} no-decay in main, {} params)",
               run_dir_, device_.str(), tc.precision, trainable_.size(), opts_[0]->optim.groups.decay.size(),
               opts_[0]->optim.groups.no_decay.size(), n_main);
}

Trainer::~Trainer() = default;

const NamedOptimizer& Trainer::optimizer(const std::string& name) const {
  for (const auto& o : opts_) {
    if (o->optim.name == name) return o->optim;
  }
  throw_error("no optimizer named '{}'", name);
}

const GradScaler& Trainer::scaler(const std::string& name) const {
  for (const auto& o : opts_) {
    if (o->optim.name == name) return o->scaler;
  }
  throw_error("no optimizer named '{}'", name);
}

std::string Trainer::checkpoint_dir() const { return store_->root(); }

void Trainer::init_from(const std::string& path) {
  std::string file = path;
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "manifest.json")) {
      const auto why = CheckpointStore::validate(path, {"model.safetensors"});
      if (!why.empty()) throw_input_error("train.init_from: checkpoint '{}' is corrupt: {}", path, why);
      file = (fs::path(path) / "model.safetensors").string();
    } else {
      // A run directory: the shared rule (final weights, else the newest valid checkpoint); raw weights, not EMA,
      // since training continues from them.
      const auto weights = run_weights_file(path, /*prefer_ema=*/false);
      if (!weights) {
        throw_input_error(
            "train.init_from: '{}' holds no final/model.safetensors, model.safetensors or valid checkpoint", path);
      }
      file = *weights;
    }
  }
  LoadOptions lo;
  lo.strict = false;  // a later stage adds modules the previous one did not have
  const auto report = load_module(*model_, file, lo);
  spdlog::info("init_from {}: {}", file, report.summary());
  if (!report.mismatched.empty()) throw_input_error("train.init_from {}: shape mismatches: {}", file, report.summary());
}

std::string Trainer::save_checkpoint() {
  std::string dir;
  if (dist_.is_main()) {
    TensorMap state;
    for (const auto& o : opts_) {
      o->optim.save_state(state, "optim." + o->optim.name + ".");
      o->scaler.save_state(state, "scaler." + o->optim.name + ".");
    }
    if (ema_) ema_->save_state(state, "ema.");
    save_rng(state);
    TensorMap task_tensors;
    nlohmann::json task_meta = nlohmann::json::object();
    task_.save_state(task_tensors, task_meta);
    for (auto& [k, v] : task_tensors) state["task." + k] = v;
    nlohmann::json meta{{"step", step_},
                        {"stage", config_.train.stage},
                        {"samples", samples_},
                        {"nonfinite_total", nonfinite_total_},
                        {"nonfinite_consecutive", nonfinite_consecutive_},
                        {"data", task_.data().state()},
                        {"task", task_meta},
                        {"schedule", {{"name", schedule_.name}, {"factor", schedule_.factor(step_)}}},
                        {"lr", nlohmann::json::object()},
                        {"config_hash", config_.hash()}};
    for (const auto& o : opts_) meta["lr"][o->optim.name] = o->optim.lr();
    std::map<std::string, std::string> files;
    files["model.safetensors"] = safetensors_bytes(module_state(*model_));
    files["state.safetensors"] = safetensors_bytes(state);
    files["state.json"] = meta.dump(2);
    files["config.yaml"] = config_.to_yaml();
    dir = store_->write(step_, files);
    last_checkpoint_ = dir;
    spdlog::info("checkpoint {} written", dir);
  }
  if (hooks_.after_checkpoint) hooks_.after_checkpoint();
  return dir;
}

void Trainer::load_checkpoint(const std::string& dir) {
  const auto why = CheckpointStore::validate(dir, trainer_checkpoint_files());
  if (!why.empty()) throw_input_error("checkpoint '{}' is corrupt: {}", dir, why);
  const fs::path d(dir);
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(read_file((d / "state.json").string()));
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("checkpoint '{}': state.json: {}", dir, e.what());
  }
  load_module(*model_, (d / "model.safetensors").string());  // strict
  const TensorMap state = load_safetensors((d / "state.safetensors").string());
  for (auto& o : opts_) {
    o->optim.load_state(state, "optim." + o->optim.name + ".");
    o->scaler.load_state(state, "scaler." + o->optim.name + ".");
  }
  if (ema_) ema_->load_state(state, "ema.");
  load_rng(state);
  task_.load_state(prefixed(state, "task."), meta.value("task", nlohmann::json::object()));
  task_.data().load_state(meta.at("data"));
  step_ = meta.at("step").get<int64_t>();
  samples_ = meta.value("samples", int64_t{0});
  nonfinite_total_ = meta.value("nonfinite_total", int64_t{0});
  nonfinite_consecutive_ = meta.value("nonfinite_consecutive", int64_t{0});
  if (meta.value("stage", config_.train.stage) != config_.train.stage) {
    spdlog::warn("resuming a stage {} checkpoint with train.stage {}", meta.value("stage", 0), config_.train.stage);
  }
  if (meta.value("config_hash", "") != config_.hash()) {
    spdlog::warn("resuming {} with a config that differs from the one it was written with", dir);
  }
  last_checkpoint_ = dir;
  spdlog::info("resumed from {} at step {}", dir, step_);
}

bool Trainer::run_step() {
  const auto& tc = config_.train;
  StepContext ctx;
  ctx.step = step_;
  ctx.total_steps = tc.steps;
  ctx.micro_steps = tc.grad_accum;
  std::vector<Batch> micro;
  micro.reserve(static_cast<size_t>(tc.grad_accum));
  for (int64_t m = 0; m < tc.grad_accum; ++m) {
    Batch b = task_.data().next();
    for (auto& [k, v] : b.tensors) v = v.to(device_, /*non_blocking=*/true);
    samples_ += b.size * dist_.world_size;  // global samples (equal shards per rank)
    micro.push_back(std::move(b));
  }
  const bool inject = std::find(tc.debug_nonfinite_steps.begin(), tc.debug_nonfinite_steps.end(), step_) !=
                      tc.debug_nonfinite_steps.end();
  std::optional<at::ScalarType> amp;
  if (tc.precision == "bf16") amp = at::kBFloat16;
  if (tc.precision == "fp16") amp = at::kHalf;
  const double factor = schedule_.factor(step_);
  bool all_finite = true;
  std::string bad_param;
  int64_t bad_count = 0;
  for (auto& o : opts_) {
    ctx.optimizer = o->optim.name;
    for (auto& [n, p] : trainable_) p.mutable_grad().reset();
    bool active = true;
    for (int64_t m = 0; m < tc.grad_accum && active; ++m) {
      ctx.micro = m;
      StepOutput out;
      {
        AutocastGuard ac(device_.type(), amp);
        out = task_.compute_loss(micro[static_cast<size_t>(m)], ctx);
      }
      if (!out.total.defined()) {
        active = false;
        break;
      }
      at::Tensor total = out.total.to(at::kFloat);
      if (inject && o->optim.name == "main") total = total * std::numeric_limits<float>::quiet_NaN();
      const std::string pre = pre_of(o->optim.name);
      log_sums_[pre + "loss"].add(total.detach().item<double>(), tc.grad_accum);
      for (const auto& [k, v] : out.parts)
        log_sums_[pre + k].add(v.detach().to(at::kFloat).item<double>(), tc.grad_accum);
      if (hooks_.before_backward) hooks_.before_backward(m, tc.grad_accum);
      o->scaler.scale(total / static_cast<double>(tc.grad_accum)).backward();
    }
    if (!active) continue;
    const auto params = o->optim.params();
    if (hooks_.sync_grads) hooks_.sync_grads(o->optim.name, params);
    bool finite = o->scaler.unscale(params);
    if (hooks_.any_rank) finite = !hooks_.any_rank(!finite);
    if (finite) {
      const auto& oc = config_.optim;
      double gn = 0;
      if (oc.grad_clip_by == "module" || config_.log.grad_norm_by_module) {
        const auto norms =
            clip_grad_norm_by_module(o->optim.groups.all(), oc.grad_clip_by == "module" ? oc.grad_clip : 0.0);
        double sq = 0;
        for (const auto& [m, n] : norms) {
          sq += n * n;
          log_sums_[pre_of(o->optim.name) + "grad_norm/" + m].add(n, 1);
        }
        gn = std::sqrt(sq);
        if (oc.grad_clip_by == "global") clip_grad_norm(params, oc.grad_clip);
      } else {
        gn = clip_grad_norm(params, oc.grad_clip);
      }
      if (o->optim.name == "main")
        last_grad_norm_ = gn;
      else
        log_sums_[o->optim.name + "/grad_norm"].add(gn, 1);
      o->optim.set_lr(o->optim.base_lr * factor);
      o->optim.optimizer->step();
    } else {
      all_finite = false;
      // Name the first parameter in model order whose gradient is non-finite, and count the others.
      for (const auto& [n, p] : trainable_) {
        if (p.grad().defined() && !p.grad().isfinite().all().item<bool>()) {
          if (bad_param.empty()) bad_param = n;
          ++bad_count;
        }
      }
    }
    o->scaler.update(!finite);
  }
  for (auto& [n, p] : trainable_) p.mutable_grad().reset();
  if (!all_finite) {
    ++nonfinite_total_;
    ++nonfinite_consecutive_;
    spdlog::warn("step {}: non-finite gradients in {} tensors (first: '{}'); step skipped ({} in a row, limit {})",
                 step_, bad_count, bad_param.empty() ? "?" : bad_param, nonfinite_consecutive_, tc.max_nonfinite_steps);
    if (nonfinite_consecutive_ >= tc.max_nonfinite_steps) {
      throw_error(
          "training stopped: gradients of module '{}' (parameter '{}', first of {} non-finite tensors) were "
          "non-finite for {} consecutive steps (step {}); last good checkpoint: {}",
          module_of(bad_param), bad_param, bad_count, nonfinite_consecutive_, step_,
          last_checkpoint_.empty() ? "none" : last_checkpoint_);
    }
    return false;
  }
  nonfinite_consecutive_ = 0;
  if (ema_) ema_->update(trainable_);
  task_.after_step(ctx);
  return true;
}

TrainResult Trainer::run(const std::string& resume) {
  const auto& tc = config_.train;
  if (dist_.is_main()) {
    fs::create_directories(run_dir_);
    config_.write((fs::path(run_dir_) / "config.yaml").string());
  }
  if (resume.empty() && !store_->list().empty()) {
    // Mixing a fresh run with an old one's checkpoints would make retention and --resume auto pick stale state.
    throw_input_error(
        "{} already holds checkpoints: pass --resume auto (or a checkpoint) to continue, or use a new "
        "train.run_dir",
        store_->root());
  }
  if (resume == "auto") {
    const auto latest = store_->latest_valid(trainer_checkpoint_files());
    if (latest) {
      load_checkpoint(*latest);
    } else {
      spdlog::info("--resume auto: no valid checkpoint in {}; starting fresh", store_->root());
    }
  } else if (!resume.empty()) {
    if (!fs::is_directory(resume)) throw_input_error("--resume: '{}' is not a checkpoint directory", resume);
    load_checkpoint(resume);
  }
  if (step_ == 0 && last_checkpoint_.empty() && !tc.init_from.empty()) init_from(tc.init_from);
  metrics_->truncate_after(step_);
  model_->train();

  TrainResult result;
  using clock = std::chrono::steady_clock;
  auto t_log = clock::now();
  int64_t samples_at_log = samples_, step_at_log = step_;
  while (step_ < tc.steps) {
    profiler_->before_step(step_);
    {
      RECORD_USER_SCOPE("janus::train_step");  // in a profile, its self time is the step's time outside operators
      if (!run_step()) ++result.nonfinite_steps;
    }
    profiler_->after_step(step_);
    ++step_;
    const bool last = step_ == tc.steps;
    if (step_ % config_.log.every_steps == 0 || last) {
      const auto now = clock::now();
      const double dt = std::max(1e-9, std::chrono::duration<double>(now - t_log).count());
      const double sps = static_cast<double>(samples_ - samples_at_log) / dt;
      const double steps_per_s = static_cast<double>(step_ - step_at_log) / dt;
      std::map<std::string, double> values;
      // Each key averages over the steps it was logged on (train.task_every leaves a loss out of some steps).
      for (const auto& [k, v] : log_sums_) values[k] = v.sum / v.steps;
      if (hooks_.reduce_log) hooks_.reduce_log(values);
      values["lr"] = opts_[0]->optim.lr();
      values["grad_norm"] = last_grad_norm_;
      values["nonfinite_steps"] = static_cast<double>(nonfinite_total_);
      if (opts_[0]->scaler.enabled()) values["loss_scale"] = opts_[0]->scaler.scale_value();
      metrics_->log(step_, values, sps, static_cast<double>(tc.steps - step_) / std::max(1e-9, steps_per_s));
      log_sums_.clear();
      t_log = now;
      samples_at_log = samples_;
      step_at_log = step_;
    }
    if (config_.eval.every_steps > 0 && (step_ % config_.eval.every_steps == 0 || last) && dist_.is_main()) {
      // Validation on rank 0 only; the other ranks wait in the next collective (parallel.timeout_s bounds it).
      StepContext vctx;
      vctx.step = step_;
      vctx.total_steps = tc.steps;
      vctx.training = false;
      const auto t0 = clock::now();
      const nlohmann::json v = task_.validate(vctx);
      model_->train();
      std::map<std::string, double> vals;
      for (const auto& [k, x] : v.items()) {
        if (x.is_number()) vals[k] = x.get<double>();
      }
      if (!vals.empty()) {
        vals["seconds"] = std::chrono::duration<double>(clock::now() - t0).count();
        metrics_->log_eval(step_, vals);
      }
      t_log += clock::now() - t0;  // keep samples/s about training
    }
    if (last) break;
    // Ranks may see a signal at different steps: agree, so every rank checkpoints and stops after the same step.
    bool stop = stop_requested();
    if (hooks_.any_rank && dist_.world_size > 1) stop = hooks_.any_rank(stop);
    if (stop) {
      spdlog::warn("stop requested: checkpointing at step {} and exiting", step_);
      result.last_checkpoint = save_checkpoint();
      result.stopped = true;
      result.step = step_;
      result.nonfinite_steps = nonfinite_total_;
      metrics_->flush();
      return result;
    }
    if (config_.checkpoint.every_steps > 0 && step_ % config_.checkpoint.every_steps == 0) save_checkpoint();
  }
  profiler_->finish();
  result.last_checkpoint = save_checkpoint();
  if (dist_.is_main()) {
    const auto final_dir = fs::path(run_dir_) / "final";
    result.final_weights = (final_dir / "model.safetensors").string();
    save_module(*model_, result.final_weights);
    if (ema_) {
      // A complete weight file, loadable like model.safetensors: the shadow for what was trained, the model's own
      // tensors for the rest (frozen parameters and buffers such as BatchNorm statistics).
      auto full = module_state(*model_);
      for (const auto& [n, s] : ema_->shadow()) full.at(n) = s.to(full.at(n).scalar_type());
      save_safetensors((final_dir / "ema.safetensors").string(), full);
    }
    spdlog::info("training done: {} steps, {} skipped; weights in {}", step_, nonfinite_total_, result.final_weights);
  }
  metrics_->flush();
  result.step = step_;
  result.nonfinite_steps = nonfinite_total_;
  return result;
}

}  // namespace janus::train
