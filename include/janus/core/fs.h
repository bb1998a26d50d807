#pragma once
#include <cstddef>
#include <string>

namespace janus {

// Writes `size` bytes to `path` atomically: a temp file in the same directory, fsync, rename, fsync of the
// directory. Either the old file or the complete new one is visible, never a torn one. Creates parent dirs.
void write_file_atomic(const std::string& path, const void* data, std::size_t size);
void write_file_atomic(const std::string& path, const std::string& data);

// Recursive delete (files, directories, symlinks are unlinked, not followed); a missing path is fine.
// Use this, never std::filesystem::remove_all: with the pinned LibTorch wheel that symbol binds to a copy exported
// by libtorch.so which crashes on non-empty directories.
void remove_tree(const std::string& path);

// Reads a whole file; InputError naming the file when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace janus
