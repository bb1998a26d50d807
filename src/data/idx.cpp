#include "janus/data/idx.h"

#include <filesystem>

#include <zlib.h>

#include "janus/core/error.h"
#include "janus/data/image.h"

namespace fs = std::filesystem;

namespace janus {

namespace {

struct GzFile {
  gzFile f = nullptr;
  ~GzFile() {
    if (f) gzclose(f);
  }
};

void read_exact(gzFile f, void* buf, size_t n, const std::string& path, const char* what) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
    const int got = gzread(f, p, chunk);
    if (got <= 0) throw InputError(fmt::format("{}: truncated IDX file while reading {}", path, what));
    p += got;
    n -= static_cast<size_t>(got);
  }
}

}  // namespace

at::Tensor read_idx(const std::string& path, int64_t max_items) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw InputError(fmt::format("{}: IDX file not found", path));
  GzFile g;
  g.f = gzopen(path.c_str(), "rb");  // reads plain files transparently too
  if (!g.f) throw InputError(fmt::format("{}: cannot open", path));
  unsigned char magic[4];
  read_exact(g.f, magic, 4, path, "the magic number");
  if (magic[0] != 0 || magic[1] != 0) throw InputError(fmt::format("{}: not an IDX file (bad magic)", path));
  if (magic[2] != 0x08) {
    throw InputError(fmt::format("{}: IDX data type 0x{:02x} unsupported (only unsigned byte, 0x08)", path, magic[2]));
  }
  const int ndim = magic[3];
  if (ndim < 1 || ndim > 4) throw InputError(fmt::format("{}: IDX with {} dimensions unsupported", path, ndim));
  std::vector<int64_t> dims;
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    unsigned char b[4];
    read_exact(g.f, b, 4, path, "the dimensions");
    const int64_t v = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    dims.push_back(v);
  }
  if (max_items > 0 && dims[0] > max_items) dims[0] = max_items;
  for (int64_t v : dims) {
    if (v <= 0 || total > (int64_t{1} << 34) / v) throw InputError(fmt::format("{}: IDX dimensions too large", path));
    total *= v;
  }
  auto t = at::empty(dims, at::kByte);
  read_exact(g.f, t.data_ptr<uint8_t>(), static_cast<size_t>(total), path, "the data");
  return t;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> v{"tshirt_top", "trouser", "pullover", "dress", "coat",
                                          "sandal",     "shirt",   "sneaker",  "bag",   "ankle_boot"};
  return v;
}

int64_t idx_to_image_folder(const std::string& images_idx, const std::string& labels_idx,
                            const std::vector<std::string>& class_names, const std::string& out_dir, int64_t limit) {
  const at::Tensor images = read_idx(images_idx, limit);
  const at::Tensor labels = read_idx(labels_idx, limit);
  if (images.dim() != 3)
    throw InputError(fmt::format("{}: expected [N, H, W] images, got {} dims", images_idx, images.dim()));
  if (labels.dim() != 1 || labels.size(0) != images.size(0)) {
    throw InputError(fmt::format("{}: expected {} labels, got {}", labels_idx, images.size(0), labels.size(0)));
  }
  const int64_t n = images.size(0);
  for (const auto& c : class_names) fs::create_directories(fs::path(out_dir) / c);
  auto lab = labels.accessor<uint8_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = lab[i];
    if (l >= static_cast<int64_t>(class_names.size())) {
      throw InputError(
          fmt::format("{}: label {} of item {} outside the {} classes", labels_idx, l, i, class_names.size()));
    }
    const at::Tensor rgb = images[i].unsqueeze(2).expand({-1, -1, 3}).contiguous();
    write_image_file((fs::path(out_dir) / class_names[static_cast<size_t>(l)] / fmt::format("{:05d}.png", i)).string(),
                     rgb);
  }
  return n;
}

}  // namespace janus
