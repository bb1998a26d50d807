#pragma once
// janus::Config: nested plain structs, one per section. Defaults live here; YAML only overrides them;
// the whole config is validated once, at load. Every field is declared once in its section's visit(),
// which drives loading, validation, writing the resolved YAML and the generated docs/config.md.
//
// Adding a key: add the member with its default and one line in visit(); run
// `janus_config docs > docs/config.md` (a test fails until the docs match).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace janus {

// A constraint on one value, shown in errors and in the docs.
struct Check {
  std::optional<double> min;
  std::optional<double> max;
  bool min_exclusive = false;
  std::vector<std::string> choices;  // for strings (and the items of string lists)
  bool existing_path = false;        // non-empty string must name an existing file or directory

  static Check none() { return {}; }
  static Check range(double lo, double hi) {
    Check c;
    c.min = lo;
    c.max = hi;
    return c;
  }
  static Check at_least(double lo) {
    Check c;
    c.min = lo;
    return c;
  }
  static Check positive() {
    Check c;
    c.min = 0;
    c.min_exclusive = true;
    return c;
  }
  static Check one_of(std::vector<std::string> values) {
    Check c;
    c.choices = std::move(values);
    return c;
  }
  static Check existing() {
    Check c;
    c.existing_path = true;
    return c;
  }
  std::string describe() const;  // e.g. "> 0", "in [0, 1]", "one of: a, b"
};

struct ModelConfig {
  std::string flavour = "tiny";
  int64_t image_size = 64;
  int64_t max_text_len = 32;
  int64_t vocab_size = 0;  // 0: take it from the tokenizer
  std::string weights;     // optional safetensors to load after construction
  int64_t num_answers = 0;
  int64_t num_classes = 0;
  std::string router = "dynamic";
  std::string fusion = "dual_stream";
  std::string embed_pool = "token";
  std::string nlvr2_head = "pair";
  std::string image_pos = "none";
  bool image_local_tokens = false;
  std::string vision_stem = "patch";
  double text_word_init_std = 0.02;
  int64_t vq_downsample = 0;
  int64_t vq_ch = 0;
  std::string vq_codebook = "flavour";
  double vq_dead_code_threshold = 0.0;
  std::string vq_encoder = "conv";
  int64_t vq_codebook_size = 0;
  int64_t gen_depth = 0;
  std::string caption_decoder = "shared";
  std::string gen_code_pos = "1d";
  std::string gen_text = "embed";

