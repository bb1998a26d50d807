// janus_module registry entries for the router area (dynamic router, adapter).
#include <nlohmann/json.hpp>

#include "janus/core/registry.h"
#include "janus/router/adapter.h"
#include "janus/router/dynamic_router.h"

namespace janus {
namespace {

JANUS_REGISTER_MODULE(ModuleEntry{
    "dynamic_router",
    "out = sigmoid(gate(x)) * proj[modality_id](x); modalities 0 image, 1 video, 2 point_cloud, 3 text",
    {{"in_dim", "int", nullptr, "input width", true},
     {"out_dim", "int", nullptr, "output width", true},
     {"num_modalities", "int", kNumModalities, "one projection per modality"},
     {"shared", "bool", false, "ablation: one plain Linear for every modality, no gate"}},
    {{"x", "[B, (L,) in_dim] float"}, {"modality_id", "[B] int64"}},
    {{"y", "[B, (L,) out_dim] float"}},
    [](const nlohmann::json& o) {
      auto m = DynamicRouter(DynamicRouterOptions(o["in_dim"].get<int64_t>(), o["out_dim"].get<int64_t>())
                                 .num_modalities(o["num_modalities"].get<int64_t>())
                                 .shared(o["shared"].get<bool>()));
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              return TensorMap{{"y", m->forward(in.at("x"), in.at("modality_id"))}};
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "adapter",
    "residual bottleneck x + up(gelu(down(x))), up zero-initialised (identity at init)",
    {{"dim", "int", nullptr, "width", true}, {"bottleneck", "int", nullptr, "bottleneck width", true}},
    {{"x", "[*, dim] float"}},
    {{"y", "[*, dim] float"}},
    [](const nlohmann::json& o) {
      auto m = Adapter(AdapterOptions(o["dim"].get<int64_t>(), o["bottleneck"].get<int64_t>()));
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              return TensorMap{{"y", m->forward(in.at("x"))}};
                            }};
    }});

}  // namespace
}  // namespace janus
