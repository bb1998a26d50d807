#pragma once
// Freeze rules by module-path glob. A rule matches a parameter when the glob matches its full name
// ("encoders.vision.blocks.0.attn.qkv.weight") or any dotted prefix of it ("encoders.vision"), so both
// "encoders.vision" and "encoders.vision.*" freeze the whole vision encoder. Glob syntax: `*` any run of
// characters (dots included), `?` one character, everything else literal.
#include <string>
#include <vector>

#include <torch/nn/module.h>

namespace janus::train {

bool glob_match(const std::string& pattern, const std::string& text);
bool matches_path(const std::string& pattern, const std::string& param_name);

// Sets requires_grad=false on every parameter matched by any rule; returns the frozen names. A rule that matches
// nothing is an InputError naming it (a typo would otherwise silently train everything).
std::vector<std::string> apply_freeze(torch::nn::Module& module, const std::vector<std::string>& rules);

}  // namespace janus::train
