#include "janus/data/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "janus/core/error.h"
#include "janus/data/sample.h"

namespace fs = std::filesystem;

namespace janus {
namespace {

at::Tensor mat_to_tensor(const cv::Mat& bgr) {
  cv::Mat rgb;
  if (bgr.channels() == 1) {
    cv::cvtColor(bgr, rgb, cv::COLOR_GRAY2RGB);
  } else if (bgr.channels() == 4) {
    cv::cvtColor(bgr, rgb, cv::COLOR_BGRA2RGB);
  } else {
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  }
  if (!rgb.isContinuous()) rgb = rgb.clone();
  auto t = at::empty({rgb.rows, rgb.cols, 3}, at::kByte);
  std::memcpy(t.data_ptr<uint8_t>(), rgb.data, static_cast<size_t>(rgb.rows) * rgb.cols * 3);
  return t;
}

cv::Mat tensor_to_mat_rgb(const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 3 && t.size(2) == 3 && t.scalar_type() == at::kByte, "image: expected uint8 [H, W, 3], got ",
              t.sizes(), " ", t.scalar_type());
  auto c = t.contiguous();
  cv::Mat m(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), CV_8UC3, c.data_ptr<uint8_t>());
  return m.clone();
}

bool is_image_ext(const std::string& ext) {
  std::string e = ext;
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".ppm" || e == ".pgm" || e == ".webp" ||
         e == ".tif" || e == ".tiff";
}

}  // namespace

at::Tensor decode_image_bytes(const std::string& bytes, const std::string& what) {
  if (bytes.empty()) throw BadSampleError(fmt::format("{}: empty image file", what));
  cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
  cv::Mat img;
  try {
    img = cv::imdecode(buf, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw BadSampleError(fmt::format("{}: cannot decode image: {}", what, e.what()));
  }
  if (img.empty()) throw BadSampleError(fmt::format("{}: not a decodable image", what));
  if (static_cast<int64_t>(img.rows) * img.cols > DataLimits::max_image_pixels) {
    throw BadSampleError(fmt::format("{}: image of {}x{} pixels exceeds the limit", what, img.cols, img.rows));
  }
  return mat_to_tensor(img);
}

at::Tensor decode_image_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw BadSampleError(fmt::format("{}: image file not found", path));
  const auto size = fs::file_size(path, ec);
  if (ec) throw BadSampleError(fmt::format("{}: cannot stat image: {}", path, ec.message()));
  if (static_cast<int64_t>(size) > DataLimits::max_image_file_bytes) {
    throw BadSampleError(fmt::format("{}: image file of {} bytes exceeds the limit", path, size));
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes(size, '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size))) {
    throw BadSampleError(fmt::format("{}: cannot read image file", path));
  }
  return decode_image_bytes(bytes, path);
}

void write_image_file(const std::string& path, const at::Tensor& rgb_u8) {
  cv::Mat rgb = tensor_to_mat_rgb(rgb_u8), bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  const auto parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  bool ok = false;
  try {
    ok = cv::imwrite(path, bgr);
  } catch (const cv::Exception& e) {
    throw Error(fmt::format("{}: cannot write image: {}", path, e.what()));
  }
  if (!ok) throw Error(fmt::format("{}: cannot write image", path));
}

at::Tensor transform_image(const at::Tensor& rgb_u8, const ImageTransform& t, std::mt19937_64& rng) {
  TORCH_CHECK(t.mean.size() == 3 && t.std.size() == 3, "transform_image: mean and std need 3 values");
  cv::Mat img = tensor_to_mat_rgb(rgb_u8);
  if (t.resize_short > 0) {
    const int h = img.rows, w = img.cols;
    const double s = static_cast<double>(t.resize_short) / std::min(h, w);
    const int nh = std::max<int>(1, static_cast<int>(std::lround(h * s)));
    const int nw = std::max<int>(1, static_cast<int>(std::lround(w * s)));
    if (nh != h || nw != w) {
      cv::Mat r;
      cv::resize(img, r, cv::Size(nw, nh), 0, 0, s < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
      img = r;
    }
  }
  if (t.crop > 0) {
    const int c = static_cast<int>(t.crop);
    if (img.rows < c || img.cols < c) {  // too small: scale up so the crop fits
      const double s = static_cast<double>(c) / std::min(img.rows, img.cols);
      cv::Mat r;
      cv::resize(img, r,
                 cv::Size(std::max(c, static_cast<int>(std::ceil(img.cols * s))),
                          std::max(c, static_cast<int>(std::ceil(img.rows * s)))),
                 0, 0, cv::INTER_LINEAR);
      img = r;
    }
    int y0 = (img.rows - c) / 2, x0 = (img.cols - c) / 2;
    if (t.random_crop) {
      y0 = static_cast<int>(std::uniform_int_distribution<int>(0, img.rows - c)(rng));
      x0 = static_cast<int>(std::uniform_int_distribution<int>(0, img.cols - c)(rng));
    }
    img = img(cv::Rect(x0, y0, c, c)).clone();
  }
  if (t.random_flip && std::uniform_int_distribution<int>(0, 1)(rng) == 1) {
    cv::Mat f;
    cv::flip(img, f, 1);
    img = f;
  }
  cv::Mat fimg;
  img.convertTo(fimg, CV_32FC3, 1.0 / 255.0);
  auto hwc = at::from_blob(fimg.data, {fimg.rows, fimg.cols, 3}, at::kFloat);
  auto chw = hwc.permute({2, 0, 1}).clone();
  auto mean = at::tensor(std::vector<float>(t.mean.begin(), t.mean.end())).view({3, 1, 1});
  auto stdv = at::tensor(std::vector<float>(t.std.begin(), t.std.end())).view({3, 1, 1});
  return (chw - mean) / stdv;
}

std::vector<int64_t> sample_frame_indices(int64_t total, int64_t num_frames) {
  std::vector<int64_t> idx;
  if (total <= 0) return idx;
  if (num_frames <= 0) {
    for (int64_t i = 0; i < total; ++i) idx.push_back(i);
    return idx;
  }
  for (int64_t i = 0; i < num_frames; ++i) {
    // Centre of the i-th of num_frames equal segments (repeats frames when the clip is short).
    idx.push_back(std::min(total - 1, static_cast<int64_t>((2 * i + 1) * total / (2 * num_frames))));
  }
  return idx;
}

at::Tensor read_video_frames(const std::string& path, int64_t num_frames) {
  std::error_code ec;
  std::vector<at::Tensor> frames;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file() && is_image_ext(e.path().extension().string())) files.push_back(e.path().string());
      if (static_cast<int64_t>(files.size()) > DataLimits::max_video_frames) {
        throw BadSampleError(fmt::format("{}: more than {} frames", path, DataLimits::max_video_frames));
      }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw BadSampleError(fmt::format("{}: frame folder holds no images", path));
    for (int64_t i : sample_frame_indices(static_cast<int64_t>(files.size()), num_frames)) {
      frames.push_back(decode_image_file(files[static_cast<size_t>(i)]));
    }
  } else {
    if (!fs::is_regular_file(path, ec)) throw BadSampleError(fmt::format("{}: video not found", path));
    cv::VideoCapture cap;
    try {
      cap.open(path);
    } catch (const cv::Exception& e) {
      throw BadSampleError(fmt::format("{}: cannot open video: {}", path, e.what()));
    }
    if (!cap.isOpened()) throw BadSampleError(fmt::format("{}: cannot open video", path));
    // Frame counts in containers are unreliable: decode everything once (capped), then sample.
    std::vector<cv::Mat> all;
    cv::Mat f;
    while (cap.read(f)) {
      if (f.empty()) break;
      all.push_back(f.clone());
      if (static_cast<int64_t>(all.size()) > DataLimits::max_video_frames) {
        throw BadSampleError(fmt::format("{}: more than {} frames", path, DataLimits::max_video_frames));
      }
    }
    if (all.empty()) throw BadSampleError(fmt::format("{}: video has no decodable frames", path));
    for (int64_t i : sample_frame_indices(static_cast<int64_t>(all.size()), num_frames)) {
      frames.push_back(mat_to_tensor(all[static_cast<size_t>(i)]));
    }
  }
  for (const auto& fr : frames) {
    if (!fr.sizes().equals(frames[0].sizes())) {
      throw BadSampleError(
          fmt::format("{}: frames differ in size ({} vs {})", path, c10::str(fr.sizes()), c10::str(frames[0].sizes())));
    }
  }
  return at::stack(frames);
}

