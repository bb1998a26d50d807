#pragma once
// Model-driven evaluation: runs a loaded JanusModel over a dataset in the real file layouts (COCO captions, VQA v2,
// NLVR2, image folders, GenEval-style prompt lists, and the Shapes benchmark directory, which holds all of them)
// and scores the outputs with the same metric functions as `janus_eval score` (caption_metrics.h, vqa.h,
// metrics.h, score.h), so both paths produce the same metric keys. `janus_eval --task ... --run DIR --data PATH`
// is the command-line front end; the trainer calls evaluate() for periodic validation. docs/eval.md has the
// commands, the data each task reads and the output format.
//
// Every result is a JSON object
//   {"task", "split", "metrics": {...}, "counts": {...}, "inputs": {paths read}, "model": {"weights",
//    "config_hash", "flavour", "parameters"}, "options": {...}, "seconds", "samples_per_second",
//    optional "examples" (a few predictions beside their references), "notes" (caveats), "outputs" (files written)}
// so that `janus_eval compare a.json b.json` works on two of them. Scales: retrieval recall, accuracies and VQA
// accuracy are percentages (x100, as the official tools print them); BLEU/ROUGE-L in [0, 1], CIDEr-D in [0, 10];
// Shapes-GenEval scores in [0, 1] (GenEval's convention); PSNR in dB, SSIM in [-1, 1]; FID >= 0, IS >= 1.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "janus/data/shapes.h"
#include "janus/data/tokenizer.h"
#include "janus/model/janus_model.h"

namespace janus {
struct RunArtifacts;
}