  template <class V>
  void visit(V& v) {
    v("flavour", flavour, "model flavour from the registry (janus_model describe lists them)",
      Check::one_of({"tiny", "small", "base", "1b"}));
    v("image_size", image_size, "input image side in pixels (square)", Check::range(8, 4096));
    v("max_text_len", max_text_len, "maximum text length in tokens (incl. bos/eos)", Check::range(4, 8192));
    v("vocab_size", vocab_size, "text vocabulary size; 0 = the tokenizer's", Check::range(0, 10000000));
    v("weights", weights, "safetensors file loaded into the model after construction (optional)", Check::existing());
    v("num_answers", num_answers, "VQA answer-vocabulary size of the classification head; 0 = no head",
      Check::range(0, 10000000));
    v("num_classes", num_classes, "image classes of the classification head; 0 = no head", Check::range(0, 10000000));
    v("router", router, "dynamic = gated per-modality projections (the design); shared = one plain Linear (ablation)",
      Check::one_of({"dynamic", "shared"}));
    v("fusion", fusion,
      "dual_stream = block-sparse + LSH streams mixed by a gate (the design); dense = plain transformer blocks "
      "(ablation)",
      Check::one_of({"dual_stream", "dense"}));
    v("embed_pool", embed_pool,
      "contrastive embeddings from the encoders' class/first token (token) or the mean of the unpadded tokens (mean)",
      Check::one_of({"token", "mean"}));
    v("nlvr2_head", nlvr2_head,
      "NLVR2 head: pair (each image fused with the statement on its own, an MLP over the two CLS outputs; ViLT) or "
      "joint (one fusion over both images and the statement, a Linear on its CLS)",
      Check::one_of({"pair", "joint"}));
    v("image_pos", image_pos,
      "position table added to the routed image tokens before the fusion and the caption decoder: none (they carry "
      "only the ViT's positions) or sincos (a learned table started at MAE's 2-D sin-cos table)",
      Check::one_of({"none", "sincos"}));
    v("image_local_tokens", image_local_tokens,
      "append the ViT's patch embeddings (before its blocks, so each holds only its own patch), projected, to the "
      "routed image tokens: the fusion and the caption decoder find an object and its position there, where the "
      "ViT's outputs all carry every object (needs image_pos: sincos)");
    v("vision_stem", vision_stem,
      "ViT patch embedding: patch (one stride-p conv, as timm) or conv (3x3 conv stem with BatchNorm, Xiao et al. "
      "2021; needs a power-of-two patch size)",
      Check::one_of({"patch", "conv"}));
    v("text_word_init_std", text_word_init_std,
      "std of the text encoder's word-embedding init (BERT: 0.02); 1.0 (nn.Embedding's default) trains a tiny "
      "model's retrieval faster from scratch. Init only: no effect on loaded weights",
      Check::range(1e-6, 100.0));
    v("vq_downsample", vq_downsample, "VQ-VAE downsampling factor (4, 8, 16, 32); 0 = the flavour's",
      Check::range(0, 64));
    v("vq_ch", vq_ch,
      "VQ-VAE base width (channels at full resolution; deeper levels multiply it); 0 = the flavour's (tiny: 32)",
      Check::range(0, 4096));
    v("vq_codebook", vq_codebook,
      "VQ codebook updates: gradient (codebook loss), ema (moving averages, no codebook loss), flavour = the "
      "flavour's",
      Check::one_of({"flavour", "gradient", "ema"}));
    v("vq_dead_code_threshold", vq_dead_code_threshold,
      "EMA count below which a code is replaced by a random encoder output of the batch; 0 = never (needs "
      "vq_codebook ema)",
      Check::range(0.0, 1e9));
    v("vq_encoder", vq_encoder,
      "VQ-VAE encoder: conv (LlamaGen's 3x3 convs; every code sees the whole image) or cell (each code from its own "
      "vq_downsample x vq_downsample cell only: equal cells get equal codes, which a text->image generator can "
      "predict)",
      Check::one_of({"conv", "cell"}));
    v("vq_codebook_size", vq_codebook_size, "VQ codebook entries; 0 = the flavour's (tiny: 512)",
      Check::range(0, 1 << 20));
    v("gen_depth", gen_depth,
      "causal transformer blocks of the text->image generator (image_gen); 0 = the flavour's (tiny: 2)",
      Check::range(0, 1024));
    v("caption_decoder", caption_decoder,
      "text decoder for captions, VQA answers and caption re-ranking: shared = image_gen's causal stack, word "
      "embedding and positions (the design); own = a second causal stack of the same shape (caption_lm), so the "
      "captioning and text->image losses pull no common weights",
      Check::one_of({"shared", "own"}));
    v("gen_code_pos", gen_code_pos,
      "positions of the text->image generator's inputs: 1d = a learned table over the sequence; 2d = plus a learned "
      "row and column embedding of the image code each input predicts",
      Check::one_of({"1d", "2d"}));
    v("gen_text", gen_text,
      "what the text->image generator reads of its prompt: embed = its own word embedding of the ids; encoder = the "
      "understanding path's text tokens (text encoder -> router -> adapter), normalised and projected",
      Check::one_of({"embed", "encoder"}));
  }
};

struct DataConfig {
  std::string format = "shapes";
  std::string train;
  std::string val;
  std::string tokenizer;
  std::string image_root;
  std::string vqa_train;
  std::string vqa_val;
  std::string nlvr2_train;
  std::string nlvr2_val;
  int64_t batch_size = 32;
  int64_t num_workers = 2;
  int64_t prefetch = 4;
  bool shuffle = true;
  double max_bad_fraction = 0.05;
  std::vector<double> mean{0.5, 0.5, 0.5};
  std::vector<double> std{0.5, 0.5, 0.5};

