#pragma once
#include <cstddef>
#include <string>

namespace janus {

// Lower-case hex SHA-256 of a byte range / a string / a file's contents.
std::string sha256_hex(const void* data, std::size_t size);
std::string sha256_hex(const std::string& data);
std::string sha256_file(const std::string& path);

}  // namespace janus
