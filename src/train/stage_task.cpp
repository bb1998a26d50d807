// The three training stages on JanusModel (include/janus/train/stage_task.h, docs/training.md).
#include "janus/train/stage_task.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/data/factory.h"
#include "janus/data/text_negatives.h"
#include "janus/decoder/image_output.h"
#include "janus/decoder/quality_controller.h"
#include "janus/eval/model_eval.h"
#include "janus/fusion/attention.h"
#include "janus/io/module_io.h"
#include "janus/model/model_io.h"
#include "janus/model/run.h"
#include "janus/train/distributed.h"
#include "janus/train/gradnorm.h"
#include "janus/train/losses.h"

namespace janus::train {
namespace fs = std::filesystem;


namespace {

// Replaces the GradNorm weights (initial train.loss_weights; the mean over ranks) through its state map.
void set_gradnorm_weights(GradNorm& g, const at::Tensor& w) {
  TensorMap m;
  g.save(m, "");
  auto v = w.to(at::kFloat).cpu().clamp_min(1e-6);
  m["weights"] = v * (static_cast<double>(v.numel()) / v.sum().item<double>());
  g.load(m, "");
}

TextInput text_of(const Batch& b, const std::string& p) { return {b.at(p + ".ids"), b.at(p + ".mask")}; }

// -1e4 where two different rows show the same image or the same text (false negatives for contrastive mining).
at::Tensor same_pair_penalty(const at::Tensor& image_ids, const at::Tensor& text_hash) {
  auto same = image_ids.unsqueeze(1).eq(image_ids.unsqueeze(0)) | text_hash.unsqueeze(1).eq(text_hash.unsqueeze(0));
  same.fill_diagonal_(false);
  return same.to(at::kFloat) * -1e4;
}

// In-batch retrieval R@1: the retrieved row is a hit when it shows the same image or has the same text as the
// query's row (an image's other captions in the batch are as right as the one it was paired with).
std::pair<double, double> in_batch_r1(const at::Tensor& sim, const at::Tensor& image_ids, const at::Tensor& text_hash) {
  const auto i2t = sim.argmax(1).cpu(), t2i = sim.argmax(0).cpu();
  const auto th = text_hash.cpu(), ii = image_ids.cpu();
  const auto hit = [&](int64_t q, int64_t r) {
    return ii[r].item<int64_t>() == ii[q].item<int64_t>() || th[r].item<int64_t>() == th[q].item<int64_t>();
  };
  const int64_t B = sim.size(0);
  double a = 0, b = 0;
  for (int64_t i = 0; i < B; ++i) {
    a += hit(i, i2t[i].item<int64_t>()) ? 1 : 0;
    b += hit(i, t2i[i].item<int64_t>()) ? 1 : 0;
  }
  return {a / static_cast<double>(B), b / static_cast<double>(B)};
}

// Normalised images back to [-1, 1] for image_output.h.
at::Tensor to_unit_range(const at::Tensor& x, const std::vector<double>& mean, const std::vector<double>& std) {
  auto m = at::tensor(mean, at::kFloat).view({1, 3, 1, 1}).to(x.device());
  auto s = at::tensor(std, at::kFloat).view({1, 3, 1, 1}).to(x.device());
  return (x.to(at::kFloat) * s + m) * 2 - 1;
}

// Adds every number of an evaluation result's "metrics" object to `out` as "<prefix>/<key>" (nested objects such
// as VQA's perAnswerType become "<prefix>/perAnswerType/yes/no").
void flatten_metrics(const nlohmann::json& j, const std::string& prefix, nlohmann::json& out) {
  if (j.is_number()) {
    out[prefix] = j.get<double>();
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) flatten_metrics(v, prefix + "/" + k, out);
  }
}

// The validation data janus::eval::evaluate reads for `task` ("" = none in this config): the Shapes val directory,
// or the COCO-style val file of that task.
std::string eval_task_data(const std::string& task, const StageDataFiles& f) {
  if (f.shapes) return f.captions_val.empty() ? std::string() : fs::path(f.captions_val).parent_path().string();
  if (task == "retrieval" || task == "caption" || task == "recon") return f.captions_val;
  if (task == "vqa") return f.vqa_val;
  if (task == "nlvr2") return f.nlvr2_val;
  if (task == "generate") return f.prompts_val;
  return "";  // classify: the stage configs name no image-classification folder
}

}  // namespace

struct StageTask::Impl {
  PatchDiscriminator disc{nullptr};
  std::vector<at::Tensor> fake_cache;  // stage 1: detached reconstructions of each micro-batch for the D step
  std::unique_ptr<GradNorm> gradnorm;
  std::vector<double> fixed_weights;
  std::vector<StageDataSource::Stream> val_streams;
  std::vector<std::string> val_prompts;  // sample-sheet prompts (stage 3)
  std::vector<std::pair<std::string, std::string>> eval_tasks;  // eval.tasks: (task, validation data)
  std::optional<TextNegatives> text_negatives;                  // train.text_negatives
};

