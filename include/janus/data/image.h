#pragma once
// Image pipeline on top of OpenCV: decode, resize the short side, center/random crop, flip, normalise, to
// float tensors [3, H, W]; video frame sampling; point sampling/normalisation. No OpenCV type appears here:
// images cross the API as uint8 tensors [H, W, 3] in RGB order.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace janus {

// Hard limits for untrusted files.
struct DataLimits {
  static constexpr int64_t max_image_file_bytes = 256LL << 20;
  static constexpr int64_t max_image_pixels = 1LL << 28;  // 16k x 16k
  static constexpr int64_t max_json_bytes = 4LL << 30;
  static constexpr int64_t max_records = 100000000;
  static constexpr int64_t max_points = 50000000;
  static constexpr int64_t max_video_frames = 100000;
};

// Decodes an image file (any format OpenCV reads) to uint8 [H, W, 3] RGB. Throws BadSampleError naming the
// file when it is missing, too large or not decodable.
at::Tensor decode_image_file(const std::string& path);
// Decodes encoded bytes (PNG/JPEG/...) the same way; `what` names the source in errors.
at::Tensor decode_image_bytes(const std::string& bytes, const std::string& what);
// Encodes uint8 [H, W, 3] RGB to a file; the extension picks the format (png, jpg, ...).
void write_image_file(const std::string& path, const at::Tensor& rgb_u8);

struct ImageTransform {
  int64_t resize_short = 0;  // resize so the short side has this length (0: keep)
  int64_t crop = 0;          // square crop side (0: no crop)
  bool random_crop = false;  // random instead of center crop
  bool random_flip = false;  // horizontal flip with p = 0.5
  std::vector<double> mean{0.5, 0.5, 0.5};
  std::vector<double> std{0.5, 0.5, 0.5};
};

// uint8 [H, W, 3] RGB -> float [3, H', W'] ((x/255 - mean) / std). `rng` is used only for random choices.
at::Tensor transform_image(const at::Tensor& rgb_u8, const ImageTransform& t, std::mt19937_64& rng);

// Reads frames of a video: `path` is a directory of image files (sorted by name) or a video file read with
// OpenCV's VideoCapture. Returns `num_frames` frames uint8 [T, H, W, 3], evenly spaced over the clip
// (stride sampling; num_frames <= 0 means all frames). Throws BadSampleError on unreadable input.
at::Tensor read_video_frames(const std::string& path, int64_t num_frames);
// Writes uint8 [T, H, W, 3] RGB frames as an MJPG .avi (OpenCV's built-in writer; no codec libraries needed).
void write_video_file(const std::string& path, const at::Tensor& frames_u8, double fps = 10.0);
// Indices of `num_frames` evenly spaced frames in a clip of `total` frames (repeats the last if total is short).
std::vector<int64_t> sample_frame_indices(int64_t total, int64_t num_frames);

// Points: float [N, 3] -> exactly `n` points (random subset without replacement, or with replacement when
// N < n), centred at the centroid and scaled into the unit sphere.
at::Tensor sample_points(const at::Tensor& points, int64_t n, std::mt19937_64& rng);
at::Tensor normalize_points(const at::Tensor& points);

}  // namespace janus