namespace janus::eval {

// The tasks, in the order `--task all` runs them.
const std::vector<std::string>& eval_task_names();  // retrieval caption vqa nlvr2 classify generate recon

// What the tasks need from a run. The pointers must outlive the evaluation; `answers` may be empty (no VQA head).
struct EvalModel {
  JanusModelImpl* model = nullptr;  // eval mode is set by evaluate() and restored afterwards
  const Tokenizer* tokenizer = nullptr;
  std::vector<std::string> answers;  // VQA head index -> answer string (answers.json)
  std::string weights;               // recorded in the results
  std::string config_hash;           // recorded in the results; see model_config_hash()
};

// sha256 of the model spec (model.json contents) followed by `config_text` (the run's config.yaml, may be "").
std::string model_config_hash(const JanusModelOptions& options, const std::string& config_text = "");
// An EvalModel over a loaded run directory (include/janus/model/run.h); `run` must outlive it.
EvalModel eval_model(const RunArtifacts& run);

struct EvalProgress {
  std::string task, phase;  // e.g. "caption", "decoding"
  int64_t done = 0, total = 0;
  double seconds = 0, per_second = 0, eta_seconds = 0;
};

struct EvalOptions {
  std::string split = "val";  // Shapes directories: which split's files
  int64_t limit = 0;          // at most this many images / questions / statements / prompts (0 = all)
  int64_t batch_size = 32;
  int64_t max_text_len = 32;  // tokens incl. bos/eos (the config's model.max_text_len)
  std::vector<double> mean{0.5, 0.5, 0.5}, std{0.5, 0.5, 0.5};  // the config's data.mean / data.std
  std::string image_root;                                       // overrides the layout's image root
  // retrieval
  int64_t rerank = 0;  // re-rank each query's top-k (0 = off) by rerank_by:
  // "itm": the ITM head's match probability (BLIP style); "caption": the caption decoder's log-likelihood of the
  // text given the image, sum over its tokens after bos (generative scoring, as in VisualGPTScore)
  std::string rerank_by = "itm";
  double rerank_contrastive_weight = 0.0;  // candidate score = rerank score + this x cosine similarity
  // caption
  int64_t beam = 1;  // 1 = greedy (generate_caption); > 1 = beam search
  double length_penalty = 1.0;
  int64_t max_caption_len = 30;  // tokens incl. bos
  // vqa
  std::string vqa_mode = "auto";  // head | generate | auto (the classification head when the model has one)
  int64_t max_answer_len = 8;     // generated answer tokens
  // classify: zero-shot prompt per class folder name ('_' -> ' ')
  std::string prompt_template = "a photo of a {class}";
  // generate (sampling of the image-token generator; temperature 0 = greedy)
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  bool cfg = false;
  double cfg_scale = 5.0;
  uint64_t seed = 0;
  // Best-of-N (as DALL-E re-ranks its samples with CLIP): draw gen_candidates samples per prompt and keep the one the
  // model itself scores highest against its prompt, by image_text_scores(gen_rerank_by,
  // gen_rerank_contrastive_weight). 1 = off (one sample, no scoring). The results then also report the first sample's
  // score (what no re-ranking gives) and how often any candidate was correct (what a perfect scorer would give).
  int64_t gen_candidates = 1;
  // contrastive | caption | itm | vqa. vqa (Shapes prompts only, TIFA-style): the sum over the questions the prompt
  // implies (shapes_prompt_questions of PromptSpec::from_prompt, read from the prompt's text) of log sigmoid(the VQA
  // head's logit for the implied answer); needs the VQA head; a prompt outside the Shapes grammar is an InputError.
  std::string gen_rerank_by = "contrastive";
  double gen_rerank_contrastive_weight = 0.0;  // for caption / itm / vqa
  std::string inception;  // torchvision-layout Inception-v3 safetensors: adds FID / IS against the references
  // Output files (sheets, generated images, COCO/VQA-format prediction files) go here when non-empty.
  std::string out_dir;
  // Called after every batch; the default logs "task phase done/total, N/s, ETA" at most every 2 s and at the end.
  std::function<void(const EvalProgress&)> progress;
};

// The files `task` reads for `data`: a Shapes directory (shapes_info.json inside; the split's files are found by
// name) or one file/directory in the real layout (COCO captions JSON, VQA questions JSON with the annotations
// beside it, NLVR2 jsonl, image folder, prompts JSON). Returns {"layout", paths...}; InputError (one line) when
// the data does not fit the task.
nlohmann::json resolve_task_data(const std::string& task, const std::string& data, const std::string& split);
// The tasks `data` has files for (what `--task all` runs).
std::vector<std::string> supported_tasks(const std::string& data, const std::string& split);

// Runs one task. InputError for unknown tasks, data that does not fit, or a model missing what the task needs
// (e.g. classify's head with a different class count).
nlohmann::json evaluate(const EvalModel& model, const std::string& task, const std::string& data,
                        const EvalOptions& options = {});

// The trainer's periodic-validation entry (StageTask::validate): the model as trained (its train/eval mode is
// restored afterwards), the run's tokenizer and VQA answers, a task name and the validation data path (e.g. the
// config's data.val or the Shapes directory); options.limit keeps it short. Returns the same JSON as above.
// Side effect: every LSHAttention in the model is re-seeded (LSHAttention::reset) before each batch, so results do
// not depend on batch size or on earlier forward calls; training continues with re-seeded rotation draws.
nlohmann::json evaluate(JanusModelImpl& model, const Tokenizer& tokenizer, const std::vector<std::string>& answers,
                        const std::string& task, const std::string& data, const EvalOptions& options = {});

// ---- library pieces the tasks are built from (tested on their own) ----

// Retrieval from contrastive embeddings: sim = image_embeds [Ni, E] x text_embeds [Nt, E]^T scored COCO style
// (score_retrieval's metric keys txt_r1 .. r_mean); txt2img[t] = image of text t.
nlohmann::json retrieval_from_embeddings(const at::Tensor& image_embeds, const at::Tensor& text_embeds,
                                         const std::vector<int64_t>& txt2img);

// Recall@{1,5,10} x100 when a query has a set of relevant items: i2t over rows of sim [Ni, Nt] with
// relevant_texts[i]; t2i over columns with relevant_images[t]. Ties rank the lower index first. Used for the
// "identical text counts" variant (a retrieved caption whose text equals one of the image's captions is a hit).
nlohmann::json retrieval_recall_sets(const at::Tensor& sim, const std::vector<std::vector<int64_t>>& relevant_texts,
                                     const std::vector<std::vector<int64_t>>& relevant_images);

// log p(text | image) under the caption decoder: images [B, 3, H, W], text with bos -> [B] float, the sum over each
// row's tokens after bos (eos included) of log softmax of JanusModelImpl::caption's logits. What
// `--rerank-by caption` scores candidates with (generative scoring: higher = better match).
at::Tensor caption_log_likelihood(JanusModelImpl& model, const at::Tensor& images, const TextInput& text);

// How well each image matches its text, by the model's own understanding path: images [B, 3, H, W] (normalised
// model input), text [B, L] -> [B] float on the CPU, higher = better match. by: "contrastive" (cosine of the
// contrastive embeddings), "caption" (caption_log_likelihood), "itm" (the ITM head's match probability; InputError
// when the model has none); plus contrastive_weight x the cosine for caption and itm. What retrieval's --rerank and
// generation's best-of-N (EvalOptions::gen_candidates) rank candidates by.
at::Tensor image_text_scores(JanusModelImpl& model, const at::Tensor& images, const TextInput& text,
                             const std::string& by, double contrastive_weight = 0.0);

// The best-of-N scores (EvalOptions::gen_rerank_by, GenerateOptions::rerank_by): contrastive, caption, itm (by
// image_text_scores) and vqa (by vqa_implied_scores). InputError "<what> '<by>' is not contrastive, caption, itm or
// vqa" for anything else.
void check_rerank_by(const std::string& by, const std::string& what);

// TIFA-style faithfulness of images to Shapes prompts (docs/eval.md, "--gen-rerank-by vqa"): for each image b, the
// sum over questions[b] (shapes_prompt_questions of its prompt) of log sigmoid(the VQA head's logit for the implied
// answer); questions whose answer is not in `answers` (the head's answer strings) are left out. `encode` turns
// question texts into the model's TextInput; `before_batch` (may be empty) runs before each VQA forward, e.g. to
// re-seed LSH attention. images [B, 3, H, W] on the model's device -> [B] float on the CPU. InputError when the
// model has no VQA head or `answers` does not match it.
at::Tensor vqa_implied_scores(JanusModelImpl& model, const at::Tensor& images,
                              const std::vector<std::vector<ImpliedQuestion>>& questions,
                              const std::vector<std::string>& answers,
                              const std::function<TextInput(const std::vector<std::string>&)>& encode,
                              int64_t batch_size, const std::function<void()>& before_batch = {});

// Tiles uint8 [H, W, 3] images into a grid with `cols` columns and optional captions drawn under each cell
// (OpenCV's Hershey font), and writes a PNG.
void write_image_sheet(const std::string& path, const std::vector<at::Tensor>& images, int64_t cols,
                       const std::vector<std::string>& captions = {}, int64_t cell = 96);

}  // namespace janus::eval
