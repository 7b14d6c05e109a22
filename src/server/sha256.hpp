// SHA-256, for naming deployed binaries by their content.
#pragma once

#include <filesystem>
#include <span>
#include <string>

namespace ferry::server {

/// The SHA-256 digest of `data` as 64 lowercase hex digits.
std::string sha256_hex(std::span<const char> data);
/// The SHA-256 digest of the file at `path`, the same way. Throws std::system_error when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace ferry::server