StageTask::StageTask(const Config& config, StageTaskOptions options)
    : cfg_(config), opt_(std::move(options)), impl_(std::make_unique<Impl>()) {
  files_ = resolve_stage_data(cfg_);
  tasks_ = stage_tasks(cfg_, files_);
  tokenizer_ = std::make_shared<const Tokenizer>(Tokenizer::load(files_.tokenizer));
  const int64_t vocab = tokenizer_->vocab_size();
  if (cfg_.model.vocab_size != 0 && cfg_.model.vocab_size != vocab) {
    throw_input_error("model.vocab_size {} differs from the tokenizer's {} pieces ({}); leave it 0", cfg_.model.vocab_size,
                      vocab, files_.tokenizer);
  }

  if (cfg_.train.text_negatives) {
    if (!has("contrastive")) {
      throw_input_error("train.text_negatives: needs the contrastive task in train.tasks (this stage trains {})",
                        fmt::join(tasks_, ", "));
    }
    if (!cfg_.train.text_negative_groups.empty()) {
      impl_->text_negatives = TextNegatives::from_strings(cfg_.train.text_negative_groups);
    } else if (files_.shapes) {
      impl_->text_negatives = TextNegatives::shapes();
    } else {
      throw_input_error(
          "train.text_negatives: set train.text_negative_groups (the built-in groups are the Shapes "
          "vocabulary, and data.format is '{}')",
          cfg_.data.format);
    }
  }

  // Datasets.
  auto dopts = [&](bool train) {
    DatasetOptions o;
    o.transform.resize_short = cfg_.model.image_size;
    o.transform.crop = cfg_.model.image_size;
    o.transform.random_crop = train;
    o.transform.mean = cfg_.data.mean;
    o.transform.std = cfg_.data.std;
    o.image_root = train ? files_.image_root_train : files_.image_root_val;
    return o;
  };
  const std::string vqa_pattern = files_.shapes ? "{subtype}/{id12}.png" : "COCO_{subtype}_{id12}.jpg";
  auto annotations_of = [](const std::string& q) {
    const std::string name = fs::path(q).filename().string();
    const auto pos = name.find("questions");
    return (fs::path(q).parent_path() / (name.substr(0, pos) + "annotations" + name.substr(pos + 9))).string();
  };
  const bool want_vqa = has("vqa") || cfg_.model.num_answers > 0;
  if (want_vqa) {
    if (files_.vqa_train.empty()) {
      throw_input_error("model.num_answers {} needs VQA training annotations for the answer vocabulary (data.vqa_train)",
                        cfg_.model.num_answers);
    }
    EntryReport rep;  // malformed entries: skipped and counted up to data.max_bad_fraction (docs/reliability.md)
    const auto recs = load_vqa(files_.vqa_train, annotations_of(files_.vqa_train), vqa_pattern, &rep);
    rep.check(cfg_.data.max_bad_fraction, files_.vqa_train);
    vocab_ = std::make_shared<const AnswerVocab>(build_answer_vocab(recs, cfg_.model.num_answers));
    answer_list_ = vocab_->answers;
    if (answer_list_.empty()) throw_input_error("{}: no answers to build a VQA vocabulary from", files_.vqa_train);
  }
  auto make_streams = [&](bool train) {
    std::vector<StageDataSource::Stream> s;
    LoaderOptions lo = loader_options(cfg_, opt_.rank, opt_.world_size, train);
    lo.tokenizer = tokenizer_;
    if (!train) {
      lo.num_workers = 0;
      lo.batch_size = cfg_.eval.batch_size;
      lo.rank = 0;
      lo.world_size = 1;
    }
    const auto& cap = train ? files_.captions_train : files_.captions_val;
    const auto& prompts = train ? files_.prompts_train : files_.prompts_val;
    const auto& vqa = train ? files_.vqa_train : files_.vqa_val;
    const auto& nlvr = train ? files_.nlvr2_train : files_.nlvr2_val;
    const int64_t stage = cfg_.train.stage;
    const bool t2i_prompts = has("t2i") && !prompts.empty();
    const bool need_cap = stage != 3 || has("caption") || has("contrastive") || (has("t2i") && !t2i_prompts);
    if (need_cap && !cap.empty()) {
      EntryReport rep;
      auto recs = load_coco_captions(cap, &rep);
      rep.check(cfg_.data.max_bad_fraction, cap);
      s.push_back({"cap", make_caption_dataset(std::move(recs), dopts(train), "captions"), lo});
    }
    if (t2i_prompts) {
      std::vector<CaptionRecord> recs;
      const auto j = read_json_file(prompts, "text-to-image prompts list");
      for (const auto& item : j) {
        CaptionRecord r;
        r.image_id = item.at("id").template get<int64_t>();
        r.file = item.at("reference").template get<std::string>();
        r.caption = item.at("prompt").template get<std::string>();
        recs.push_back(std::move(r));
      }
      if (!train) {
        for (size_t i = 0; i < recs.size() && impl_->val_prompts.size() < 8; ++i) impl_->val_prompts.push_back(recs[i].caption);
      }
      s.push_back({"gen", make_caption_dataset(std::move(recs), dopts(train), "prompts"), lo});
    }
    if (has("vqa") && !vqa.empty()) {
      EntryReport rep;
      auto recs = load_vqa(vqa, annotations_of(vqa), vqa_pattern, &rep);
      rep.check(cfg_.data.max_bad_fraction, vqa);
      s.push_back({"vqa", make_vqa_dataset(std::move(recs), *vocab_, dopts(train)), lo});
    }
    if (has("nlvr2") && !nlvr.empty()) {
      EntryReport rep;
      auto recs = load_nlvr2(nlvr, &rep);
      rep.check(cfg_.data.max_bad_fraction, nlvr);
      s.push_back({"nlvr2", make_nlvr2_dataset(std::move(recs), dopts(train)), lo});
    }
    return s;
  };
  auto train_streams = make_streams(true);
  if (!files_.captions_val.empty()) impl_->val_streams = make_streams(false);
  // Model-driven validation metrics (eval.tasks, run by validate()): resolved now, so a task the validation data
  // cannot serve stops the run at start-up rather than at the first validation.
  for (const auto& t : cfg_.eval.tasks) {
    const std::string data = eval_task_data(t, files_);
    if (data.empty()) {
      throw_input_error(
          "eval.tasks: '{}' has no validation data in this config (Shapes: data.val or data.train; "
          "coco: data.val for retrieval/caption/recon, data.vqa_val, data.nlvr2_val; classify and "
          "coco generate are not available during training)",
          t);
    }
    eval::resolve_task_data(t, data, "val");  // InputError naming the missing file
    impl_->eval_tasks.emplace_back(t, data);
  }
  if (impl_->val_prompts.empty() && !files_.captions_val.empty() && cfg_.train.stage == 3) {
    const auto recs = load_coco_captions(files_.captions_val);
    for (size_t i = 0; i < recs.size() && impl_->val_prompts.size() < 8; i += 1) impl_->val_prompts.push_back(recs[i].caption);
  }

  // Model.
  auto mo = model_options(cfg_.model, vocab);
  mo.num_answers = static_cast<int64_t>(answer_list_.size());
  if (mo.vq.ema() && has("vq") && opt_.world_size > 1) {
    // The EMA statistics and dead-code resets are computed from each rank's own batch and are not all-reduced
    // yet, so the ranks' codebooks would drift apart.
    throw_input_error("model.vq_codebook ema is not supported with {} ranks yet (the EMA codebook statistics are "
                      "per rank); use vq_codebook: gradient for distributed stage-1 runs",
                      opt_.world_size);
  }
  torch::manual_seed(static_cast<uint64_t>(cfg_.train.seed));
  model_ = JanusModel(mo);
  if (!cfg_.model.weights.empty()) load_module(*model_, cfg_.model.weights, LoadOptions{false, {}, {}});
  model_->set_activation_checkpointing(cfg_.train.activation_checkpointing);
  if (cfg_.train.stage == 1 && has("vq") && cfg_.train.disc_start >= 0) {
    impl_->disc = PatchDiscriminator(
        PatchDiscriminatorOptions().ndf(cfg_.train.disc_ndf).n_layers(cfg_.train.disc_layers));
    model_->register_module("vq_disc", impl_->disc);
  }
  const int64_t T = static_cast<int64_t>(tasks_.size());
  impl_->fixed_weights = cfg_.train.loss_weights.empty() ? std::vector<double>(static_cast<size_t>(T), 1.0)
                                                         : cfg_.train.loss_weights;
  if (cfg_.train.stage == 3 && cfg_.train.loss_balance == "gradnorm" && T > 1) {
    impl_->gradnorm = std::make_unique<GradNorm>(tasks_, cfg_.train.gradnorm_alpha, cfg_.train.gradnorm_lr);
    if (!cfg_.train.loss_weights.empty()) set_gradnorm_weights(*impl_->gradnorm, at::tensor(impl_->fixed_weights, at::kDouble));
  }
  data_ = std::make_unique<StageDataSource>(std::move(train_streams), vocab_);
  if (opt_.write_artifacts && opt_.rank == 0) {
    write_run_artifacts(cfg_.train.run_dir, model_->options, files_.tokenizer, answer_list_);
  }
  spdlog::info("stage {}: losses [{}], tokenizer {} ({} pieces){}", cfg_.train.stage, fmt::join(tasks_, ", "),
               files_.tokenizer, vocab, vocab_ ? fmt::format(", {} VQA answers", answer_list_.size()) : "");
}

