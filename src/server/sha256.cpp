// FIPS 180-4 SHA-256, checked against its test vectors in tests/server/sha256_test.cpp. Not OpenSSL's: mapping
// libcrypto.so.3 costs every process that links ferry (servers and containers) 3.4 MiB of resident memory.
#include "server/sha256.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <array>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <system_error>
#include <vector>

#include "server/quiet_thread.hpp"

namespace ferry::server {

namespace {

constexpr std::array<std::uint32_t, 64> k = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void compress(std::array<std::uint32_t, 8>& h, const unsigned char* block) {
  std::uint32_t w[64];
  for (std::size_t i = 0; i < 16; ++i) {
    w[i] = (std::uint32_t{block[4 * i]} << 24) | (std::uint32_t{block[4 * i + 1]} << 16) |
           (std::uint32_t{block[4 * i + 2]} << 8) | std::uint32_t{block[4 * i + 3]};
  }
  for (int i = 16; i < 64; ++i) {
    const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int i = 0; i < 64; ++i) {
    const std::uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
    const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

using compress_fn = void (*)(std::array<std::uint32_t, 8>& h, const unsigned char* data, std::size_t blocks);

void compress_portable(std::array<std::uint32_t, 8>& h, const unsigned char* data, std::size_t blocks) {
  for (; blocks > 0; --blocks, data += 64) compress(h, data);
}

#if defined(__x86_64__)
/// The same with the x86 SHA extensions (Intel since Goldmont and Ice Lake, AMD since Zen): about six times
/// as fast, which matters for binaries of hundreds of MiB. After Intel's reference code; checked against
/// the portable code by tests/server/sha256_test.cpp.
__attribute__((target("sha,sse4.1,ssse3"))) void compress_sha_ni(std::array<std::uint32_t, 8>& h,
                                                                 const unsigned char* data, std::size_t blocks) {
  const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  // The state as the instructions take it: ABEF and CDGH.
  __m128i cdab = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&h[0])), 0xB1);
  __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&h[4])), 0x1B);
  __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
  for (; blocks > 0; --blocks, data += 64) {
    const __m128i abef_before = abef;
    const __m128i cdgh_before = cdgh;
    __m128i w[4];  // w[j % 4]: the message words 4j..4j+3
    for (std::size_t i = 0; i < 4; ++i) {
      w[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * i)), byte_swap);
    }
    for (std::size_t j = 0; j < 16; ++j) {
      if (j >= 4) {  // W[t] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16], four at a time
        __m128i next = _mm_sha256msg1_epu32(w[j % 4], w[(j + 1) % 4]);
        next = _mm_add_epi32(next, _mm_alignr_epi8(w[(j + 3) % 4], w[(j + 2) % 4], 4));
        w[j % 4] = _mm_sha256msg2_epu32(next, w[(j + 3) % 4]);
      }
      const __m128i message = _mm_add_epi32(w[j % 4], _mm_loadu_si128(reinterpret_cast<const __m128i*>(&k[4 * j])));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, message);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(message, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef_before);
    cdgh = _mm_add_epi32(cdgh, cdgh_before);
  }
  const __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  const __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&h[0]), _mm_blend_epi16(feba, dchg, 0xF0));  // DCBA
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&h[4]), _mm_alignr_epi8(dchg, feba, 8));     // HGFE
}

bool cpu_has_sha_extensions() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) return false;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}
#endif

/// The fastest this CPU has.
compress_fn compress_blocks() {
#if defined(__x86_64__)
  static const compress_fn chosen = cpu_has_sha_extensions() ? compress_sha_ni : compress_portable;
  return chosen;
#else
  return compress_portable;
#endif
}

}  // namespace

bool sha256::uses_cpu_extensions() { return compress_blocks() != compress_portable; }

