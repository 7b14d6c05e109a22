#include <sys/mman.h>

#include <cstdint>
#include <ferry/codec.hpp>

namespace ferry::detail {

void advise_huge_pages_within(void* p, std::size_t n) noexcept {
  constexpr std::uintptr_t page = huge_payload;
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t begin = (start + page - 1) & ~(page - 1);
  const std::uintptr_t end = (start + n) & ~(page - 1);
  // (Advice: a kernel without transparent huge pages, or with them off, refuses it, and nothing changes.)
  if (begin < end) ::madvise(static_cast<char*>(p) + (begin - start), end - begin, MADV_HUGEPAGE);
}

std::string describe_next(const reader& r) {
  if (r.at_end()) return "end of input";
  const char* p = r.pos;
  switch (mp_typeof(*p)) {
    case MP_NIL:
      return "nil";
    case MP_BOOL:
      return "bool";
    case MP_UINT:
      if (mp_check_uint(p, r.end) > 0) return "a truncated integer";
      return "integer " + std::to_string(mp_decode_uint(&p));
    case MP_INT:
      if (mp_check_int(p, r.end) > 0) return "a truncated integer";
      return "integer " + std::to_string(mp_decode_int(&p));
    case MP_FLOAT:
    case MP_DOUBLE:
      return "float";
    case MP_STR:
      return "string";
    case MP_BIN:
      return "bytes";
    case MP_ARRAY:
      if (mp_check_array(p, r.end) > 0) return "a truncated array";
      return "array of " + std::to_string(mp_decode_array(&p));
    case MP_MAP:
      if (mp_check_map(p, r.end) > 0) return "a truncated map";
      return "map of " + std::to_string(mp_decode_map(&p));
    case MP_EXT:
      return "extension value";
  }
  return "unknown value";
}

void throw_mismatch(std::string expected, const reader& r) { throw DecodeError(std::move(expected), describe_next(r)); }

}  // namespace ferry::detail

namespace ferry::detail {

bool skip_value(reader& r) {
  // Iterative, with a 64-bit count of values still to skip: every element takes at least one byte, so a
  // header claiming more elements than bytes remain is rejected before the count can grow past them.
  const char* p = r.pos;
  std::uint64_t pending = 1;
  while (pending > 0) {
    if (p >= r.end) return false;
    --pending;
    const auto remaining = [&] { return static_cast<std::uint64_t>(r.end - p); };
    switch (mp_typeof(*p)) {
      case MP_ARRAY: {
        if (mp_check_array(p, r.end) > 0) return false;
        const std::uint64_t n = mp_decode_array(&p);
        if (n > remaining()) return false;
        pending += n;
        break;
      }
      case MP_MAP: {
        if (mp_check_map(p, r.end) > 0) return false;
        const std::uint64_t n = 2 * std::uint64_t{mp_decode_map(&p)};
        if (n > remaining()) return false;
        pending += n;
        break;
      }
      default: {
        // A scalar, string, bin or extension: msgpuck checks these without counting.
        if (mp_check(&p, r.end) != 0) return false;
        break;
      }
    }
  }
  r.pos = p;
  return true;
}

}  // namespace ferry::detail