StageTask::~StageTask() = default;

bool StageTask::has(const std::string& task) const {
  return std::find(tasks_.begin(), tasks_.end(), task) != tasks_.end();
}

at::Generator StageTask::step_generator(const StepContext& ctx, uint64_t salt) const {
  const uint64_t seed = static_cast<uint64_t>(cfg_.train.seed) * 0x9E3779B97F4A7C15ULL +
                        static_cast<uint64_t>(ctx.step) * 1000003ULL + static_cast<uint64_t>(ctx.micro) * 7919ULL +
                        static_cast<uint64_t>(opt_.rank) * 104729ULL + salt + (ctx.training ? 0ULL : 0x5555ULL);
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

std::vector<ExtraOptimizerSpec> StageTask::extra_optimizers() const {
  if (!impl_->disc) return {};
  ExtraOptimizerSpec s;
  s.name = "disc";
  s.param_prefixes = {"vq_disc"};
  s.lr = cfg_.optim.disc_lr;
  s.weight_decay = 0.0;
  return {s};
}

StepOutput StageTask::compute_loss(const Batch& batch, const StepContext& ctx) {
  switch (cfg_.train.stage) {
    case 1:
      return stage1(batch, ctx);
    case 2:
      return stage2(batch, ctx);
    default:
      return stage3(batch, ctx);
  }
}

static double weight_of(const std::vector<std::string>& tasks, const std::vector<double>& w, const std::string& t) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i] == t) return w[i];
  }
  return 0.0;
}

