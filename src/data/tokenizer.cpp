#include "janus/data/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "janus/core/error.h"

namespace fs = std::filesystem;

namespace janus {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

namespace {
const char* kUserSymbols[] = {"<mask>", "<image_start>", "<image_end>"};
}

std::string Tokenizer::train(const std::string& corpus, const std::string& out_dir, const TokenizerTrainOptions& o) {
  std::error_code ec;
  if (!fs::is_regular_file(corpus, ec)) throw InputError(fmt::format("{}: corpus file not found", corpus));
  if (o.vocab_size < 8) throw InputError(fmt::format("tokenizer vocab size {} too small (>= 8)", o.vocab_size));
  fs::create_directories(out_dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create directory: {}", out_dir, ec.message()));
  const std::string prefix = (fs::path(out_dir) / "tokenizer").string();
  // SentencePiece's training is single-process global state; serialise concurrent calls.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(o.seed));
  std::unordered_map<std::string, std::string> kw{
      {"input", corpus},
      {"model_prefix", prefix},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"input_sentence_size", std::to_string(o.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"hard_vocab_limit", "false"},
      {"pad_id", std::to_string(SpecialTokens::pad)},
      {"unk_id", std::to_string(SpecialTokens::unk)},
      {"bos_id", std::to_string(SpecialTokens::bos)},
      {"eos_id", std::to_string(SpecialTokens::eos)},
      {"pad_piece", "<pad>"},
      {"unk_piece", "<unk>"},
      {"bos_piece", "<s>"},
      {"eos_piece", "</s>"},
      {"user_defined_symbols", "<mask>,<image_start>,<image_end>"},
      {"num_threads", "1"},
      {"minloglevel", "2"},
  };
  const auto st = sentencepiece::SentencePieceTrainer::Train(kw);
  if (!st.ok()) throw InputError(fmt::format("{}: tokenizer training failed: {}", corpus, st.ToString()));
  return prefix + ".model";
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::string& path) {
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "tokenizer.model").string();
  if (!fs::is_regular_file(file, ec)) throw InputError(fmt::format("{}: tokenizer model not found", file));
  Tokenizer t;
  const auto st = t.impl_->sp.Load(file);
  if (!st.ok()) throw InputError(fmt::format("{}: not a SentencePiece model: {}", file, st.ToString()));
  const auto& sp = t.impl_->sp;
  auto expect = [&](int64_t id, int got, const char* what) {
    if (got != id) {
      throw InputError(fmt::format("{}: expected {} id {}, the model has {} (train with janus_data tokenizer train)",
                                   file, what, id, got));
    }
  };
  expect(SpecialTokens::pad, sp.pad_id(), "pad");
  expect(SpecialTokens::unk, sp.unk_id(), "unk");
  expect(SpecialTokens::bos, sp.bos_id(), "bos");
  expect(SpecialTokens::eos, sp.eos_id(), "eos");
  expect(SpecialTokens::mask, sp.PieceToId(kUserSymbols[0]), "<mask>");
  expect(SpecialTokens::image_start, sp.PieceToId(kUserSymbols[1]), "<image_start>");
  expect(SpecialTokens::image_end, sp.PieceToId(kUserSymbols[2]), "<image_end>");
  return t;
}

int64_t Tokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_bos, bool add_eos, int64_t max_len) const {
  std::vector<int> ids;
  const auto st = impl_->sp.Encode(text, &ids);
  if (!st.ok()) throw InputError(fmt::format("tokenizer: cannot encode text: {}", st.ToString()));
  std::vector<int64_t> out;
  out.reserve(ids.size() + 2);
  if (add_bos) out.push_back(SpecialTokens::bos);
  for (int i : ids) out.push_back(i);
  if (max_len > 0 && static_cast<int64_t>(out.size()) + (add_eos ? 1 : 0) > max_len) {
    out.resize(static_cast<size_t>(std::max<int64_t>(0, max_len - (add_eos ? 1 : 0))));
  }
  if (add_eos) out.push_back(SpecialTokens::eos);
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int> keep;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw InputError(fmt::format("tokenizer: id {} outside [0, {})", id, vocab_size()));
    if (id <= SpecialTokens::image_end && id != SpecialTokens::unk) continue;
    keep.push_back(static_cast<int>(id));
  }
  std::string text;
  const auto st = impl_->sp.Decode(keep, &text);
  if (!st.ok()) throw InputError(fmt::format("tokenizer: cannot decode: {}", st.ToString()));
  return text;
}

std::string Tokenizer::id_to_piece(int64_t id) const {
  if (id < 0 || id >= vocab_size()) throw InputError(fmt::format("tokenizer: id {} outside [0, {})", id, vocab_size()));
  return impl_->sp.IdToPiece(static_cast<int>(id));
}

int64_t Tokenizer::piece_to_id(const std::string& piece) const { return impl_->sp.PieceToId(piece); }

TokenBatch Tokenizer::encode_batch(const std::vector<std::string>& texts, int64_t max_len, bool pad_to_max,
                                   bool add_bos, bool add_eos) const {
  std::vector<std::vector<int64_t>> seqs;
  seqs.reserve(texts.size());
  for (const auto& t : texts) seqs.push_back(encode(t, add_bos, add_eos, max_len));
  return pad_tokens(seqs, pad_to_max ? max_len : 0);
}

TokenBatch pad_tokens(const std::vector<std::vector<int64_t>>& seqs, int64_t pad_to) {
  int64_t L = pad_to;
  for (const auto& s : seqs) L = std::max<int64_t>(L, static_cast<int64_t>(s.size()));
  const int64_t B = static_cast<int64_t>(seqs.size());
  TokenBatch b;
  b.ids = at::full({B, L}, SpecialTokens::pad, at::kLong);
  b.attention_mask = at::zeros({B, L}, at::kLong);
  auto ids = b.ids.accessor<int64_t, 2>();
  auto m = b.attention_mask.accessor<int64_t, 2>();
  for (int64_t i = 0; i < B; ++i) {
    const auto& s = seqs[static_cast<size_t>(i)];
    for (size_t j = 0; j < s.size(); ++j) {
      ids[i][static_cast<int64_t>(j)] = s[j];
      m[i][static_cast<int64_t>(j)] = 1;
    }
  }
  return b;
}

}  // namespace janus
