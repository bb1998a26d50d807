#pragma once
// Umbrella header: everything a program linking libjanus needs.
#include "janus/core/allocator.h"
#include "janus/core/config.h"
#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/hash.h"
#include "janus/core/layers.h"
#include "janus/core/logging.h"
#include "janus/core/registry.h"
#include "janus/infer/pipeline.h"
#include "janus/infer/quantize.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"

namespace janus {
const char* version();
}  // namespace janus
