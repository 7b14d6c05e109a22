/// ferry/codec_std.hpp: the codecs of the standard types ferry supports (the customization point and its
/// contract are in ferry/codec.hpp, which includes this header).
///
///   bool                         MessagePack bool
///   integer types                the smallest integer encoding; decoding accepts any integer that fits
///   enums                        their underlying integer
///   float, double                float32, float64; decoding accepts any number (JSON writes 2.0 as 2)
///   std::string                  str
///   ferry::bytes                 bin (std::vector<std::uint8_t> stays an array of integers)
///   std::vector<T>               array
///   std::map, std::unordered_map map (a key given twice: the last value wins)
///   std::optional<T>             nil when empty, else T
///   std::pair, std::tuple        an array of exactly 2, of exactly N
///   std::monostate               nil (what the future of a void function holds)
///
/// Their names in signatures: bool, int8 ... int64, uint8 ... uint64, enum(int32), float32, float64, string,
/// bytes, vector<T>, map<K,V>, optional<T>, pair<A,B>, tuple<...>. A container decodes element by element and
/// a DecodeError names the path to the element that failed (`[2]`, `{entry 3}`). msgpuck's inline functions
/// are called directly here, on purpose: see ferry/detail/msgpack.hpp. Stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ferry/codec.hpp>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/msgpack.hpp>
#include <ferry/errors.hpp>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace ferry {

/// A byte string: encoded as MessagePack bin (std::vector<std::uint8_t> stays an array of integers).
using bytes = std::vector<std::byte>;

/// std::monostate: nil (what a void function's future holds).
template <>
struct codec<std::monostate> {
  static void encode(detail::buffer& b, std::monostate) { b.commit(mp_encode_nil(b.reserve(1))); }
  static void decode(detail::reader& r, std::monostate&) {
    if (detail::peek(r, "nil") != MP_NIL) detail::mismatch("nil", r);
    mp_decode_nil(&r.pos);
  }
  static std::string name() { return "void"; }
};

template <>
struct codec<bool> {
  static void encode(detail::buffer& b, bool v) { b.commit(mp_encode_bool(b.reserve(1), v)); }
  static void decode(detail::reader& r, bool& out) {
    if (detail::peek(r, "bool") != MP_BOOL) detail::mismatch("bool", r);
    out = mp_decode_bool(&r.pos);
  }
  static std::string name() { return "bool"; }
};

template <class T>
requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) struct codec<T> {
  static void encode(detail::buffer& b, T v) {
    char* p = b.reserve(9);
    if constexpr (std::is_signed_v<T>) {
      b.commit(v < 0 ? mp_encode_int(p, v) : mp_encode_uint(p, static_cast<std::uint64_t>(v)));
    } else {
      b.commit(mp_encode_uint(p, v));
    }
  }
  static void decode(detail::reader& r, T& out) {
    constexpr const char* expected = type_name();
    const char* start = r.pos;
    std::int64_t negative = 0;
    std::uint64_t positive = 0;
    switch (detail::peek(r, expected)) {
      case MP_UINT:
        detail::require_bytes(mp_check_uint(r.pos, r.end), expected);
        positive = mp_decode_uint(&r.pos);
        break;
      case MP_INT:  // MessagePack's signed forms may also hold non-negative values
        detail::require_bytes(mp_check_int(r.pos, r.end), expected);
        negative = mp_decode_int(&r.pos);
        if (negative >= 0) positive = static_cast<std::uint64_t>(std::exchange(negative, 0));
        break;
      default:
        detail::mismatch(expected, r);
    }
    const bool fits = negative < 0
                          ? std::is_signed_v<T> && negative >= static_cast<std::int64_t>(std::numeric_limits<T>::min())
                          : positive <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
    if (!fits) {
      r.pos = start;
      detail::mismatch(expected, r);
    }
    out = negative < 0 ? static_cast<T>(negative) : static_cast<T>(positive);
  }
  static constexpr const char* type_name() {
    constexpr const char* signed_names[] = {"int8", "int16", "", "int32", "", "", "", "int64"};
    constexpr const char* unsigned_names[] = {"uint8", "uint16", "", "uint32", "", "", "", "uint64"};
    return (std::is_signed_v<T> ? signed_names : unsigned_names)[sizeof(T) - 1];
  }
  static std::string name() { return type_name(); }
};

