// Dataset implementations over the parsed records (formats.h).
#include <random>

#include "janus/data/formats.h"

namespace janus {
namespace {

at::Tensor load_image(const DatasetOptions& o, const std::string& rel, std::mt19937_64& rng, std::string* path_out) {
  std::string path;
  try {
    path = resolve_under(o.image_root, rel, o.paths);
  } catch (const BadSampleError&) {
    throw;
  } catch (const InputError& e) {
    throw BadSampleError(e.what());
  }
  if (path_out) *path_out = path;
  return transform_image(decode_image_file(path), o.transform, rng);
}

class CaptionDataset final : public Dataset {
 public:
  CaptionDataset(std::vector<CaptionRecord> r, DatasetOptions o, std::string n)
      : recs_(std::move(r)), opts_(std::move(o)), name_(std::move(n)) {}
  int64_t size() const override { return static_cast<int64_t>(recs_.size()); }
  std::string name() const override { return name_; }
  Sample get(int64_t index, uint64_t seed) const override {
    const auto& r = recs_.at(static_cast<size_t>(index));
    std::mt19937_64 rng(seed);
    Sample s;
    s.index = index;
    s.id = std::to_string(r.image_id);
    s.image_paths.emplace_back();
    s.images.push_back(load_image(opts_, r.file, rng, &s.image_paths[0]));
    s.text = r.caption;
    return s;
  }

 private:
  std::vector<CaptionRecord> recs_;
  DatasetOptions opts_;
  std::string name_;
};

class VqaDataset final : public Dataset {
 public:
  VqaDataset(std::vector<VqaRecord> r, AnswerVocab v, DatasetOptions o)
      : recs_(std::move(r)), vocab_(std::move(v)), opts_(std::move(o)) {}
  int64_t size() const override { return static_cast<int64_t>(recs_.size()); }
  std::string name() const override { return "vqa"; }
  Sample get(int64_t index, uint64_t seed) const override {
    const auto& r = recs_.at(static_cast<size_t>(index));
    std::mt19937_64 rng(seed);
    Sample s;
    s.index = index;
    s.id = std::to_string(r.question_id);
    s.image_paths.emplace_back();
    s.images.push_back(load_image(opts_, r.file, rng, &s.image_paths[0]));
    s.text = r.question;
    s.answers = r.answers;
    s.answer = r.multiple_choice_answer;
    s.answer_type = r.answer_type;
    s.question_type = r.question_type;
    s.answer_id = vocab_.id(normalize_answer(r.multiple_choice_answer));
    return s;
  }

 private:
  std::vector<VqaRecord> recs_;
  AnswerVocab vocab_;
  DatasetOptions opts_;
};

class Nlvr2Dataset final : public Dataset {
 public:
  Nlvr2Dataset(std::vector<Nlvr2Record> r, DatasetOptions o) : recs_(std::move(r)), opts_(std::move(o)) {}
  int64_t size() const override { return static_cast<int64_t>(recs_.size()); }
  std::string name() const override { return "nlvr2"; }
  Sample get(int64_t index, uint64_t seed) const override {
    const auto& r = recs_.at(static_cast<size_t>(index));
    std::mt19937_64 rng(seed);
    Sample s;
    s.index = index;
    s.id = r.identifier;
    s.image_paths.resize(2);
    s.images.push_back(load_image(opts_, r.left, rng, &s.image_paths[0]));
    s.images.push_back(load_image(opts_, r.right, rng, &s.image_paths[1]));
    s.text = r.sentence;
    s.label = r.label;
    return s;
  }

 private:
  std::vector<Nlvr2Record> recs_;
  DatasetOptions opts_;
};

class ImageFolderDataset final : public Dataset {
 public:
  ImageFolderDataset(ImageFolderIndex idx, DatasetOptions o) : idx_(std::move(idx)), opts_(std::move(o)) {}
  int64_t size() const override { return static_cast<int64_t>(idx_.files.size()); }
  std::string name() const override { return "imagefolder"; }
  Sample get(int64_t index, uint64_t seed) const override {
    std::mt19937_64 rng(seed);
    Sample s;
    s.index = index;
    const auto& f = idx_.files.at(static_cast<size_t>(index));
    s.id = f;
    s.image_paths.push_back(f);
    s.images.push_back(transform_image(decode_image_file(f), opts_.transform, rng));
    s.label = idx_.labels[static_cast<size_t>(index)];
    s.text = idx_.classes[static_cast<size_t>(s.label)];
    return s;
  }