  template <class V>
  void visit(V& v) {
    v("format", format, "dataset layout of train/val",
      Check::one_of({"shapes", "coco", "vqa", "nlvr2", "imagefolder", "text"}));
    v("train", train, "training data: a file or directory in `format`", Check::existing());
    v("val", val, "validation data (optional)", Check::existing());
    v("tokenizer", tokenizer, "SentencePiece model file (.model); Shapes: default <data.train>/tokenizer.model",
      Check::existing());
    v("image_root", image_root, "stage tasks, coco format: image root for captions/VQA/NLVR2 files (default: each "
      "file's directory)", Check::existing());
    v("vqa_train", vqa_train, "stage tasks: VQA v2 questions JSON for training (annotations beside it, \"questions\" "
      "-> \"annotations\"); Shapes: default <data.train>/vqa/questions_train.json", Check::existing());
    v("vqa_val", vqa_val, "stage tasks: VQA v2 questions JSON for validation", Check::existing());
    v("nlvr2_train", nlvr2_train, "stage tasks: NLVR2 jsonl for training; Shapes: default <data.train>/nlvr2/train.jsonl",
      Check::existing());
    v("nlvr2_val", nlvr2_val, "stage tasks: NLVR2 jsonl for validation", Check::existing());
    v("batch_size", batch_size, "samples per step per rank (before gradient accumulation)", Check::range(1, 1 << 20));
    v("num_workers", num_workers, "loader worker threads", Check::range(0, 256));
    v("prefetch", prefetch, "batches prepared ahead per worker", Check::range(1, 1024));
    v("shuffle", shuffle, "reshuffle the training set every epoch (from train.seed)");
    v("max_bad_fraction", max_bad_fraction, "fail when more than this fraction of samples is unreadable",
      Check::range(0, 1));
    v("mean", mean, "per-channel normalisation mean (RGB)");
    v("std", std, "per-channel normalisation std (RGB)", Check::positive());
  }
};

// One entry of optim.overrides: "PREFIX: key=value[, key=value...]". The settings apply to the main optimizer's
// parameters whose name is PREFIX or starts with "PREFIX." ("vq", "text.embed"); the first matching entry wins.
// Keys: lr_scale (x the scheduled lr), beta1, beta2, weight_decay (decayed tensors only; norms and biases keep 0).
struct OptimOverride {
  std::string prefix;
  double lr_scale = 1.0;
  std::optional<double> beta1, beta2, weight_decay;
};
// Parses one entry; ConfigError naming `where` (e.g. "optim.overrides[0]") and what is wrong.
OptimOverride parse_optim_override(const std::string& spec, const std::string& where);
// Every entry of optim.overrides, named "optim.overrides[i]" in errors.
std::vector<OptimOverride> parse_optim_overrides(const std::vector<std::string>& specs);

struct OptimConfig {
  std::string name = "adamw";
  double lr = 3e-4;
  double weight_decay = 0.05;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double grad_clip = 1.0;
  std::string grad_clip_by = "global";
  std::vector<std::string> overrides;
  double disc_lr = 1e-4;

  template <class V>
  void visit(V& v) {
    v("name", name, "optimizer", Check::one_of({"adamw", "sgd"}));
    v("lr", lr, "peak learning rate", Check::range(0, 10));
    v("weight_decay", weight_decay, "decoupled weight decay (not applied to norms, biases, embeddings)",
      Check::range(0, 10));
    v("beta1", beta1, "AdamW beta1 (SGD momentum)", Check::range(0, 1));
    v("beta2", beta2, "AdamW beta2", Check::range(0, 1));
    v("eps", eps, "AdamW epsilon", Check::positive());
    v("grad_clip", grad_clip, "gradient-norm clip; 0 disables", Check::at_least(0));
    v("grad_clip_by", grad_clip_by,
      "global: one norm over all parameters (torch.nn.utils.clip_grad_norm_); module: each top-level module "
      "(vq, text, vision, fusion, ...) clipped to grad_clip on its own, so a large loss on one module does not "
      "shrink another's steps; logs grad_norm/<module>",
      Check::one_of({"global", "module"}));
    v("overrides", overrides,
      "per-module settings of the main optimizer, entries \"PREFIX: key=value, ...\" with keys lr_scale, beta1, "
      "beta2, weight_decay, for the parameters named PREFIX or PREFIX.* (first match wins; e.g. \"vq: beta2=0.95\")");
    v("disc_lr", disc_lr, "learning rate of the discriminator's own optimizer", Check::range(0, 10));
  }
};