StepOutput StageTask::stage1(const Batch& batch, const StepContext& ctx) {
  StepOutput out;
  const auto& images = batch.at("cap.images");
  const bool adv_on = impl_->disc && ctx.step >= cfg_.train.disc_start;
  if (ctx.optimizer == "disc") {
    if (!adv_on) return out;  // nothing to train before disc_start
    at::Tensor fake = ctx.micro < static_cast<int64_t>(impl_->fake_cache.size())
                          ? impl_->fake_cache[static_cast<size_t>(ctx.micro)]
                          : at::Tensor();
    if (!fake.defined()) {
      torch::NoGradGuard ng;
      fake = model_->tokenizer(images).reconstruction;
    }
    const auto real_logits = impl_->disc->forward(images);
    const auto fake_logits = impl_->disc->forward(fake.detach());
    out.parts["d_loss"] = QualityControllerImpl::hinge_d_loss(real_logits, fake_logits);
    out.parts["logits_real"] = real_logits.detach().mean();
    out.parts["logits_fake"] = fake_logits.detach().mean();
    out.total = out.parts["d_loss"];
    return out;
  }
  const auto& w = impl_->fixed_weights;
  at::Tensor total;
  auto add = [&](const at::Tensor& t) { total = total.defined() ? total + t : t; };
  if (has("simmim")) {
    auto gen = step_generator(ctx, 1);
    auto r = model_->simmim(images, gen);
    out.parts["simmim"] = r.loss;
    add(r.loss * weight_of(tasks_, w, "simmim"));
  }
  if (has("mlm")) {
    auto gen = step_generator(ctx, 2);
    auto r = model_->mlm(text_of(batch, "cap"), SpecialTokens::mask, SpecialTokens::image_end + 1, gen);
    out.parts["mlm"] = r.loss;
    add(r.loss * weight_of(tasks_, w, "mlm"));
  }
  if (has("vq")) {
    auto r = model_->tokenizer(images);
    const auto& kind = cfg_.train.vq_rec_loss;
    const at::Tensor rec = kind == "l1" ? r.rec_loss : kind == "l2" ? r.mse_loss : r.rec_loss + r.mse_loss;
    out.parts["rec"] = rec;
    if (kind != "l1") out.parts["rec_l1"] = r.rec_loss.detach();
    out.parts["vq"] = r.quant_loss;
    out.parts["perplexity"] = r.perplexity.detach();
    at::Tensor vq_total = rec + r.quant_loss;
    if (impl_->disc) {
      if (impl_->fake_cache.size() <= static_cast<size_t>(ctx.micro)) impl_->fake_cache.resize(ctx.micro + 1);
      impl_->fake_cache[static_cast<size_t>(ctx.micro)] = r.reconstruction.detach();
      if (adv_on && ctx.training) {
        const auto g_loss = -impl_->disc->forward(r.reconstruction).mean();
        const auto d_weight = QualityControllerImpl::adaptive_weight(rec, g_loss, model_->vq->decoder->last_layer(),
                                                                     cfg_.train.disc_weight);
        out.parts["g_adv"] = g_loss;
        out.parts["d_weight"] = d_weight.detach();
        vq_total = vq_total + d_weight * g_loss;
      }
    }
    add(vq_total * weight_of(tasks_, w, "vq"));
  }
  out.total = total;
  return out;
}

// InfoNCE of the batch; under data parallelism over every rank's features (open_clip's gathered loss).
at::Tensor StageTask::clip_loss(const ContrastiveOutput& co, const StepContext& ctx,
                                const at::Tensor& negatives) const {
  const bool gathered = opt_.pg && opt_.world_size > 1 && ctx.training;
  if (gathered || negatives.defined()) {
    return dist::gathered_clip_loss(co.image_embeds, co.text_embeds, co.logit_scale, gathered ? opt_.pg : nullptr,
                                    negatives);
  }
  return co.loss;
}

