// SHA-256, for naming deployed binaries by their content.
#pragma once

#include <span>
#include <string>

namespace ferry::server {

/// The SHA-256 digest of `data` as 64 lowercase hex digits.
std::string sha256_hex(std::span<const char> data);

}  // namespace ferry::server
