#pragma once
// The three progressive training stages as one TrainTask on JanusModel (docs/training.md):
//   stage 1 (intra-modal):   SimMIM on the ViT, MLM on the text encoder, VQ tokenizer (L1 reconstruction +
//                            codebook/commitment, PatchGAN hinge adversarial term after train.disc_start with the
//                            VQGAN adaptive weight; the discriminator has its own optimiser "disc", lr optim.disc_lr)
//   stage 2 (cross-modal):   lambda x symmetric InfoNCE (learnable temperature; gathered across ranks under DDP)
//                            + (1 - lambda) x (ITM with in-batch hard negatives, captioning[, NLVR2])
//   stage 3 (generation):    text->image next-code loss on the (frozen, no-grad) VQ codes, captioning, VQA
//                            classification (BCE on soft scores), NLVR2 — balanced by GradNorm or fixed weights
// model() is the JanusModel itself, so checkpoint keys are model keys (load_run reads them); stage 1 adds the
// discriminator as the child "vq_disc" (training-only; load_run drops those keys).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "janus/core/config.h"
#include "janus/data/formats.h"
#include "janus/data/loader.h"
#include "janus/data/tokenizer.h"
#include "janus/model/janus_model.h"
#include "janus/train/task.h"

namespace janus::dist {
class ProcessGroup;
}

namespace janus::train {

// Where a stage finds its data, resolved from the config and validated (InputError naming the missing key/file).
// Shapes (data.format shapes): data.train is a `janus_data shapes` directory; captions_<split>.json,
// vqa/questions_<split>.json (+ annotations), nlvr2/<split>.jsonl, geneval/prompts_<split>.json are found inside;
// the val split comes from data.val (another Shapes directory) or, when unset, from the val split of data.train.
// COCO-style (data.format coco): data.train / data.val are COCO captions JSONs; data.vqa_train / data.vqa_val
// (VQA v2 questions JSON, annotations beside it with "questions" -> "annotations"), data.nlvr2_train /
// data.nlvr2_val (jsonl); images under data.image_root (default: each file's directory).
struct StageDataFiles {
  std::string tokenizer;  // .model file
  bool shapes = false;
  std::string image_root_train, image_root_val;
  std::string captions_train, captions_val;
  std::string vqa_train, vqa_val;      // questions JSONs ("" = none)
  std::string nlvr2_train, nlvr2_val;  // jsonl ("" = none)
  std::string prompts_train, prompts_val;  // Shapes GenEval prompts with reference images ("" = use captions)
};
StageDataFiles resolve_stage_data(const Config& cfg);

// The losses a stage trains: train.tasks, or the stage's default (stage 1: simmim mlm vq; stage 2: contrastive itm
// caption; stage 3: t2i caption, plus vqa / nlvr2 when their data exists). InputError when a listed task does not
// belong to the stage or its data is missing.
std::vector<std::string> stage_tasks(const Config& cfg, const StageDataFiles& files);

// Writes <dir>/corpus.txt (captions, questions, NLVR2 statements, GenEval prompts and video captions of the train
// split) and trains a deterministic SentencePiece model <dir>/tokenizer.model on it. Returns the model path.
std::string build_shapes_tokenizer(const std::string& shapes_dir, int64_t vocab_size = 256, uint64_t seed = 0);

// A resumable DataSource that draws, per step, one batch from each named stream (captions "cap", VQA "vqa",
// NLVR2 "nlvr2", text->image prompts "gen"). Tensors are "<stream>.<field>" (images, images2, ids, mask, labels,
// targets, image_ids, text_hash). The cursor is every stream's loader cursor, so resume is exact.
class StageDataSource : public DataSource {
 public:
  struct Stream {
    std::string name;
    DatasetPtr dataset;
    LoaderOptions options;
  };
  StageDataSource(std::vector<Stream> streams, std::shared_ptr<const AnswerVocab> answers);
  Batch next() override;
  nlohmann::json state() const override;
  void load_state(const nlohmann::json& state) override;
  // Converts a collated loader batch of stream `name` into prefixed tensors.
  static void add_stream_tensors(janus::Batch&& b, const std::string& name, const AnswerVocab* answers,
                                 train::Batch& out);

 private:
  std::vector<Stream> streams_;
  std::vector<std::unique_ptr<DataLoader>> loaders_;
  std::shared_ptr<const AnswerVocab> answers_;
};

struct StageTaskOptions {
  int rank = 0;
  int world_size = 1;
  std::shared_ptr<dist::ProcessGroup> pg;  // data parallel: gathered InfoNCE, GradNorm weights averaged
  bool write_artifacts = true;             // rank 0 writes model.json / tokenizer.model / answers.json
};

class StageTask : public TrainTask {
 public:
  explicit StageTask(const Config& config, StageTaskOptions options = {});
  ~StageTask() override;

  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }
  DataSource& data() override { return *data_; }
  StepOutput compute_loss(const Batch& batch, const StepContext& ctx) override;
  std::vector<ExtraOptimizerSpec> extra_optimizers() const override;
  void after_step(const StepContext& ctx) override;
  void save_state(TensorMap& tensors, nlohmann::json& meta) const override;
  void load_state(const TensorMap& tensors, const nlohmann::json& meta) override;
  // Validation losses (and cheap accuracies) on data.val; stage 1/3 also write <run_dir>/samples/step_N.png.
  nlohmann::json validate(const StepContext& ctx) override;

  JanusModel janus_model() const { return model_; }
  const std::vector<std::string>& tasks() const { return tasks_; }
  const std::vector<std::string>& answers() const { return answer_list_; }
  const StageDataFiles& files() const { return files_; }
  std::vector<double> loss_weights() const;  // current weights of the balanced losses (stage 3), in tasks() order

 private:
  struct Impl;
  StepOutput stage1(const Batch& batch, const StepContext& ctx);
  StepOutput stage2(const Batch& batch, const StepContext& ctx);
  StepOutput stage3(const Batch& batch, const StepContext& ctx);
  // negatives: embeddings of hard negative captions (train.text_negatives), or undefined.
  at::Tensor clip_loss(const ContrastiveOutput& co, const StepContext& ctx, const at::Tensor& negatives = {}) const;
  // The contrastive embeddings of the "cap" stream; `loss` is clip_loss with train.text_negatives' hard negatives
  // when on (training only), and then "text_neg_acc" (how often an image scores its caption above that caption's
  // negative, %) is added to `parts`.
  ContrastiveOutput contrastive_step(const Batch& batch, const StepContext& ctx,
                                     std::map<std::string, at::Tensor>& parts);
  at::Generator step_generator(const StepContext& ctx, uint64_t salt) const;
  bool has(const std::string& task) const;

  Config cfg_;
  StageTaskOptions opt_;
  StageDataFiles files_;
  std::vector<std::string> tasks_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::shared_ptr<const AnswerVocab> vocab_;
  std::vector<std::string> answer_list_;
  JanusModel model_{nullptr};
  std::unique_ptr<StageDataSource> data_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace janus::train