ContrastiveOutput StageTask::contrastive_step(const Batch& batch, const StepContext& ctx,
                                              std::map<std::string, at::Tensor>& parts) {
  const auto text = text_of(batch, "cap");
  auto co = model_->contrastive(batch.at("cap.images"), text);
  if (!impl_->text_negatives || !ctx.training) {
    co.loss = clip_loss(co, ctx);
    return co;
  }
  // Decode each caption, edit it, re-encode it as the loader does (bos/eos, model.max_text_len).
  const auto ids = text.ids.cpu(), mask = text.mask.cpu().to(at::kBool);
  auto gen = step_generator(ctx, 5);
  uint64_t seed = 0;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  std::vector<std::vector<int64_t>> neg;
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < ids.size(0); ++i) {
    const auto row = ids[i].masked_select(mask[i]);
    const std::vector<int64_t> v(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
    const auto edited =
        impl_->text_negatives->make(tokenizer_->decode(v), seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL);
    if (!edited) continue;
    neg.push_back(tokenizer_->encode(*edited, true, true, cfg_.model.max_text_len));
    rows.push_back(i);
  }
  if (neg.empty()) {
    co.loss = clip_loss(co, ctx);
    return co;
  }
  const auto tb = pad_tokens(neg);
  const auto dev = text.ids.device();
  const auto neg_embeds = model_->embed_texts({tb.ids.to(dev), tb.attention_mask.to(at::kBool).to(dev)});
  co.loss = clip_loss(co, ctx, neg_embeds);
  {
    torch::NoGradGuard ng;
    const auto r = at::tensor(rows, at::kLong).to(dev);
    const auto img = co.image_embeds.index_select(0, r);
    const auto pos = (img * co.text_embeds.index_select(0, r)).sum(1), negs = (img * neg_embeds).sum(1);
    parts["text_neg_acc"] = (pos.gt(negs).to(at::kFloat).mean() * 100).detach();
  }
  return co;
}

StepOutput StageTask::stage2(const Batch& batch, const StepContext& ctx) {
  StepOutput out;
  const auto& images = batch.at("cap.images");
  const auto text = text_of(batch, "cap");
  const double lambda = cfg_.train.contrastive_weight;
  at::Tensor aux;
  auto add_aux = [&](const at::Tensor& t) { aux = aux.defined() ? aux + t : t; };
  at::Tensor total;
  ContrastiveOutput co;
  if (has("contrastive") || has("itm")) co = contrastive_step(batch, ctx, out.parts);
  if (has("contrastive")) {
    const auto loss = co.loss;
    out.parts["contrastive"] = loss;
    out.parts["logit_scale"] = co.logit_scale.detach();
    total = lambda * loss;
  }
  if (has("itm")) {
    const int64_t B = images.size(0);
    if (B >= 2) {
      const auto penalty = same_pair_penalty(batch.at("cap.image_ids"), batch.at("cap.text_hash")).to(images.device());
      const auto sim = (co.logit_scale * at::matmul(co.image_embeds, co.text_embeds.t())).detach().to(at::kFloat) + penalty;
      auto gen = step_generator(ctx, 3);
      const auto neg_text = itm_hard_negatives(sim, gen);       // for each image, a hard negative caption
      const auto neg_image = itm_hard_negatives(sim.t(), gen);  // for each caption, a hard negative image
      const auto all_images = at::cat({images, images, images.index_select(0, neg_image)}, 0);
      const TextInput all_text{at::cat({text.ids, text.ids.index_select(0, neg_text), text.ids}, 0),
                               at::cat({text.mask, text.mask.index_select(0, neg_text), text.mask}, 0)};
      auto labels = at::cat({at::ones({B}, at::kLong), at::zeros({2 * B}, at::kLong)}).to(images.device());
      auto r = model_->itm(all_images, all_text, labels);
      out.parts["itm"] = r.loss;
      out.parts["itm_acc"] = (r.logits.argmax(1) == labels).to(at::kFloat).mean().detach();
      add_aux(r.loss);
    }
  }
  if (has("caption")) {
    auto r = model_->caption(images, text);
    out.parts["caption"] = r.loss;
    add_aux(r.loss);
  }
  if (has("nlvr2")) {
    auto r = model_->nlvr2(batch.at("nlvr2.images"), batch.at("nlvr2.images2"), text_of(batch, "nlvr2"),
                           batch.at("nlvr2.labels"));
    out.parts["nlvr2"] = r.loss;
    add_aux(r.loss);
  }
  if (aux.defined()) {
    const double w = has("contrastive") ? 1.0 - lambda : 1.0;
    total = total.defined() ? total + w * aux : w * aux;
  }
  out.total = total;
  return out;
}

