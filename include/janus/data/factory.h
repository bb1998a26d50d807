#pragma once
// Config-driven construction: data.format + a path -> Dataset, and Config -> LoaderOptions.
#include <cstdint>
#include <string>

#include "janus/core/config.h"
#include "janus/data/formats.h"
#include "janus/data/loader.h"

namespace janus {

// format (data.format values):
//   shapes      - a `janus_data shapes` directory; `split` picks captions_<split>.json (image + caption samples)
//   coco        - a COCO captions JSON; images under opts.image_root (default: the JSON's directory)
//   vqa         - a VQA v2 questions JSON; the annotations JSON is the same name with "questions" replaced by
//                 "annotations"; COCO image names, or Shapes names when the JSON sits in a Shapes directory
//   nlvr2       - an NLVR2 jsonl; images under opts.image_root (default: the file's directory, or the Shapes
//                 directory when the file sits in one)
//   imagefolder - a directory of class sub-folders
//   text        - a text corpus, one sentence per line
// VQA answers map into a vocabulary of the `answer_vocab` most frequent multiple-choice answers.
// With a `report`, malformed annotation entries are skipped and counted there (see EntryReport); without one they
// are errors.
DatasetPtr open_dataset(const std::string& format, const std::string& path, const std::string& split,
                        DatasetOptions opts, int64_t answer_vocab = 3129, EntryReport* report = nullptr);

// From the config: data.format, data.train / data.val, data.mean / data.std, model.image_size (resize short side +
// centre crop; random crop when `train`). No flips: Shapes captions and questions talk about left and right.
// Malformed annotation entries are skipped with a warning naming the count, up to data.max_bad_fraction of the
// entries (more: InputError naming the count); `report`, when given, receives the counts (for the run's summary).
DatasetPtr open_dataset(const Config& cfg, bool train, EntryReport* report = nullptr);

// data.batch_size, num_workers, prefetch, shuffle (train only), max_bad_fraction; train.seed; model.max_text_len.
LoaderOptions loader_options(const Config& cfg, int64_t rank = 0, int64_t world_size = 1, bool train = true);

}  // namespace janus