template <class T>
requires std::is_enum_v<T>
struct codec<T> {
  using underlying = std::underlying_type_t<T>;
  static void encode(detail::buffer& b, T v) { codec<underlying>::encode(b, static_cast<underlying>(v)); }
  static void decode(detail::reader& r, T& out) { out = static_cast<T>(detail::decode_value<underlying>(r)); }
  static std::string name() { return "enum(" + codec<underlying>::name() + ")"; }
};

template <class T>
requires std::is_floating_point_v<T>
struct codec<T> {
  static void encode(detail::buffer& b, T v) {
    if constexpr (sizeof(T) == sizeof(float)) {
      b.commit(mp_encode_float(b.reserve(5), v));
    } else {
      b.commit(mp_encode_double(b.reserve(9), static_cast<double>(v)));
    }
  }
  /// Accepts any MessagePack number: JSON at the HTTP edge writes 2.0 as the integer 2.
  static void decode(detail::reader& r, T& out) {
    const char* expected = sizeof(T) == sizeof(float) ? "float32" : "float64";
    switch (detail::peek(r, expected)) {
      case MP_FLOAT:
        detail::require_bytes(mp_check_float(r.pos, r.end), expected);
        out = static_cast<T>(mp_decode_float(&r.pos));
        return;
      case MP_DOUBLE:
        detail::require_bytes(mp_check_double(r.pos, r.end), expected);
        out = static_cast<T>(mp_decode_double(&r.pos));
        return;
      case MP_UINT:
        detail::require_bytes(mp_check_uint(r.pos, r.end), expected);
        out = static_cast<T>(mp_decode_uint(&r.pos));
        return;
      case MP_INT:
        detail::require_bytes(mp_check_int(r.pos, r.end), expected);
        out = static_cast<T>(mp_decode_int(&r.pos));
        return;
      default:
        detail::mismatch(expected, r);
    }
  }
  static std::string name() { return sizeof(T) == sizeof(float) ? "float32" : "float64"; }
};

template <>
struct codec<std::string> {
  static void encode(detail::buffer& b, const std::string& v) {
    const auto n = static_cast<std::uint32_t>(v.size());
    b.commit(mp_encode_str(b.reserve(mp_sizeof_str(n)), v.data(), n));
  }
  static void decode(detail::reader& r, std::string& out) {
    const std::string_view s = detail::decode_bytes(r, MP_STR, "string");
    out.clear();
    out.reserve(s.size());
    detail::advise_huge_pages(out.data(), s.size());
    out.append(s);
  }
  static std::string name() { return "string"; }
};

template <>
struct codec<bytes> {
  static void encode(detail::buffer& b, const bytes& v) {
    // (Not mp_encode_bin: it memcpys from data(), which an empty vector may leave null.)
    b.commit(mp_encode_binl(b.reserve(5), static_cast<std::uint32_t>(v.size())));
    b.append(v.data(), v.size());
  }
  static void decode(detail::reader& r, bytes& out) {
    const std::string_view b = detail::decode_bytes(r, MP_BIN, "bytes");
    // (Reserved, advised, then written once: resize would zero-fill, touching every page a first time.)
    out.clear();
    out.reserve(b.size());
    detail::advise_huge_pages(out.data(), b.size());
    const auto* first = reinterpret_cast<const std::byte*>(b.data());
    out.insert(out.end(), first, first + b.size());
  }
  static std::string name() { return "bytes"; }
};

template <class T>
requires(serializable<T> && !std::is_same_v<T, std::byte>) struct codec<std::vector<T>> {
  static void encode(detail::buffer& b, const std::vector<T>& v) {
    b.commit(mp_encode_array(b.reserve(5), static_cast<std::uint32_t>(v.size())));
    for (const auto& item : v) codec<T>::encode(b, item);
  }
  static void decode(detail::reader& r, std::vector<T>& out) {
    const std::uint32_t n = detail::decode_container_header(r, MP_ARRAY, &name);
    out.clear();
    out.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      try {
        out.push_back(detail::decode_value<T>(r));
      } catch (const DecodeError& e) {
        throw e.within("[" + std::to_string(i) + "]");
      }
    }
  }
  static std::string name() { return "vector<" + codec<T>::name() + ">"; }
};

