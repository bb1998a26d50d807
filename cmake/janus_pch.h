// Precompiled header: the heavy, stable third-party headers every translation unit pulls in.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <fmt/format.h>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
