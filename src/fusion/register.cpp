// janus_module entries for the fusion area.
#include <nlohmann/json.hpp>

#include "janus/core/registry.h"
#include "janus/fusion/attention.h"
#include "janus/fusion/fusion.h"

namespace janus {

namespace {
std::optional<at::Tensor> optional_mask(const TensorMap& in) {
  auto it = in.find("key_mask");
  if (it == in.end()) return std::nullopt;
  return it->second.ne(0);
}

const TensorSpec kKeyMask{"key_mask", "[B, L] bool/int, nonzero = real token", true};

DualStreamFusionOptions block_options(const nlohmann::json& o) {
  return DualStreamFusionOptions(o["dim"].get<int64_t>(), o["num_heads"].get<int64_t>())
      .mlp_ratio(o["mlp_ratio"].get<double>())
      .act(o["act"].get<std::string>())
      .causal(o["causal"].get<bool>())
      .block_size(o["block_size"].get<int64_t>())
      .density(o["density"].get<double>())
      .window(o["window"].get<int64_t>())
      .num_global(o["num_global"].get<int64_t>())
      .seed(o["seed"].get<int64_t>())
      .bucket_size(o["bucket_size"].get<int64_t>())
      .n_hashes(o["n_hashes"].get<int64_t>())
      .chunk(o["chunk"].get<int64_t>())
      .dense(o["dense"].get<bool>());
}

std::vector<OptionSpec> block_option_specs(bool with_depth) {
  std::vector<OptionSpec> s{{"dim", "int", nullptr, "model width D", true},
                            {"num_heads", "int", nullptr, "heads per stream (D % heads == 0)", true},
                            {"mlp_ratio", "float", 4.0, "MLP hidden = D * mlp_ratio"},
                            {"act", "string", "gelu", "MLP activation"},
                            {"causal", "bool", false, "causal variant (exact causal generation stream, KV cache)"},
                            {"block_size", "int", 64, "block-sparse block size"},
                            {"density", "float", 0.3, "block-sparse density"},
                            {"window", "int", 1, "block-sparse sliding window (blocks each side)"},
                            {"num_global", "int", 1, "block-sparse global key blocks"},
                            {"seed", "int", 0, "random blocks / LSH rotations seed (block i: seed + i)"},
                            {"bucket_size", "int", 64, "LSH bucket size"},
                            {"n_hashes", "int", 4, "LSH hash rounds"},
                            {"chunk", "int", 1024, "chunk of the exact causal attention"},
                            {"dense", "bool", false, "plain transformer block (one exact attention, no gate)"}};
  if (with_depth) s.push_back({"depth", "int", 2, "number of blocks"});
  return s;
}
}  // namespace

JANUS_REGISTER_MODULE(ModuleEntry{
    "block_sparse_attention",
    "block-sparse softmax attention (sliding window + global + random blocks), gathered blocks only",
    {{"block_size", "int", 64, "block size"},
     {"density", "float", 0.3, "fraction of (query block, key block) pairs kept"},
     {"window", "int", 1, "sliding window (blocks each side)"},
     {"num_global", "int", 1, "global key blocks"},
     {"seed", "int", 0, "random-block seed"},
     {"causal", "bool", false, "causal mask"}},
    {{"q", "[B, H, L, d] float"}, {"k", "[B, H, L, d] float"}, {"v", "[B, H, L, d] float"}, kKeyMask},
    {{"y", "[B, H, L, d] float"}},
    [](const nlohmann::json& o) {
      auto m = BlockSparseAttention(BlockSparseAttentionOptions()
                                        .block_size(o["block_size"].get<int64_t>())
                                        .density(o["density"].get<double>())
                                        .window(o["window"].get<int64_t>())
                                        .num_global(o["num_global"].get<int64_t>())
                                        .seed(o["seed"].get<int64_t>())
                                        .causal(o["causal"].get<bool>()));
      return RunnableModule{
          m.ptr(), [m](const TensorMap& in) mutable {
            return TensorMap{{"y", m->forward(in.at("q"), in.at("k"), in.at("v"), optional_mask(in))}};
          }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "chunked_attention",
    "exact softmax attention in query/key chunks with an online softmax (bounded memory)",
    {{"query_chunk", "int", 512, "query chunk"},
     {"key_chunk", "int", 512, "key chunk"},
     {"causal", "bool", false, "causal mask (last query aligned with last key)"}},
    {{"q", "[B, H, Lq, d] float"}, {"k", "[B, H, Lk, d] float"}, {"v", "[B, H, Lk, d] float"}, kKeyMask},
    {{"y", "[B, H, Lq, d] float"}},
    [](const nlohmann::json& o) {
      auto m = ChunkedAttention(ChunkedAttentionOptions()
                                    .query_chunk(o["query_chunk"].get<int64_t>())
                                    .key_chunk(o["key_chunk"].get<int64_t>())
                                    .causal(o["causal"].get<bool>()));
      return RunnableModule{
          m.ptr(), [m](const TensorMap& in) mutable {
            return TensorMap{{"y", m->forward(in.at("q"), in.at("k"), in.at("v"), optional_mask(in))}};
          }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "lsh_attention",
    "Reformer shared-QK LSH attention (reformer-pytorch 1.4.4 semantics); optional injected rotations",
    {{"bucket_size", "int", 64, "bucket size (L % (2*bucket_size) == 0)"},
     {"n_hashes", "int", 4, "hash rounds"},
     {"causal", "bool", false, "causal mask"},
     {"seed", "int", 0, "rotation generator seed"}},
    {{"qk", "[B, H, L, d] float"},
     {"v", "[B, H, L, d] float"},
     kKeyMask,
     {"rotations", "[d, n_hashes, L / bucket_size / 2] float", true}},
    {{"y", "[B, H, L, d] float"}},
    [](const nlohmann::json& o) {
      auto m = LSHAttention(LSHAttentionOptions()
                                .bucket_size(o["bucket_size"].get<int64_t>())
                                .n_hashes(o["n_hashes"].get<int64_t>())
                                .causal(o["causal"].get<bool>())
                                .seed(o["seed"].get<int64_t>()));
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              auto r = in.find("rotations");
                              if (r != in.end()) m->set_rotations(r->second);
                              return TensorMap{{"y", m->forward(in.at("qk"), in.at("v"), optional_mask(in))}};
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "dual_stream_fusion",
    "pre-LN block: gate*BlockSparse + (1-gate)*LSH streams, then MLP (causal: exact causal generation stream)",
    block_option_specs(false),
    {{"x", "[B, L, D] float"}, kKeyMask},
    {{"y", "[B, L, D] float"}},
    [](const nlohmann::json& o) {
      auto m = DualStreamFusion(block_options(o));
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              return TensorMap{{"y", m->forward(in.at("x"), optional_mask(in))}};
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "fusion_transformer",
    "depth DualStreamFusion blocks + final LayerNorm",
    block_option_specs(true),
    {{"x", "[B, L, D] float"}, kKeyMask},
    {{"y", "[B, L, D] float"}},
    [](const nlohmann::json& o) {
      FusionTransformerOptions opt(o["dim"].get<int64_t>(), o["num_heads"].get<int64_t>(), o["depth"].get<int64_t>());
      opt.block(block_options(o));
      auto m = FusionTransformer(opt);
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              return TensorMap{{"y", m->forward(in.at("x"), optional_mask(in))}};
                            }};
    }});

}  // namespace janus
