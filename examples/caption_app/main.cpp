// caption_app: a program outside the libjanus tree, using only its installed public API.
// For now it proves the package links and works: builds a registered module, round-trips its weights through
// safetensors and runs it. It grows into load-a-run / caption / answer as janus::Pipeline lands.
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <janus/janus.h>

int main(int argc, char** argv) {
  const bool self_test = argc > 1 && std::strcmp(argv[1], "--self-test") == 0;
  janus::init_logging("warn");
  try {
    auto& reg = janus::ModuleRegistry::global();
    auto m = reg.build("mlp", {{"in_features", 8}, {"hidden_features", 16}});
    const auto path = (std::filesystem::temp_directory_path() / "caption_app_mlp.safetensors").string();
    janus::save_module(*m.module, path, {{"app", "caption_app"}});
    auto m2 = reg.build("mlp", {{"in_features", 8}, {"hidden_features", 16}});
    janus::load_module(*m2.module, path);
    const auto x = at::randn({2, 8});
    const auto a = reg.run("mlp", m, {{"x", x}}).at("y");
    const auto b = reg.run("mlp", m2, {{"x", x}}).at("y");
    std::filesystem::remove(path);
    const bool same = at::equal(a, b);
    std::printf("libjanus %s: %zu registered modules, weights round-trip %s\n", janus::version(), reg.names().size(),
                same ? "ok" : "FAILED");
    return same || !self_test ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "caption_app: %s\n", e.what());
    return 1;
  }
}
