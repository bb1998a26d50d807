#pragma once
// IDX files (MNIST / Fashion-MNIST), plain or gzipped.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace janus {

// Reads an IDX file of unsigned bytes (type 0x08) into a uint8 tensor with the file's dimensions.
// InputError naming the file on a bad magic, type, size or truncated data.
at::Tensor read_idx(const std::string& path, int64_t max_items = 0);

const std::vector<std::string>& fashion_mnist_classes();
// Writes images as OUT/<split>/<class>/<n>.png (an image folder) from the IDX pair; returns images written.
int64_t idx_to_image_folder(const std::string& images_idx, const std::string& labels_idx,
                            const std::vector<std::string>& class_names, const std::string& out_dir, int64_t limit = 0);

}  // namespace janus