namespace detail {
/// std::map and std::unordered_map: a MessagePack map.
template <class Map>
struct map_codec {
  using key_type = typename Map::key_type;
  using mapped_type = typename Map::mapped_type;
  static void encode(detail::buffer& b, const Map& m) {
    b.commit(mp_encode_map(b.reserve(5), static_cast<std::uint32_t>(m.size())));
    for (const auto& [k, v] : m) {
      codec<key_type>::encode(b, k);
      codec<mapped_type>::encode(b, v);
    }
  }
  static void decode(detail::reader& r, Map& out) {
    const std::uint32_t n = detail::decode_container_header(r, MP_MAP, &name);
    out.clear();
    for (std::uint32_t i = 0; i < n; ++i) {
      try {
        key_type k = detail::decode_value<key_type>(r);
        out.insert_or_assign(std::move(k), detail::decode_value<mapped_type>(r));
      } catch (const DecodeError& e) {
        throw e.within("{entry " + std::to_string(i) + "}");
      }
    }
  }
  static std::string name() { return "map<" + codec<key_type>::name() + "," + codec<mapped_type>::name() + ">"; }
};
}  // namespace detail

template <class K, class V, class C, class A>
requires(serializable<K>&& serializable<V>) struct codec<std::map<K, V, C, A>>
    : detail::map_codec<std::map<K, V, C, A>> {
};

template <class K, class V, class H, class E, class A>
requires(serializable<K>&& serializable<V>) struct codec<std::unordered_map<K, V, H, E, A>>
    : detail::map_codec<std::unordered_map<K, V, H, E, A>> {
};

template <class T>
requires serializable<T>
struct codec<std::optional<T>> {
  static void encode(detail::buffer& b, const std::optional<T>& v) {
    if (v) {
      codec<T>::encode(b, *v);
    } else {
      b.commit(mp_encode_nil(b.reserve(1)));
    }
  }
  static void decode(detail::reader& r, std::optional<T>& out) {
    if (detail::peek(r, &name) == MP_NIL) {
      mp_decode_nil(&r.pos);
      out.reset();
    } else {
      out.emplace(detail::decode_value<T>(r));
    }
  }
  static std::string name() { return "optional<" + codec<T>::name() + ">"; }
};

template <class... T>
requires(serializable<T>&&...) struct codec<std::tuple<T...>> {
  static void encode(detail::buffer& b, const std::tuple<T...>& v) {
    b.commit(mp_encode_array(b.reserve(5), sizeof...(T)));
    std::apply([&b](const auto&... item) { (codec<std::decay_t<decltype(item)>>::encode(b, item), ...); }, v);
  }
  static void decode(detail::reader& r, std::tuple<T...>& out) {
    const std::uint32_t n = detail::decode_container_header(r, MP_ARRAY, &name);
    if (n != sizeof...(T)) {
      throw DecodeError(name(), "array of " + std::to_string(n));
    }
    decode_elements(r, out, std::index_sequence_for<T...>{});
  }
  static std::string name() {
    std::string s = "tuple<";
    ((s += codec<T>::name() + ","), ...);
    if (sizeof...(T) > 0) s.pop_back();
    return s + ">";
  }

 private:
  template <std::size_t... I>
  static void decode_elements(detail::reader& r, std::tuple<T...>& out, std::index_sequence<I...>) {
    (decode_element<I>(r, std::get<I>(out)), ...);
  }
  template <std::size_t I, class E>
  static void decode_element(detail::reader& r, E& element) {
    try {
      codec<E>::decode(r, element);
    } catch (const DecodeError& e) {
      throw e.within("[" + std::to_string(I) + "]");
    }
  }
};

template <class A, class B>
requires(serializable<A>&& serializable<B>) struct codec<std::pair<A, B>> {
  static void encode(detail::buffer& b, const std::pair<A, B>& v) {
    b.commit(mp_encode_array(b.reserve(5), 2));
    codec<A>::encode(b, v.first);
    codec<B>::encode(b, v.second);
  }
  static void decode(detail::reader& r, std::pair<A, B>& out) {
    std::tuple<A, B> t;
    try {
      codec<std::tuple<A, B>>::decode(r, t);
    } catch (const DecodeError& e) {
      if (e.expected() == codec<std::tuple<A, B>>::name()) throw DecodeError(name(), e.received(), e.path());
      throw;
    }
    out = {std::move(std::get<0>(t)), std::move(std::get<1>(t))};
  }
  static std::string name() { return "pair<" + codec<A>::name() + "," + codec<B>::name() + ">"; }
};

}  // namespace ferry
