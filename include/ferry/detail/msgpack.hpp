/// ferry/detail/msgpack.hpp: the MessagePack primitives ferry's codecs are written with, over msgpuck.
///
/// The only public header that includes <msgpuck.h>. The codecs (ferry/codec_std.hpp, ferry/struct.hpp) call
/// msgpuck's inline functions directly, and so do the helpers below: encoding or decoding one value is a few
/// instructions, and a function call into the library per value would cost more than the work itself (the
/// codec micro-benchmarks, docs/benchmarks.md, measure it). msgpuck's names therefore reach every translation
/// unit that includes a codec; outside ferry::detail and the codec headers, nothing should use them.
///
/// Decoding treats its input as untrusted (it may come from another program or the HTTP API): every read is
/// preceded by a check that its bytes are there, and a mismatch or a truncation throws ferry::DecodeError,
/// never reads past the reader's end. Stateless; safe from any thread.
#pragma once

#include <msgpuck.h>

#include <cstddef>
#include <cstdint>
#include <ferry/detail/buffer.hpp>
#include <ferry/errors.hpp>
#include <string>
#include <string_view>
#include <type_traits>

namespace ferry::detail {

/// What the next value in `r` is, for error messages: "string", "integer 300", "array of 2", "end of input".
std::string describe_next(const reader& r);
/// Throws DecodeError: expected `expected`, received whatever comes next in `r`.
[[noreturn]] void throw_mismatch(std::string expected, const reader& r);

/// Skips one complete value; returns false (leaving `r` unchanged) when it is malformed or truncated.
/// Unlike msgpuck's mp_check, safe against headers that claim billions of elements.
bool skip_value(reader& r);

// Decoders name the type they expect only when they fail: `Expected` is a const char* or a callable
// returning the name, so the success path builds no strings.
template <class Expected>
std::string expected_name(const Expected& expected) {
  if constexpr (std::is_invocable_v<const Expected&>) {
    return expected();
  } else {
    return expected;
  }
}

/// `missing` follows msgpuck's mp_check_* contract: the bytes the value needs beyond what is there,
/// <= 0 when they are all there.
template <class Expected>
void require_bytes(std::ptrdiff_t missing, const Expected& expected) {
  if (missing > 0) throw DecodeError(expected_name(expected), "a truncated value");
}

template <class Expected>
mp_type peek(const reader& r, const Expected& expected) {
  if (r.at_end()) throw DecodeError(expected_name(expected), "end of input");
  return mp_typeof(*r.pos);
}

template <class Expected>
[[noreturn]] void mismatch(const Expected& expected, const reader& r) {
  throw_mismatch(expected_name(expected), r);
}

/// Reads a str (or bin) header and checks that its bytes are all there; returns them.
inline std::string_view decode_bytes(reader& r, mp_type kind, const char* expected) {
  if (peek(r, expected) != kind) mismatch(expected, r);
  require_bytes(kind == MP_STR ? mp_check_strl(r.pos, r.end) : mp_check_binl(r.pos, r.end), expected);
  const std::uint32_t n = kind == MP_STR ? mp_decode_strl(&r.pos) : mp_decode_binl(&r.pos);
  if (r.remaining() < n) throw DecodeError(expected, "a truncated value");
  const std::string_view bytes{r.pos, n};
  r.pos += n;
  return bytes;
}

/// Reads an array or map header of the expected kind and checks that its elements can be there at all
/// (each takes at least one byte), so that a hostile length cannot make a decoder reserve gigabytes.
template <class Expected>
std::uint32_t decode_container_header(reader& r, mp_type kind, const Expected& expected) {
  if (peek(r, expected) != kind) mismatch(expected, r);
  require_bytes(kind == MP_ARRAY ? mp_check_array(r.pos, r.end) : mp_check_map(r.pos, r.end), expected);
  std::uint32_t n = kind == MP_ARRAY ? mp_decode_array(&r.pos) : mp_decode_map(&r.pos);
  if (static_cast<std::uint64_t>(n) * (kind == MP_ARRAY ? 1 : 2) > r.remaining()) {
    throw DecodeError(expected_name(expected), "a truncated value");
  }
  return n;
}

/// Reads the header of an array of exactly `n` elements and returns true; returns false for anything else
/// (a truncated header, another kind, another length), after which `r` may have moved.
inline bool decode_array_header_of(reader& r, std::uint32_t n) {
  return !r.at_end() && mp_typeof(*r.pos) == MP_ARRAY && mp_check_array(r.pos, r.end) <= 0 &&
         mp_decode_array(&r.pos) == n;
}

inline void encode_nil(buffer& b) { b.commit(mp_encode_nil(b.reserve(1))); }
inline void encode_array_header(buffer& b, std::uint32_t n) { b.commit(mp_encode_array(b.reserve(5), n)); }
inline void encode_map_header(buffer& b, std::uint32_t n) { b.commit(mp_encode_map(b.reserve(5), n)); }
inline void encode_str(buffer& b, std::string_view s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  b.commit(mp_encode_str(b.reserve(mp_sizeof_str(n)), s.data(), n));
}

}  // namespace ferry::detail
