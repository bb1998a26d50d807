#pragma once
#include <cstddef>
#include <string>

namespace janus {

// Writes `size` bytes to `path` atomically: a temp file in the same directory, fsync, rename, fsync of the
// directory. Either the old file or the complete new one is visible, never a torn one. Creates parent dirs.
void write_file_atomic(const std::string& path, const void* data, std::size_t size);
void write_file_atomic(const std::string& path, const std::string& data);

// Reads a whole file; InputError naming the file when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace janus
