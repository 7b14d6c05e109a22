// SHA-256, for naming deployed binaries by their content.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace ferry::server {

/// A SHA-256 digest computed piece by piece (a binary as it arrives, or as it is read).
class sha256 {
 public:
  /// Uses the CPU's SHA extensions when it has them.
  sha256();
  /// One that does not (to check the two against each other).
  static sha256 portable();
  /// Whether this CPU's SHA extensions are used.
  static bool uses_cpu_extensions();

  void update(std::span<const char> data);
  /// The digest of everything given, as 64 lowercase hex digits; the object is spent.
  std::string hex();

 private:
  void (*compress_)(std::array<std::uint32_t, 8>& h, const unsigned char* data, std::size_t blocks);
  std::array<std::uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<unsigned char, 64> block_{};
  std::size_t filled_ = 0;  // of block_
  std::uint64_t length_ = 0;
};

/// The SHA-256 digest of `data` as 64 lowercase hex digits.
std::string sha256_hex(std::span<const char> data);

/// The digests of files, for an event loop: each is hashed on a thread of its own (a binary of hundreds of
/// MiB takes up to seconds to hash, on a loaded host or without the CPU's SHA extensions: a loop that spent
/// them would miss its heartbeats) and hashed again only when its size or modification time changes (a
/// binary placed on agents is hashed once, not per container).
/// Used on one executor's thread.
class file_digests {
 public:
  /// Receives the digest, or "" when there is no such file or it cannot be read.
  using handler = std::function<void(std::string digest)>;
  explicit file_digests(boost::asio::any_io_executor executor);
  /// Abandons a hash in progress; its handler is not called.
  ~file_digests();
  file_digests(const file_digests&) = delete;
  file_digests& operator=(const file_digests&) = delete;

  /// The digest of the file at `path` if it is known and the file has not changed since; "" if not.
  std::string known(const std::filesystem::path& path);
  /// Calls `done` on the executor (never from within this call) with the digest of the file at `path`.
  void of(const std::filesystem::path& path, handler done);

 private:
  struct entry {
    std::uintmax_t size = 0;
    std::int64_t modified = 0;
    std::string digest;
  };
  void finished(const std::string& path, const entry& e);

  boost::asio::any_io_executor executor_;
  std::unordered_map<std::string, entry> known_;                   // by path
  std::unordered_map<std::string, std::vector<handler>> hashing_;  // by path: those waiting for its digest
  std::shared_ptr<std::atomic<bool>> abandoned_ = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<boost::asio::thread_pool> hasher_;  // one thread, started when first needed
};

}  // namespace ferry::server