 private:
  ImageFolderIndex idx_;
  DatasetOptions opts_;
};

class TextDataset final : public Dataset {
 public:
  explicit TextDataset(std::vector<std::string> l) : lines_(std::move(l)) {}
  int64_t size() const override { return static_cast<int64_t>(lines_.size()); }
  std::string name() const override { return "text"; }
  Sample get(int64_t index, uint64_t) const override {
    Sample s;
    s.index = index;
    s.id = std::to_string(index);
    s.text = lines_.at(static_cast<size_t>(index));
    return s;
  }

 private:
  std::vector<std::string> lines_;
};

std::string resolve_sample_path(const DatasetOptions& o, const std::string& rel) {
  try {
    return resolve_under(o.image_root, rel, o.paths);
  } catch (const BadSampleError&) {
    throw;
  } catch (const InputError& e) {
    throw BadSampleError(e.what());
  }
}

class PointCloudDataset final : public Dataset {
 public:
  PointCloudDataset(std::vector<std::string> f, std::vector<std::string> c, std::vector<int64_t> l, DatasetOptions o)
      : files_(std::move(f)), captions_(std::move(c)), labels_(std::move(l)), opts_(std::move(o)) {}
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  std::string name() const override { return "points"; }
  Sample get(int64_t index, uint64_t seed) const override {
    std::mt19937_64 rng(seed);
    Sample s;
    s.index = index;
    const std::string path = resolve_sample_path(opts_, files_.at(static_cast<size_t>(index)));
    s.id = files_[static_cast<size_t>(index)];
    s.image_paths.push_back(path);
    s.points = sample_points(read_point_cloud(path), opts_.num_points, rng);
    if (static_cast<size_t>(index) < captions_.size()) s.text = captions_[static_cast<size_t>(index)];
    if (static_cast<size_t>(index) < labels_.size()) s.label = labels_[static_cast<size_t>(index)];
    return s;
  }

 private:
  std::vector<std::string> files_, captions_;
  std::vector<int64_t> labels_;
  DatasetOptions opts_;
};

class VideoDataset final : public Dataset {
 public:
  VideoDataset(std::vector<std::string> f, std::vector<std::string> c, DatasetOptions o)
      : files_(std::move(f)), captions_(std::move(c)), opts_(std::move(o)) {}
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  std::string name() const override { return "video"; }
  Sample get(int64_t index, uint64_t seed) const override {
    Sample s;
    s.index = index;
    const std::string path = resolve_sample_path(opts_, files_.at(static_cast<size_t>(index)));
    s.id = files_[static_cast<size_t>(index)];
    s.image_paths.push_back(path);
    const at::Tensor raw = read_video_frames(path, opts_.num_frames);
    std::vector<at::Tensor> frames;
    // One rng state per clip, re-seeded per frame: every frame gets the same crop/flip.
    for (int64_t t = 0; t < raw.size(0); ++t) {
      std::mt19937_64 rng(seed);
      frames.push_back(transform_image(raw[t], opts_.transform, rng));
    }
    s.frames = at::stack(frames);
    if (static_cast<size_t>(index) < captions_.size()) s.text = captions_[static_cast<size_t>(index)];
    return s;
  }

 private:
  std::vector<std::string> files_, captions_;
  DatasetOptions opts_;
};

}  // namespace

DatasetPtr make_caption_dataset(std::vector<CaptionRecord> records, DatasetOptions opts, std::string name) {
  return std::make_shared<CaptionDataset>(std::move(records), std::move(opts), std::move(name));
}
DatasetPtr make_vqa_dataset(std::vector<VqaRecord> records, AnswerVocab vocab, DatasetOptions opts) {
  return std::make_shared<VqaDataset>(std::move(records), std::move(vocab), std::move(opts));
}
DatasetPtr make_nlvr2_dataset(std::vector<Nlvr2Record> records, DatasetOptions opts) {
  return std::make_shared<Nlvr2Dataset>(std::move(records), std::move(opts));
}
DatasetPtr make_image_folder_dataset(const std::string& root, DatasetOptions opts) {
  auto idx = index_image_folder(root, opts.paths);
  return std::make_shared<ImageFolderDataset>(std::move(idx), std::move(opts));
}
DatasetPtr make_text_dataset(std::vector<std::string> lines) { return std::make_shared<TextDataset>(std::move(lines)); }
DatasetPtr make_point_cloud_dataset(std::vector<std::string> files, std::vector<std::string> captions,
                                    std::vector<int64_t> labels, DatasetOptions opts) {
  return std::make_shared<PointCloudDataset>(std::move(files), std::move(captions), std::move(labels), std::move(opts));
}
DatasetPtr make_video_dataset(std::vector<std::string> files, std::vector<std::string> captions, DatasetOptions opts) {
  return std::make_shared<VideoDataset>(std::move(files), std::move(captions), std::move(opts));
}

}  // namespace janus
