#pragma once
// The dataset abstraction every loader and the trainer share: a Dataset returns Samples by index; a Sample
// carries whatever modalities its format has (images, text, answers, label, points, frames).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "janus/core/error.h"

namespace janus {

// One training/eval example. Fields a format does not have stay empty (undefined tensors, empty strings,
// label -1).
struct Sample {
  int64_t index = -1;                    // position in the dataset
  std::string id;                        // stable identifier from the source (image id, question id, ...)
  std::vector<std::string> image_paths;  // source files (for logging / eval)
  std::vector<at::Tensor> images;        // each float [3, H, W] after the image transform (NLVR2: two)
  std::string text;                      // caption, question, statement or corpus line
  std::vector<int64_t> token_ids;        // filled by the loader when it has a tokenizer
  std::vector<std::string> answers;      // VQA: the 10 human answers
  std::string answer;                    // VQA: multiple_choice_answer
  std::string answer_type;               // VQA: yes/no, number, other
  std::string question_type;             // VQA: the annotation's question_type (e.g. "what color is the"), may be ""
  int64_t answer_id = -1;                // VQA: index in the answer vocabulary (-1: not in it)
  int64_t label = -1;                    // class (image folder), NLVR2 truth (0/1), shape class (points)
  at::Tensor points;                     // float [N, 3]
  at::Tensor frames;                     // float [T, 3, H, W]
};

// A sample that cannot be read (missing, corrupt or unsupported file). The loader skips and counts these.
class BadSampleError : public InputError {
 public:
  using InputError::InputError;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Must be thread-safe. `seed` drives any random augmentation, so a sample depends only on (index, seed).
  // Throws BadSampleError for an unreadable sample.
  virtual Sample get(int64_t index, uint64_t seed) const = 0;
  virtual std::string name() const = 0;
};

using DatasetPtr = std::shared_ptr<const Dataset>;

}  // namespace janus