StepOutput StageTask::stage3(const Batch& batch, const StepContext& ctx) {
  StepOutput out;
  std::vector<at::Tensor> losses;
  std::vector<double> weights;
  const auto& every = cfg_.train.task_every;
  for (size_t ti = 0; ti < tasks_.size(); ++ti) {
    const auto& t = tasks_[ti];
    // train.task_every: this loss sits out the steps that are not a multiple of its period (training only).
    if (ctx.training && !every.empty() && ctx.step % every[ti] != 0) continue;
    at::Tensor loss;
    if (t == "t2i") {
      const std::string s = batch.tensors.count("gen.images") ? "gen" : "cap";
      at::Tensor codes;
      {
        torch::NoGradGuard ng;  // the tokenizer is fixed in stage 3: codes are targets
        codes = model_->vq->encode(batch.at(s + ".images")).flatten(1);
      }
      at::Tensor ids = batch.at(s + ".ids");
      const double p_uncond = cfg_.train.t2i_uncond_prob;
      if (ctx.training && p_uncond > 0.0) {
        // Classifier-free guidance: some prompts become the unconditional prompt that sampling guides against
        // (ImageTokenGenerator::uncond_prompt, the rows guided sampling runs against).
        auto gen = step_generator(ctx, 4);
        const auto drop = at::rand({ids.size(0), 1}, gen, at::TensorOptions().dtype(at::kFloat)).lt(p_uncond);
        ids = at::where(drop.to(ids.device()), model_->image_gen->uncond_prompt(ids), ids);
      }
      loss = model_->image_code_logits(ids, codes).loss;
    } else if (t == "caption") {
      loss = model_->caption(batch.at("cap.images"), text_of(batch, "cap")).loss;
    } else if (t == "contrastive") {
      // Keeps stage 2's alignment while the understanding losses move the shared encoders.
      const auto co = contrastive_step(batch, ctx, out.parts);
      loss = co.loss;
      out.parts["logit_scale"] = co.logit_scale.detach();
    } else if (t == "vqa") {
      auto r = model_->vqa(batch.at("vqa.images"), text_of(batch, "vqa"), batch.at("vqa.targets"));
      loss = r.loss;
      const auto pick = r.logits.argmax(1, true);
      out.parts["vqa_acc"] = (batch.at("vqa.targets").gather(1, pick).mean() * 100).detach();
    } else if (t == "nlvr2") {
      auto r = model_->nlvr2(batch.at("nlvr2.images"), batch.at("nlvr2.images2"), text_of(batch, "nlvr2"),
                             batch.at("nlvr2.labels"));
      loss = r.loss;
      out.parts["nlvr2_acc"] = ((r.logits.argmax(1) == batch.at("nlvr2.labels")).to(at::kFloat).mean() * 100).detach();
    }
    out.parts[t] = loss;
    losses.push_back(loss);
    weights.push_back(impl_->fixed_weights[ti]);
  }
  if (impl_->gradnorm && ctx.training) {
    // Shared layers: the last norm of each stack the losses pass through (bidirectional fusion: VQA, NLVR2;
    // causal stacks: captioning, text->image) plus the router, which every understanding loss crosses.
    std::vector<at::Tensor> shared;
    for (const auto& p : model_->fusion->norm->parameters()) shared.push_back(p);
    for (const auto& np : model_->named_parameters()) {  // image_gen's and, with its own stack, caption_lm's
      const auto& k = np.key();
      if ((k.rfind("image_gen.backbone.", 0) == 0 || k.rfind("caption_lm.backbone.", 0) == 0) &&
          k.find("norm") != std::string::npos && k.find("blocks") == std::string::npos) {
        shared.push_back(np.value());
      }
    }
    if (has("contrastive")) {  // the contrastive loss reaches neither stack: its last layers are the projections
      shared.push_back(model_->vision_proj->weight);
      shared.push_back(model_->text_proj->weight);
    }
    std::vector<at::Tensor> req;
    for (const auto& p : shared) {
      if (p.requires_grad()) req.push_back(p);
    }
    out.total = req.empty() ? at::Tensor() : impl_->gradnorm->combine(losses, req);
    if (!out.total.defined()) {
      for (size_t i = 0; i < losses.size(); ++i) out.total = out.total.defined() ? out.total + losses[i] : losses[i];
    }
    const auto w = impl_->gradnorm->weights();
    for (size_t i = 0; i < tasks_.size(); ++i) out.parts["w_" + tasks_[i]] = w[static_cast<int64_t>(i)].to(at::kFloat);
  } else {
    for (size_t i = 0; i < losses.size(); ++i) {
      const auto term = losses[i] * weights[i];
      out.total = out.total.defined() ? out.total + term : term;
    }
  }
  return out;
}

void StageTask::after_step(const StepContext&) {
  impl_->fake_cache.clear();
  if (impl_->gradnorm) {
    impl_->gradnorm->step();
    if (opt_.pg && opt_.world_size > 1) {
      // Every rank saw different batches: agree on the mean weights so the ranks optimise the same objective.
      auto w = impl_->gradnorm->weights().to(at::kFloat);
      if (opt_.pg->device().is_cuda()) w = w.to(opt_.pg->device());
      set_gradnorm_weights(*impl_->gradnorm, opt_.pg->average(w).to(at::kCPU));
    }
  }
}

std::vector<double> StageTask::loss_weights() const {
  if (!impl_->gradnorm) return impl_->fixed_weights;
  const auto w = impl_->gradnorm->weights();
  std::vector<double> v;
  for (int64_t i = 0; i < w.numel(); ++i) v.push_back(w[i].item<double>());
  return v;
}

