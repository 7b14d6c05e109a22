// SHA-256 through OpenSSL's EVP interface.
#include "server/sha256.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <openssl/evp.h>

#include <ferry/errors.hpp>

namespace ferry::server {

std::string sha256_hex(std::span<const char> data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw Error("OpenSSL could not compute a SHA-256 digest");
  }
  return fmt::format("{:02x}", fmt::join(std::span<const unsigned char>(digest, size), ""));
}

}  // namespace ferry::server
