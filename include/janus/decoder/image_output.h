#pragma once
// Decoded images to files: float [-1, 1] -> uint8 -> PNG through OpenCV, and a grid writer for sample sheets.
#include <cstdint>
#include <string>

#include <ATen/ATen.h>

namespace janus {

// [B, C, H, W] or [C, H, W] float in [-1, 1] (clamped) -> uint8 [B, H, W, C] / [H, W, C] on CPU.
at::Tensor to_uint8_image(const at::Tensor& img);
// Writes one image [C, H, W] float in [-1, 1] (C = 1 or 3, RGB order) as PNG. Error with the path on failure.
void write_png(const std::string& path, const at::Tensor& img);
// Tiles [B, C, H, W] images into rows of `nrow` with `padding` pixels of `pad_value` (in [-1, 1]) and writes PNG.
// Returns the grid [C, H', W'] (float) that was written.
at::Tensor write_image_grid(const std::string& path, const at::Tensor& images, int64_t nrow = 8, int64_t padding = 2,
                            double pad_value = 1.0);
// Reads a PNG back as float [C, H, W] in [-1, 1] (RGB order), for tests and round trips.
at::Tensor read_png(const std::string& path);

}  // namespace janus
