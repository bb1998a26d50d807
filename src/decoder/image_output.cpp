#include "janus/decoder/image_output.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "janus/core/error.h"

namespace janus {

at::Tensor to_uint8_image(const at::Tensor& img) {
  TORCH_CHECK(img.dim() == 3 || img.dim() == 4, "image_output: expected [C, H, W] or [B, C, H, W], got ", img.sizes());
  TORCH_CHECK(img.is_floating_point(), "image_output: expected a float image in [-1, 1]");
  auto x = ((img.detach().to(at::kFloat).cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(at::kByte);
  return img.dim() == 3 ? x.permute({1, 2, 0}).contiguous() : x.permute({0, 2, 3, 1}).contiguous();
}

void write_png(const std::string& path, const at::Tensor& img) {
  TORCH_CHECK(img.dim() == 3 && (img.size(0) == 1 || img.size(0) == 3), "image_output: write_png expects [1|3, H, W], got ",
              img.sizes());
  auto u8 = to_uint8_image(img);  // [H, W, C]
  const int rows = static_cast<int>(u8.size(0)), cols = static_cast<int>(u8.size(1));
  const int type = u8.size(2) == 1 ? CV_8UC1 : CV_8UC3;
  cv::Mat m(rows, cols, type, u8.data_ptr<uint8_t>());
  cv::Mat out;
  if (u8.size(2) == 3) cv::cvtColor(m, out, cv::COLOR_RGB2BGR);
  else out = m;
  bool ok = false;
  try {
    ok = cv::imwrite(path, out);
  } catch (const cv::Exception& e) {
    throw Error(fmt::format("image_output: cannot write '{}': {}", path, e.what()));
  }
  if (!ok) throw Error(fmt::format("image_output: cannot write '{}'", path));
}

at::Tensor write_image_grid(const std::string& path, const at::Tensor& images, int64_t nrow, int64_t padding,
                            double pad_value) {
  TORCH_CHECK(images.dim() == 4 && images.size(0) > 0, "image_output: grid expects [B, C, H, W] with B > 0, got ",
              images.sizes());
  TORCH_CHECK(nrow > 0 && padding >= 0, "image_output: nrow must be > 0 and padding >= 0");
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t cols = std::min(nrow, B), rows = (B + cols - 1) / cols;
  auto grid = at::full({C, rows * (H + padding) + padding, cols * (W + padding) + padding}, pad_value,
                       images.options().dtype(at::kFloat).device(at::kCPU));
  auto src = images.detach().to(at::kFloat).cpu();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t r = b / cols, c = b % cols;
    grid.slice(1, padding + r * (H + padding), padding + r * (H + padding) + H)
        .slice(2, padding + c * (W + padding), padding + c * (W + padding) + W)
        .copy_(src[b]);
  }
  write_png(path, grid);
  return grid;
}

at::Tensor read_png(const std::string& path) {
  cv::Mat m = cv::imread(path, cv::IMREAD_UNCHANGED);
  if (m.empty()) throw InputError(fmt::format("image_output: cannot read image '{}'", path));
  TORCH_CHECK(m.depth() == CV_8U && (m.channels() == 1 || m.channels() == 3), "image_output: '", path,
              "' is not an 8-bit gray or colour image");
  if (m.channels() == 3) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
  auto t = at::from_blob(m.data, {m.rows, m.cols, m.channels()}, at::kByte).clone();
  return t.permute({2, 0, 1}).to(at::kFloat) / 127.5 - 1.0;
}

}  // namespace janus