// The LSH streams draw fresh hash rotations from their own generators every forward (module members, not
// buffers): their states are task state, or a resumed run would hash differently from an uninterrupted one.
static std::vector<std::pair<std::string, at::Generator>> lsh_generators(JanusModelImpl& model) {
  std::vector<std::pair<std::string, at::Generator>> out;
  for (const auto& item : model.named_modules()) {
    if (auto* lsh = dynamic_cast<LSHAttentionImpl*>(item.value().get())) {
      out.emplace_back(item.key(), lsh->generator());
    }
  }
  return out;
}

void StageTask::save_state(TensorMap& tensors, nlohmann::json& meta) const {
  meta["stage"] = cfg_.train.stage;
  meta["tasks"] = tasks_;
  for (auto& [name, gen] : lsh_generators(*model_.ptr())) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    tensors["lsh_rng." + name] = gen.get_state();
  }
  if (impl_->gradnorm) impl_->gradnorm->save(tensors, "gradnorm.");
}

void StageTask::load_state(const TensorMap& tensors, const nlohmann::json& meta) {
  if (meta.contains("tasks") && meta["tasks"] != nlohmann::json(tasks_)) {
    throw_input_error("checkpoint trained losses {} but this run trains {}", meta["tasks"].dump(),
                      nlohmann::json(tasks_).dump());
  }
  if (impl_->gradnorm) impl_->gradnorm->load(tensors, "gradnorm.");
  for (auto& [name, gen] : lsh_generators(*model_.ptr())) {
    const auto it = tensors.find("lsh_rng." + name);
    if (it == tensors.end()) throw_input_error("checkpoint has no LSH generator state for '{}'", name);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second);
  }
}