struct ScheduleConfig {
  std::string name = "cosine";
  int64_t warmup_steps = 100;
  double min_lr_ratio = 0.1;

  template <class V>
  void visit(V& v) {
    v("name", name, "learning-rate schedule after warmup", Check::one_of({"cosine", "linear", "constant"}));
    v("warmup_steps", warmup_steps, "linear warmup steps", Check::at_least(0));
    v("min_lr_ratio", min_lr_ratio, "final lr as a fraction of optim.lr", Check::range(0, 1));
  }
};

struct TrainConfig {
  int64_t stage = 1;
  int64_t steps = 1000;
  int64_t grad_accum = 1;
  int64_t seed = 0;
  std::string precision = "fp32";
  std::string device = "auto";
  std::string run_dir = "runs/default";
  std::string init_from;
  std::vector<std::string> freeze;
  double contrastive_weight = 0.7;
  std::vector<std::string> tasks;
  std::vector<double> loss_weights;
  std::vector<int64_t> task_every;
  std::string loss_balance = "gradnorm";
  double gradnorm_alpha = 1.5;
  double gradnorm_lr = 0.025;
  std::string vq_rec_loss = "l2";
  int64_t disc_start = 5000;
  double disc_weight = 0.8;
  int64_t disc_layers = 3;
  int64_t disc_ndf = 64;
  double t2i_uncond_prob = 0.1;
  bool text_negatives = false;
  std::vector<std::string> text_negative_groups;
  bool activation_checkpointing = false;
  double ema_decay = 0.0;
  int64_t max_nonfinite_steps = 5;
  int64_t threads = 0;
  double loss_scale_init = 65536.0;
  int64_t loss_scale_growth_interval = 2000;
  std::vector<int64_t> debug_nonfinite_steps;
  std::vector<int64_t> profile_steps;
  bool profile_shapes = false;

