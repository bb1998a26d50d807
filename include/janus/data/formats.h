#pragma once
// Readers for real dataset formats. Annotation parsers return plain records; the *Dataset classes wrap them
// with the image pipeline. Every error names the file, the JSON path and what was expected, e.g.
//   captions.json: $.annotations[3].caption: expected a string, got number
// Files are untrusted: sizes and counts are capped (DataLimits) and relative paths may not leave their
// dataset root (via .. or symlinks) unless PathPolicy::allow_escape is set.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "janus/data/image.h"
#include "janus/data/sample.h"

namespace janus {

struct PathPolicy {
  bool allow_escape = false;
};
// root/rel, checked to stay inside root after resolving .. and symlinks (InputError otherwise). Absolute
// `rel` is only accepted with allow_escape.
std::string resolve_under(const std::string& root, const std::string& rel, const PathPolicy& policy = {});

// Malformed annotation entries. Without a report (nullptr) every problem is an InputError. With one, a problem
// confined to one entry (a missing or wrong-typed field, an id that matches nothing, a duplicate id, a VQA question
// left without a valid annotation, an unparsable jsonl line) skips that entry and is counted here; problems with the
// file as a whole (missing, too large, not JSON, no top-level array, too many records) still throw.
struct EntryReport {
  int64_t entries = 0;                // entries examined (images + annotations, questions + annotations, lines)
  int64_t skipped = 0;                // of which malformed and skipped
  std::vector<std::string> examples;  // the first few reasons (file: $.path: what)
  void skip(const std::string& why);
  void merge(const EntryReport& other);
  // InputError "<what>: 7 of 120 annotation entries were malformed, more than data.max_bad_fraction 0.05 (first:
  // ...)" when skipped > max_bad_fraction * entries; otherwise a warning naming the count when anything was skipped.
  void check(double max_bad_fraction, const std::string& what) const;
};

// ---- COCO captions (captions_*.json) and Karpathy splits (dataset_coco.json) ----
struct CaptionRecord {
  int64_t image_id = -1;
  std::string file;  // path relative to the image root
  std::string caption;
  int64_t caption_id = -1;
};
std::vector<CaptionRecord> load_coco_captions(const std::string& json_path, EntryReport* report = nullptr);
// Karpathy JSON: {"images": [{"filepath"?, "filename", "split", "cocoid"|"imgid", "sentences": [{"raw"}]}]}.
// `split` selects train/val/test/restval ("" = all); file = filepath/filename.
std::vector<CaptionRecord> load_karpathy(const std::string& json_path, const std::string& split);

// ---- VQA v2 ----
struct VqaRecord {
  int64_t question_id = -1;
  int64_t image_id = -1;
  std::string file;  // image path relative to the image root
  std::string question;
  std::vector<std::string> answers;  // the 10 answers ("" list when loaded without annotations)
  std::string multiple_choice_answer;
  std::string answer_type;
  std::string question_type;
};
// Questions JSON {"data_subtype", "questions": [{image_id, question, question_id}]} and optional annotations
// JSON {"annotations": [{question_id, image_id, answer_type, multiple_choice_answer, answers: [10 x {answer}]}]}.
// Image file names come from `image_pattern` with {subtype} (the questions' data_subtype), {id} (image id)
// and {id12} (image id zero-padded to 12 digits); COCO's is the default.
std::vector<VqaRecord> load_vqa(const std::string& questions_json, const std::string& annotations_json,
                                const std::string& image_pattern = "COCO_{subtype}_{id12}.jpg",
                                EntryReport* report = nullptr);

// Answer vocabulary: the `top_k` most frequent answers (0 = all with count >= min_count), ordered by count
// descending then alphabetically. Counts every one of the 10 answers when `all_answers`, else the
// multiple_choice_answer.
struct AnswerVocab {
  std::vector<std::string> answers;
  std::vector<int64_t> counts;
  std::map<std::string, int64_t> index;
  int64_t id(const std::string& answer) const;  // -1 when absent
};
AnswerVocab build_answer_vocab(const std::vector<VqaRecord>& records, int64_t top_k, int64_t min_count = 1,
                               bool all_answers = false);
// Lower-case and trim (the full official normalisation is the eval module's job).
std::string normalize_answer(const std::string& answer);

// ---- NLVR2 (jsonl) ----
struct Nlvr2Record {
  std::string identifier;
  std::string left;  // image paths relative to the image root
  std::string right;
  std::string sentence;
  int64_t label = -1;  // 1 True, 0 False
};
// One JSON object per line: identifier, sentence, label ("True"/"False" or bool), and either left_image/
// right_image (relative paths) or, as in the official release, images named from the identifier:
// "split-set-pair-sent" -> "split-set-pair-img0.png" / "-img1.png".
std::vector<Nlvr2Record> load_nlvr2(const std::string& jsonl_path, EntryReport* report = nullptr);

// ---- plain text, image folders, point clouds ----
// One sentence per non-empty line (trailing \r removed).
std::vector<std::string> load_text_corpus(const std::string& path);

struct ImageFolderIndex {
  std::vector<std::string> classes;  // sorted sub-folder names
  std::vector<std::string> files;    // absolute paths
  std::vector<int64_t> labels;
};
// root/<class>/<image>; files with image extensions (png jpg jpeg bmp ppm pgm webp tif tiff), sorted.
ImageFolderIndex index_image_folder(const std::string& root, const PathPolicy& policy = {});

// PLY (ascii, binary_little_endian; vertex x/y/z of any numeric type) or .xyz (x y z per line) -> float [N, 3].
// Throws BadSampleError naming the file on malformed input.
at::Tensor read_point_cloud(const std::string& path);
void write_ply_binary(const std::string& path, const at::Tensor& points);

// ---- datasets ----
struct DatasetOptions {
  std::string image_root;  // root that relative image paths resolve under
  ImageTransform transform;
  PathPolicy paths;
  int64_t num_points = 1024;  // point datasets: points per sample
  int64_t num_frames = 8;     // video datasets: frames per sample
};

// Each caption record is one sample (image + caption).
DatasetPtr make_caption_dataset(std::vector<CaptionRecord> records, DatasetOptions opts, std::string name);
// Question + image + answers; answer_id from `vocab` (may be empty).
DatasetPtr make_vqa_dataset(std::vector<VqaRecord> records, AnswerVocab vocab, DatasetOptions opts);
DatasetPtr make_nlvr2_dataset(std::vector<Nlvr2Record> records, DatasetOptions opts);
DatasetPtr make_image_folder_dataset(const std::string& root, DatasetOptions opts);
DatasetPtr make_text_dataset(std::vector<std::string> lines);
// files[i] relative to image_root (point cloud files), with captions and labels (may be empty / -1).
DatasetPtr make_point_cloud_dataset(std::vector<std::string> files, std::vector<std::string> captions,
                                    std::vector<int64_t> labels, DatasetOptions opts);
// files[i]: frame folder or video file relative to image_root.
DatasetPtr make_video_dataset(std::vector<std::string> files, std::vector<std::string> captions, DatasetOptions opts);

}  // namespace janus