nlohmann::json StageTask::validate(const StepContext& ctx) {
  nlohmann::json res = nlohmann::json::object();
  if (impl_->val_streams.empty() && impl_->eval_tasks.empty()) return res;
  torch::NoGradGuard ng;
  model_->eval();
  const auto device = model_->logit_scale.device();
  const int64_t bs = cfg_.eval.batch_size;
  const int64_t max_batches = cfg_.eval.limit > 0 ? (cfg_.eval.limit + bs - 1) / bs : (1LL << 40);
  std::map<std::string, std::pair<double, int64_t>> sums;
  auto acc = [&](const std::string& k, double v) {
    sums[k].first += v;
    sums[k].second += 1;
  };
  // Contrastive forward on the batch's captions, logging the in-batch R@1 both ways.
  auto acc_contrastive = [&](const Batch& b) {
    auto co = model_->contrastive(b.at("cap.images"), text_of(b, "cap"));
    const auto [i2t, t2i] =
        in_batch_r1(at::matmul(co.image_embeds, co.text_embeds.t()), b.at("cap.image_ids"), b.at("cap.text_hash"));
    acc("i2t_r1_in_batch", i2t);
    acc("t2i_r1_in_batch", t2i);
    return co;
  };
  // Fresh loaders (no shuffling, from the start): every validation sees the same samples; the training cursor and
  // RNG are untouched.
  std::vector<std::unique_ptr<DataLoader>> loaders;
  std::vector<int64_t> batches;
  for (const auto& s : impl_->val_streams) {
    loaders.push_back(std::make_unique<DataLoader>(s.dataset, s.options));
    batches.push_back(std::min<int64_t>(max_batches, loaders.back()->batches_per_epoch()));
  }
  const int64_t n = batches.empty() ? 0 : *std::max_element(batches.begin(), batches.end());
  at::Tensor sheet_orig, sheet_rec;
  for (int64_t i = 0; i < n; ++i) {
    Batch b;
    bool any = false;
    for (size_t k = 0; k < loaders.size(); ++k) {
      if (i >= batches[k]) continue;
      StageDataSource::add_stream_tensors(loaders[k]->next(), impl_->val_streams[k].name,
                                          impl_->val_streams[k].name == "vqa" ? vocab_.get() : nullptr, b);
      any = true;
    }
    if (!any) break;
    for (auto& [k, v] : b.tensors) v = v.to(device);
    StepContext vc;
    vc.step = i;
    vc.training = false;
    const auto has_stream = [&](const std::string& s) { return b.tensors.count(s + ".images") > 0; };
    const int64_t stage = cfg_.train.stage;
    if (stage == 1 && has_stream("cap")) {
      const auto out = stage1(b, vc);
      for (const auto& [k, v] : out.parts) acc(k, v.to(at::kFloat).item<double>());
      if (has("vq")) {
        const auto& x = b.at("cap.images");
        const auto r = model_->tokenizer(x);
        const auto a = to_unit_range(x, cfg_.data.mean, cfg_.data.std), c = to_unit_range(r.reconstruction, cfg_.data.mean, cfg_.data.std);
        // PSNR over [0, 1] pixels, per image, averaged.
        const auto mse = ((a - c.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10);
        acc("psnr", (-10.0 * at::log10(mse)).mean().item<double>());
        if (!sheet_orig.defined()) {
          sheet_orig = a;
          sheet_rec = c;
        }
      }
    } else if (stage == 2 && has_stream("cap")) {
      // Losses only for the parts whose streams this batch has.
      Batch bb = b;
      const bool nl = has("nlvr2") && has_stream("nlvr2");
      if (has("nlvr2") && !nl) continue;
      const auto out = stage2(bb, vc);
      for (const auto& [k, v] : out.parts) acc(k, v.to(at::kFloat).item<double>());
      acc_contrastive(b);
    } else if (stage == 3) {
      if (has("t2i") && (has_stream("gen") || (!b.tensors.count("gen.ids") && has_stream("cap")))) {
        const std::string s = has_stream("gen") ? "gen" : "cap";
        const auto codes = model_->vq->encode(b.at(s + ".images")).flatten(1);
        acc("t2i", model_->image_code_logits(b.at(s + ".ids"), codes).loss.item<double>());
      }
      if (has("caption") && has_stream("cap")) {
        acc("caption", model_->caption(b.at("cap.images"), text_of(b, "cap")).loss.item<double>());
      }
      if (has("contrastive") && has_stream("cap")) {
        acc("contrastive", acc_contrastive(b).loss.item<double>());
      }
      if (has("vqa") && has_stream("vqa")) {
        const auto r = model_->vqa(b.at("vqa.images"), text_of(b, "vqa"), b.at("vqa.targets"));
        acc("vqa", r.loss.item<double>());
        acc("vqa_acc", (b.at("vqa.targets").gather(1, r.logits.argmax(1, true)).mean() * 100).item<double>());
      }
      if (has("nlvr2") && has_stream("nlvr2")) {
        const auto r = model_->nlvr2(b.at("nlvr2.images"), b.at("nlvr2.images2"), text_of(b, "nlvr2"), b.at("nlvr2.labels"));
        acc("nlvr2", r.loss.item<double>());
        acc("nlvr2_acc", ((r.logits.argmax(1) == b.at("nlvr2.labels")).to(at::kFloat).mean() * 100).item<double>());
      }
      if (!sheet_orig.defined() && has_stream("cap")) {
        const auto& x = b.at("cap.images");
        sheet_orig = to_unit_range(x, cfg_.data.mean, cfg_.data.std);
        sheet_rec = to_unit_range(model_->tokenizer(x).reconstruction, cfg_.data.mean, cfg_.data.std);
      }
    }
  }
  impl_->fake_cache.clear();
  for (const auto& [k, v] : sums) res[k] = v.first / static_cast<double>(std::max<int64_t>(1, v.second));
  // Model-driven metrics (eval.tasks): the same janus::eval::evaluate as janus_eval, on the val split, at most
  // eval.limit samples per task; keys "<task>/<metric>" (logged as val/retrieval/txt_r1, val/vqa/overall, ...).
  for (const auto& [task, data] : impl_->eval_tasks) {
    eval::EvalOptions eo;
    eo.split = "val";
    eo.limit = cfg_.eval.limit;
    eo.batch_size = cfg_.eval.batch_size;
    eo.max_text_len = cfg_.model.max_text_len;
    eo.mean = cfg_.data.mean;
    eo.std = cfg_.data.std;
    if (!files_.shapes) eo.image_root = files_.image_root_val;
    eo.progress = [](const eval::EvalProgress&) {};  // the trainer logs the result line
    const auto r = eval::evaluate(*model_, *tokenizer_, answer_list_, task, data, eo);
    if (r.contains("metrics")) flatten_metrics(r["metrics"], task, res);
  }

  // Sample sheet: originals, VQ reconstructions and (stage 3) images generated for fixed val prompts.
  const int64_t ns = cfg_.eval.samples;
  if (ns > 0 && sheet_orig.defined() && (cfg_.train.stage == 1 || cfg_.train.stage == 3)) {
    const int64_t k = std::min<int64_t>(ns, sheet_orig.size(0));
    std::vector<at::Tensor> rows{sheet_orig.slice(0, 0, k).cpu(), sheet_rec.slice(0, 0, k).clamp(-1, 1).cpu()};
    if (cfg_.train.stage == 3 && has("t2i") && !impl_->val_prompts.empty()) {
      std::vector<std::string> prompts(impl_->val_prompts.begin(),
                                       impl_->val_prompts.begin() + std::min<int64_t>(k, impl_->val_prompts.size()));
      const auto tb = tokenizer_->encode_batch(prompts, cfg_.model.max_text_len);
      const auto gen = model_->generate_images(tb.ids.to(device), SamplingOptions().temperature(1.0).top_k(20).seed(0));
      auto g = to_unit_range(gen, cfg_.data.mean, cfg_.data.std).clamp(-1, 1).cpu();
      if (g.size(0) < k) g = at::cat({g, at::ones({k - g.size(0), g.size(1), g.size(2), g.size(3)})}, 0);
      rows.push_back(g);
    }
    const auto path = (fs::path(cfg_.train.run_dir) / "samples" / fmt::format("step_{:09d}.png", ctx.step)).string();
    fs::create_directories(fs::path(path).parent_path());
    write_image_grid(path, at::cat(rows, 0), k);
  }
  return res;
}

}  // namespace janus::train
