#pragma once
// SentencePiece tokenizer with fixed special-token ids:
//   pad = 0, unk = 1, bos = 2, eos = 3, <mask> = 4, <image_start> = 5, <image_end> = 6.
// (pad/unk/bos/eos via the trainer's *_id flags; the other three as user-defined symbols, so they get ids
// 4, 5, 6 and the literal strings "<mask>", "<image_start>", "<image_end>" in text map to them.)
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace janus {

struct SpecialTokens {
  static constexpr int64_t pad = 0;
  static constexpr int64_t unk = 1;
  static constexpr int64_t bos = 2;
  static constexpr int64_t eos = 3;
  static constexpr int64_t mask = 4;
  static constexpr int64_t image_start = 5;
  static constexpr int64_t image_end = 6;
};

struct TokenizerTrainOptions {
  int64_t vocab_size = 1000;
  std::string model_type = "unigram";  // unigram, bpe, char, word
  double character_coverage = 1.0;
  int64_t max_sentences = 2000000;
  uint64_t seed = 0;  // SentencePiece sampling is seeded for reproducible models
};

struct TokenBatch {
  at::Tensor ids;             // int64 [B, L], padded with pad
  at::Tensor attention_mask;  // int64 [B, L], 1 for real tokens
};

class Tokenizer {
 public:
  // Trains on a text file (one sentence per line) and writes DIR/tokenizer.model and DIR/tokenizer.vocab.
  // Returns the model path.
  static std::string train(const std::string& corpus, const std::string& out_dir,
                           const TokenizerTrainOptions& opts = {});
  // Loads a .model file, or DIR/tokenizer.model; checks the special-token ids (InputError otherwise).
  static Tokenizer load(const std::string& path);

  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  int64_t vocab_size() const;
  // Thread-safe. max_len > 0 truncates (keeping eos when add_eos).
  std::vector<int64_t> encode(const std::string& text, bool add_bos = true, bool add_eos = true,
                              int64_t max_len = 0) const;
  // Special tokens (pad/bos/eos/...) are dropped.
  std::string decode(const std::vector<int64_t>& ids) const;
  std::string id_to_piece(int64_t id) const;
  int64_t piece_to_id(const std::string& piece) const;
  // Pads to the longest (or to max_len when pad_to_max) with pad = 0.
  TokenBatch encode_batch(const std::vector<std::string>& texts, int64_t max_len, bool pad_to_max = false,
                          bool add_bos = true, bool add_eos = true) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Pads token lists: ids [B, L] (pad = 0) and mask [B, L].
TokenBatch pad_tokens(const std::vector<std::vector<int64_t>>& seqs, int64_t pad_to = 0);

}  // namespace janus