  template <class V>
  void visit(V& v) {
    v("stage", stage, "training stage: 1 intra-modal, 2 cross-modal alignment, 3 generation fine-tuning",
      Check::range(1, 3));
    v("steps", steps, "optimizer steps to train", Check::range(1, 1e12));
    v("grad_accum", grad_accum, "micro-batches accumulated per optimizer step", Check::range(1, 65536));
    v("seed", seed, "seed for weights, data order and masking", Check::range(0, 9.0e15));
    v("precision", precision, "compute precision (autocast)", Check::one_of({"fp32", "bf16", "fp16"}));
    v("device", device, "cpu, cuda, cuda:N or auto", Check::none());
    v("run_dir", run_dir, "directory for the resolved config, checkpoints, metrics and samples");
    v("init_from", init_from, "checkpoint or run directory to initialise the model from (previous stage)");
    v("freeze", freeze, "module-path globs whose parameters are frozen, e.g. encoders.vision.*");
    v("contrastive_weight", contrastive_weight, "stage 2: lambda weighting InfoNCE against ITM/captioning",
      Check::range(0, 1));
    v("tasks", tasks,
      "losses the stage trains; empty = the stage's default (1: simmim mlm vq; 2: contrastive itm caption; 3: t2i "
      "caption + vqa/nlvr2 when their data exists); stage 2 also takes nlvr2, stage 3 contrastive",
      Check::one_of({"simmim", "mlm", "vq", "contrastive", "itm", "caption", "t2i", "vqa", "nlvr2"}));
    v("loss_weights", loss_weights,
      "fixed weights of the stage's losses in train.tasks order (stage 1/3; empty = all 1); stage 3 with "
      "loss_balance gradnorm uses them as initial weights",
      Check::at_least(0));
    v("task_every", task_every,
      "stage 3: in train.tasks order, each loss is computed on every k-th optimizer step only (steps where step % k "
      "== 0; empty = all 1), so a loss that needs many steps (t2i) can run every step while the others run on some; "
      "needs loss_balance fixed",
      Check::range(1, 1000000));
    v("loss_balance", loss_balance, "stage 3: gradnorm (arXiv:1711.02257) or fixed (train.loss_weights)",
      Check::one_of({"gradnorm", "fixed"}));
    v("gradnorm_alpha", gradnorm_alpha, "stage 3: GradNorm asymmetry alpha", Check::range(0, 10));
    v("gradnorm_lr", gradnorm_lr, "stage 3: learning rate of the GradNorm loss weights", Check::range(0, 10));
    v("vq_rec_loss", vq_rec_loss,
      "stage 1: VQ tokenizer reconstruction loss: l2 (LlamaGen's default), l1, or l1+l2. With l1 the 32 px Shapes "
      "tokenizer stalled at the background-only level (14.7 dB)",
      Check::one_of({"l2", "l1", "l1+l2"}));
    v("disc_start", disc_start, "stage 1: step from which the adversarial VQ terms are on; -1 = no discriminator",
      Check::at_least(-1));
    v("disc_weight", disc_weight, "stage 1: scale of the adaptive adversarial weight (VQGAN)", Check::range(0, 100));
    v("disc_layers", disc_layers, "stage 1: PatchGAN discriminator stride-2 layers", Check::range(1, 6));
    v("disc_ndf", disc_ndf, "stage 1: PatchGAN discriminator base channels", Check::range(1, 4096));
    v("t2i_uncond_prob", t2i_uncond_prob,
      "stage 3: probability that a text->image training prompt is replaced by the unconditional prompt (what "
      "classifier-free guidance samples against; LlamaGen / Janus: 0.1); 0 = always conditional",
      Check::range(0, 1));
    v("text_negatives", text_negatives,
      "stages 2/3: add one hard negative caption per batch caption to the contrastive loss's image->text side, made "
      "by swapping two words of a group or replacing one (NegCLIP; docs/training.md)");
    v("text_negative_groups", text_negative_groups,
      "groups of interchangeable words for train.text_negatives, each a string of space-separated lower-case words "
      "(\"red green blue\"); empty = the Shapes vocabulary (colours, shapes, sizes, left/right, above/below, "
      "top/bottom), which needs data.format shapes");
    v("activation_checkpointing", activation_checkpointing, "recompute transformer blocks in backward");
    v("ema_decay", ema_decay, "EMA of weights; 0 disables", Check::range(0, 1));
    v("max_nonfinite_steps", max_nonfinite_steps, "consecutive non-finite steps before the run stops",
      Check::range(1, 1000000));
    v("threads", threads, "intra-op CPU threads; 0 = torch default", Check::range(0, 1024));
    v("loss_scale_init", loss_scale_init, "fp16: initial dynamic loss scale", Check::positive());
    v("loss_scale_growth_interval", loss_scale_growth_interval,
      "fp16: clean steps before the loss scale doubles (it halves on every overflow)", Check::range(1, 1e9));
    v("profile_steps", profile_steps,
      "[first, count]: record the 0-based steps first..first+count-1 with the torch profiler into "
      "<run_dir>/profile/ (trace.json for Perfetto, ops.txt: operators by self time) and log the top ten; empty = off",
      Check::at_least(0));
    v("profile_shapes", profile_shapes,
      "with profile_steps: one ops.txt row per operator and input shapes (e.g. aten::mm[3072,512][512,128])");
    v("debug_nonfinite_steps", debug_nonfinite_steps,
      "testing: 0-based steps at which the loss is made NaN (exercises skipping and the stop rule)",
      Check::at_least(0));
  }
};

struct ParallelConfig {
  std::string backend = "auto";
  double timeout_s = 300;
  double bucket_mb = 25;

  template <class V>
  void visit(V& v) {
    v("backend", backend, "c10d backend: nccl for CUDA, gloo for CPU, auto picks",
      Check::one_of({"auto", "nccl", "gloo"}));
    v("timeout_s", timeout_s, "collective and rendezvous timeout in seconds", Check::positive());
    v("bucket_mb", bucket_mb, "gradient all-reduce bucket size in MiB", Check::positive());
  }
};

