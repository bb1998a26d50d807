#pragma once
// janus_serve's models: thin ModelHandler adapters over janus::Pipeline (docs/serving.md lists the tensors).
//
//   caption      image BYTES [n]                     -> caption BYTES [n]
//   vqa          image BYTES [n], question BYTES [n] -> answer BYTES [n], score FP32 [n]
//   embed_text   text BYTES [n]                      -> embedding FP32 [n, E]   (l2-normalised)
//   embed_image  image BYTES [n]                     -> embedding FP32 [n, E]   (l2-normalised)
//   generate     prompt BYTES [n]                    -> images UINT8 [n, H, W, 3] (one image per prompt)
//                request parameters (optional): seed, cfg_scale, temperature, top_k, top_p
//
// Images are encoded files (PNG/JPEG/...): raw bytes in a binary tensor, base64 text in a JSON tensor (JSON strings
// must be UTF-8). They are decoded on the HTTP thread, so one bad image fails only its own request.
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "janus/infer/server.h"

namespace janus {
class Pipeline;
}

namespace janus::serve {

// Every model name janus_serve knows, in a fixed order.
std::vector<std::string> pipeline_model_names();
// The handler for `name` over a shared Pipeline. InputError for an unknown name or a model the run cannot serve
// (vqa without a VQA head).
std::shared_ptr<ModelHandler> make_pipeline_handler(const std::string& name, std::shared_ptr<Pipeline> pipeline);

// Decodes one image element (raw bytes when `binary`, else base64) to uint8 [H, W, 3]; InputError naming `what`.
at::Tensor decode_request_image(const std::string& element, bool binary, const std::string& what);

}  // namespace janus::serve
