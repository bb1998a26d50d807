#include "janus/data/factory.h"

#include <filesystem>

#include "janus/core/error.h"

namespace fs = std::filesystem;

namespace janus {

DatasetPtr open_dataset(const std::string& format, const std::string& path, const std::string& split,
                        DatasetOptions opts, int64_t answer_vocab, EntryReport* report) {
  if (path.empty()) throw InputError(fmt::format("data: no path given for format {}", format));
  const std::string dir = fs::path(path).parent_path().string();
  if (format == "shapes") {
    if (opts.image_root.empty()) opts.image_root = path;
    const std::string s = split.empty() ? "train" : split;
    return make_caption_dataset(load_coco_captions((fs::path(path) / ("captions_" + s + ".json")).string(), report), opts,
                                "shapes-" + s);
  }
  if (format == "coco") {
    if (opts.image_root.empty()) opts.image_root = dir;
    return make_caption_dataset(load_coco_captions(path, report), opts, "coco");
  }
  if (format == "vqa") {
    const std::string name = fs::path(path).filename().string();
    const auto q = name.find("questions");
    if (q == std::string::npos)
      throw InputError(fmt::format("{}: a VQA questions file name must contain \"questions\"", path));
    const std::string ann = (fs::path(dir) / (name.substr(0, q) + "annotations" + name.substr(q + 9))).string();
    const bool shapes = fs::exists(fs::path(dir).parent_path() / "shapes_info.json");
    if (opts.image_root.empty()) opts.image_root = shapes ? fs::path(dir).parent_path().string() : dir;
    auto recs = load_vqa(path, ann, shapes ? "{subtype}/{id12}.png" : "COCO_{subtype}_{id12}.jpg", report);
    auto vocab = build_answer_vocab(recs, answer_vocab);
    return make_vqa_dataset(std::move(recs), std::move(vocab), opts);
  }
  if (format == "nlvr2") {
    const bool shapes = fs::exists(fs::path(dir).parent_path() / "shapes_info.json");
    if (opts.image_root.empty()) opts.image_root = shapes ? fs::path(dir).parent_path().string() : dir;
    return make_nlvr2_dataset(load_nlvr2(path, report), opts);
  }
  if (format == "imagefolder") return make_image_folder_dataset(path, opts);
  if (format == "text") return make_text_dataset(load_text_corpus(path));
  throw InputError(
      fmt::format("data.format: unknown format \"{}\" (shapes, coco, vqa, nlvr2, imagefolder, text)", format));
}

DatasetPtr open_dataset(const Config& cfg, bool train, EntryReport* report) {
  DatasetOptions o;
  o.transform.resize_short = cfg.model.image_size;
  o.transform.crop = cfg.model.image_size;
  o.transform.random_crop = train;
  o.transform.mean = cfg.data.mean;
  o.transform.std = cfg.data.std;
  const std::string& path = train ? cfg.data.train : cfg.data.val;
  if (path.empty()) throw InputError(fmt::format("data.{}: no dataset path set", train ? "train" : "val"));
  EntryReport local;
  auto ds = open_dataset(cfg.data.format, path, train ? "train" : "val", o, 3129, &local);
  local.check(cfg.data.max_bad_fraction, fmt::format("data.{} ({})", train ? "train" : "val", path));
  if (report) *report = local;
  return ds;
}

LoaderOptions loader_options(const Config& cfg, int64_t rank, int64_t world_size, bool train) {
  LoaderOptions o;
  o.batch_size = cfg.data.batch_size;
  o.num_workers = cfg.data.num_workers;
  o.prefetch = cfg.data.prefetch;
  o.shuffle = train && cfg.data.shuffle;
  o.seed = static_cast<uint64_t>(cfg.train.seed);
  o.rank = rank;
  o.world_size = world_size;
  o.max_bad_fraction = cfg.data.max_bad_fraction;
  o.max_text_len = cfg.model.max_text_len;
  return o;
}

}  // namespace janus