struct CheckpointConfig {
  int64_t every_steps = 500;
  int64_t keep_last = 3;

  template <class V>
  void visit(V& v) {
    v("every_steps", every_steps, "steps between checkpoints; 0 = only at the end", Check::at_least(0));
    v("keep_last", keep_last, "checkpoints kept (older ones are deleted)", Check::range(1, 1000000));
  }
};

struct LogConfig {
  std::string level = "info";
  int64_t every_steps = 10;
  bool jsonl = true;
  bool tensorboard = true;
  bool grad_norm_by_module = false;

  template <class V>
  void visit(V& v) {
    v("level", level, "log level", Check::one_of({"trace", "debug", "info", "warn", "error", "critical", "off"}));
    v("every_steps", every_steps, "steps between metric records", Check::range(1, 1e9));
    v("jsonl", jsonl, "write metrics.jsonl in the run directory");
    v("tensorboard", tensorboard, "write TensorBoard event files in the run directory");
    v("grad_norm_by_module", grad_norm_by_module,
      "record each top-level module's gradient norm (grad_norm/<module>, before clipping) in metrics.jsonl and "
      "TensorBoard; always on with optim.grad_clip_by: module");
  }
};

struct EvalConfig {
  int64_t every_steps = 0;
  std::vector<std::string> tasks;
  int64_t limit = 0;
  int64_t batch_size = 32;
  int64_t samples = 8;

  template <class V>
  void visit(V& v) {
    v("every_steps", every_steps, "steps between validation runs; 0 disables", Check::at_least(0));
    v("tasks", tasks, "evaluation tasks run during validation",
      Check::one_of({"retrieval", "caption", "vqa", "nlvr2", "classify", "generate", "recon"}));
    v("limit", limit, "evaluate at most this many samples per task; 0 = all", Check::at_least(0));
    v("batch_size", batch_size, "evaluation batch size", Check::range(1, 1 << 20));
    v("samples", samples, "images per row of the validation sample sheets (stage 1/3); 0 = no sheet",
      Check::range(0, 64));
  }
};

struct Config {
  ModelConfig model;
  DataConfig data;
  OptimConfig optim;
  ScheduleConfig schedule;
  TrainConfig train;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LogConfig log;
  EvalConfig eval;

  template <class V>
  void visit(V& v) {
    v.section("model", model, "Model architecture: a flavour plus overrides.");
    v.section("data", data, "Datasets, tokenizer and loader.");
    v.section("optim", optim, "Optimizer.");
    v.section("schedule", schedule, "Learning-rate schedule.");
    v.section("train", train, "Training loop.");
    v.section("parallel", parallel, "Distributed data parallelism (c10d).");
    v.section("checkpoint", checkpoint, "Checkpointing.");
    v.section("log", log, "Logging and metrics.");
    v.section("eval", eval, "Evaluation during training.");
  }

  // Loads a YAML file (may be empty: all defaults) and applies `--set key.path=value` overrides in order.
  // Throws ConfigError naming the key path (and the closest valid key for unknown ones) on any problem.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {});
  // A run's resolved config.yaml read back by consumers (janus_eval, Pipeline, janus_serve): everything is validated
  // as in load() except that paths need not exist (the data a model was trained on may live elsewhere).
  static Config load_resolved(const std::string& path);
  static Config from_yaml(const std::string& yaml, const std::vector<std::string>& overrides = {},
                          const std::string& source = "<string>");
  // Applies one "a.b.c=value" override with the same validation as the file.
  void set(const std::string& assignment);

  std::string to_yaml() const;                // the resolved config; from_yaml(to_yaml()) gives it back
  std::string hash() const;                   // sha256 of to_yaml(), first 16 hex digits
  void write(const std::string& path) const;  // atomically writes to_yaml()
  static std::string docs_markdown();         // docs/config.md, generated from the schema
  static std::vector<std::string> keys();     // every full key path, e.g. "optim.lr"
};

}  // namespace janus
