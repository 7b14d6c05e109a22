// SHA-256, for naming deployed binaries by their content.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <unordered_map>

namespace ferry::server {

/// The SHA-256 digest of `data` as 64 lowercase hex digits.
std::string sha256_hex(std::span<const char> data);
/// The SHA-256 digest of the file at `path`, the same way. Throws std::system_error when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

/// The digests of files, each hashed again only when its size or modification time changes (a binary placed
/// on agents is hashed once, not per container).
class file_digests {
 public:
  /// The digest of the file at `path`; "" when there is no such file, or it cannot be read.
  std::string of(const std::filesystem::path& path);

 private:
  struct entry {
    std::uintmax_t size = 0;
    std::int64_t modified = 0;
    std::string digest;
  };
  std::unordered_map<std::string, entry> known_;  // by path
};

}  // namespace ferry::server