void sha256::update(std::span<const char> data) {
  if (data.empty()) return;  // (its data() may be null, which memcpy may not be given)
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  length_ += n;
  if (filled_ > 0) {
    const std::size_t take = std::min(n, block_.size() - filled_);
    std::memcpy(block_.data() + filled_, bytes, take);
    filled_ += take;
    bytes += take;
    n -= take;
    if (filled_ < block_.size()) return;
    compress_(h_, block_.data(), 1);
    filled_ = 0;
  }
  compress_(h_, bytes, n / 64);
  bytes += n / 64 * 64;
  n %= 64;
  std::memcpy(block_.data(), bytes, n);
  filled_ = n;
}

std::string sha256::hex() {
  // The tail, a 1 bit, zeros, and the length in bits: one or two more blocks.
  unsigned char tail[128] = {};
  std::memcpy(tail, block_.data(), filled_);
  tail[filled_] = 0x80;
  const std::size_t tail_size = filled_ < 56 ? 64 : 128;
  const std::uint64_t bits = length_ * 8;
  for (int i = 0; i < 8; ++i) tail[tail_size - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  compress_(h_, tail, tail_size / 64);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (std::uint32_t word : h_) {
    for (int shift = 28; shift >= 0; shift -= 4) out.push_back(hex[(word >> shift) & 0xf]);
  }
  return out;
}

sha256::sha256() : compress_(compress_blocks()) {}

sha256 sha256::portable() {
  sha256 s;
  s.compress_ = compress_portable;
  return s;
}

std::string sha256_hex(std::span<const char> data) {
  sha256 s;
  s.update(data);
  return s.hex();
}

namespace {

/// The file's size and modification time, or nothing when it cannot be seen.
bool stamp(const std::filesystem::path& path, std::uintmax_t& size, std::int64_t& modified) {
  std::error_code ec;
  size = std::filesystem::file_size(path, ec);
  if (ec) return false;
  modified = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  return !ec;
}

/// The digest of the file, read a piece at a time; "" when it cannot be read or `abandoned` turns true.
std::string hash_file(const std::filesystem::path& path, const std::atomic<bool>& abandoned) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  sha256 s;
  std::vector<char> piece(1 << 20);
  while (in && !abandoned) {
    in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    s.update(std::span<const char>(piece.data(), static_cast<std::size_t>(in.gcount())));
  }
  return in.bad() || abandoned ? "" : s.hex();
}

}  // namespace

file_digests::file_digests(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}

file_digests::~file_digests() {
  *abandoned_ = true;
  if (hasher_) hasher_->join();
}

std::string file_digests::known(const std::filesystem::path& path) {
  entry now;
  auto it = known_.find(path.string());
  if (it == known_.end() || !stamp(path, now.size, now.modified)) return "";
  if (it->second.size != now.size || it->second.modified != now.modified) return "";
  return it->second.digest;
}

void file_digests::of(const std::filesystem::path& path, handler done) {
  if (std::string digest = known(path); !digest.empty()) {
    boost::asio::post(executor_, [done = std::move(done), digest = std::move(digest)] { done(digest); });
    return;
  }
  auto [waiting, first] = hashing_.try_emplace(path.string());
  waiting->second.push_back(std::move(done));
  if (!first) return;
  if (!hasher_) hasher_ = make_quiet_thread();
  // (The executor, tracked: its loop's run() waits for the answer.)
  auto tracked = boost::asio::prefer(executor_, boost::asio::execution::outstanding_work.tracked);
  boost::asio::post(*hasher_, [this, path, abandoned = abandoned_, executor = std::move(tracked)] {
    entry e;
    // (Stamped before reading: a file changed while it is read is hashed again when next asked for.)
    if (stamp(path, e.size, e.modified)) e.digest = hash_file(path, *abandoned);
    boost::asio::post(executor, [this, path = path.string(), e = std::move(e), abandoned] {
      if (!*abandoned) finished(path, e);
    });
  });
}

void file_digests::finished(const std::string& path, const entry& e) {
  auto waiting = hashing_.extract(path);
  if (e.digest.empty()) {
    known_.erase(path);
  } else {
    known_[path] = e;
  }
  for (auto& done : waiting.mapped()) done(e.digest);
}

}  // namespace ferry::server