void write_video_file(const std::string& path, const at::Tensor& frames_u8, double fps) {
  TORCH_CHECK(frames_u8.dim() == 4 && frames_u8.size(3) == 3 && frames_u8.scalar_type() == at::kByte,
              "write_video_file: expected uint8 [T, H, W, 3], got ", frames_u8.sizes());
  const int H = static_cast<int>(frames_u8.size(1)), W = static_cast<int>(frames_u8.size(2));
  cv::VideoWriter w(path, cv::CAP_OPENCV_MJPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), fps, cv::Size(W, H));
  if (!w.isOpened()) throw Error(fmt::format("{}: cannot open video writer", path));
  for (int64_t t = 0; t < frames_u8.size(0); ++t) {
    cv::Mat rgb = tensor_to_mat_rgb(frames_u8[t]), bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    w.write(bgr);
  }
}

at::Tensor normalize_points(const at::Tensor& points) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3, "normalize_points: expected [N, 3], got ", points.sizes());
  TORCH_CHECK(points.size(0) > 0, "normalize_points: empty point cloud");
  auto p = points.to(at::kFloat);
  p = p - p.mean(0, true);
  const double r = p.norm(2, 1).max().item<double>();
  return r > 0 ? p / r : p;
}

at::Tensor sample_points(const at::Tensor& points, int64_t n, std::mt19937_64& rng) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3, "sample_points: expected [N, 3], got ", points.sizes());
  const int64_t N = points.size(0);
  TORCH_CHECK(N > 0 && n > 0, "sample_points: need N > 0 and n > 0");
  std::vector<int64_t> idx(static_cast<size_t>(N));
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<int64_t> pick;
  if (N >= n) {
    std::shuffle(idx.begin(), idx.end(), rng);
    pick.assign(idx.begin(), idx.begin() + n);
  } else {
    std::uniform_int_distribution<int64_t> d(0, N - 1);
    pick = idx;
    while (static_cast<int64_t>(pick.size()) < n) pick.push_back(d(rng));
  }
  return normalize_points(points.index_select(0, at::tensor(pick)));
}

}  // namespace janus
