/// ferry/codec.hpp: how arguments and results travel: MessagePack, through ferry::codec<T>.
///
/// Supported out of the box: bool, every integer type, float, double, enums (as their underlying
/// integer), std::string, ferry::bytes (MessagePack bin), std::vector, std::map, std::unordered_map,
/// std::optional, std::pair, std::tuple, and user structs declared with FERRY_STRUCT:
///
///     struct point { double x; double y; std::string label; };
///     FERRY_STRUCT(point, x, y, label)      // after the struct, in the struct's namespace
///
/// A struct is encoded as a MessagePack map from field name to value, so that it reads naturally as JSON
/// at the HTTP edge; decoding skips unknown fields, and a missing field is an error unless it is a
/// std::optional. Decoding reads the bytes in place, with no intermediate object tree, and checks every
/// length and type: a mismatch throws ferry::DecodeError naming the expected type, the received type and
/// the path to the mismatch. To support another type, specialize ferry::codec<T> with encode, decode and
/// name as below. Stateless; safe from any thread.
#pragma once

#include <msgpuck.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ferry/detail/buffer.hpp>
#include <ferry/errors.hpp>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace ferry {

/// A byte string: encoded as MessagePack bin (std::vector<std::uint8_t> stays an array of integers).
using bytes = std::vector<std::byte>;

/// codec<T>::encode(buffer&, const T&), codec<T>::decode(reader&, T&) and codec<T>::name() for every
/// supported T. Unspecialized for unsupported types, which the `serializable` concept then rejects.
template <class T>
struct codec;

template <class T>
concept serializable = requires(detail::buffer& b, const T& value, detail::reader& r, T& out) {
  codec<T>::encode(b, value);
  codec<T>::decode(r, out);
  { codec<T>::name() } -> std::convertible_to<std::string>;
};

namespace detail {

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

template <class T>
T decode_value(reader& r) {
  T value{};
  codec<T>::decode(r, value);
  return value;
}

template <class T, class M>
struct field {
  const char* name;
  M T::*member;
};

template <class T>
concept described_struct = requires(const T* p) {
  ferry_struct_fields(p);
};

/// While a function's signature is being named (see describe_signature): the structs its types mention, by
/// qualified name, each with its fields ("{id:int64,items:vector<string>}"), so that two programs' structs of
/// the same name are compared field by field. Thread-local; nullptr otherwise.
struct struct_collection {
  std::map<std::string, std::string> fields;  // "" while a struct is being described (it may contain itself)
};
inline thread_local struct_collection* collecting_structs = nullptr;

template <class T>
inline constexpr bool is_optional_v = false;
template <class T>
inline constexpr bool is_optional_v<std::optional<T>> = true;

}  // namespace detail

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
  static void decode(detail::reader& r, std::string& out) { out.assign(detail::decode_bytes(r, MP_STR, "string")); }
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
    out.resize(b.size());
    if (!b.empty()) std::memcpy(out.data(), b.data(), b.size());
  }
  static std::string name() { return "bytes"; }
};

namespace detail {
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
}  // namespace detail

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

template <class K, class V, class C, class A>
requires(serializable<K>&& serializable<V>) struct codec<std::map<K, V, C, A>> : map_codec<std::map<K, V, C, A>> {
};

template <class K, class V, class H, class E, class A>
requires(serializable<K>&& serializable<V>) struct codec<std::unordered_map<K, V, H, E, A>>
    : map_codec<std::unordered_map<K, V, H, E, A>> {
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

/// Structs declared with FERRY_STRUCT: a map from field name to value.
template <class T>
requires detail::described_struct<T>
struct codec<T> {
  static void encode(detail::buffer& b, const T& v) {
    const auto fields = ferry_struct_fields(static_cast<const T*>(nullptr));
    b.commit(mp_encode_map(b.reserve(5), std::tuple_size_v<decltype(fields)>));
    std::apply(
        [&](const auto&... f) {
          ((codec<std::string>::encode(b, f.name), codec<member_t<decltype(f)>>::encode(b, v.*(f.member))), ...);
        },
        fields);
  }
  static void decode(detail::reader& r, T& out) {
    const auto fields = ferry_struct_fields(static_cast<const T*>(nullptr));
    constexpr std::size_t field_count = std::tuple_size_v<decltype(fields)>;
    static_assert(field_count <= 64, "FERRY_STRUCT supports at most 64 fields");
    const std::uint32_t n = detail::decode_container_header(r, MP_MAP, &name);
    std::uint64_t seen = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::string_view key_view = detail::decode_bytes(r, MP_STR, "a field name (string)");
      bool matched = false;
      std::size_t index = 0;
      std::apply(
          [&](const auto&... f) { ((matched = matched || decode_if_named(r, out, f, key_view, index++, seen)), ...); },
          fields);
      if (!matched && !detail::skip_value(r)) throw DecodeError(name(), "a truncated value");
    }
    std::size_t index = 0;
    std::apply([&](const auto&... f) { ((check_present(f, index++, seen)), ...); }, fields);
  }
  /// Its qualified name (`shop::Order`). While a signature is named, it also records its fields.
  static std::string name() {
    std::string qualified = detail::demangle(typeid(T).name());
    if (detail::struct_collection* collection = detail::collecting_structs;
        collection && collection->fields.emplace(qualified, "").second) {
      std::string described = "{";
      std::apply(
          [&](const auto&... f) {
            ((described += std::string(f.name) + ":" + codec<member_t<decltype(f)>>::name() + ","), ...);
          },
          ferry_struct_fields(static_cast<const T*>(nullptr)));
      if (described.size() > 1) described.pop_back();
      collection->fields[qualified] = described + "}";
    }
    return qualified;
  }

 private:
  template <class F>
  using member_t = std::remove_cvref_t<decltype(std::declval<T&>().*(std::declval<F>().member))>;

  template <class F>
  static bool decode_if_named(detail::reader& r, T& out, const F& f, std::string_view key, std::size_t index,
                              std::uint64_t& seen) {
    if (key != f.name) return false;
    try {
      codec<member_t<F>>::decode(r, out.*(f.member));
    } catch (const DecodeError& e) {
      throw e.within(std::string(".") + f.name);
    }
    seen |= std::uint64_t{1} << index;
    return true;
  }
  template <class F>
  static void check_present(const F& f, std::size_t index, std::uint64_t seen) {
    if (!(seen & (std::uint64_t{1} << index)) && !detail::is_optional_v<member_t<F>>) {
      throw DecodeError(codec<member_t<F>>::name(), "nothing (field missing)", std::string(".") + f.name);
    }
  }
};

/// Encodes `value` as MessagePack, appending to `out`.
template <serializable T>
void encode(detail::buffer& out, const T& value) {
  codec<T>::encode(out, value);
}

/// Decodes one T from `in`, advancing it; throws DecodeError.
template <serializable T>
T decode(detail::reader& in) {
  return detail::decode_value<T>(in);
}

}  // namespace ferry

#define FERRY_DETAIL_PARENS ()
#define FERRY_DETAIL_EXPAND(...) FERRY_DETAIL_EXPAND3(FERRY_DETAIL_EXPAND3(FERRY_DETAIL_EXPAND3(__VA_ARGS__)))
#define FERRY_DETAIL_EXPAND3(...) FERRY_DETAIL_EXPAND2(FERRY_DETAIL_EXPAND2(FERRY_DETAIL_EXPAND2(__VA_ARGS__)))
#define FERRY_DETAIL_EXPAND2(...) FERRY_DETAIL_EXPAND1(FERRY_DETAIL_EXPAND1(FERRY_DETAIL_EXPAND1(__VA_ARGS__)))
#define FERRY_DETAIL_EXPAND1(...) FERRY_DETAIL_EXPAND0(FERRY_DETAIL_EXPAND0(FERRY_DETAIL_EXPAND0(__VA_ARGS__)))
#define FERRY_DETAIL_EXPAND0(...) __VA_ARGS__
#define FERRY_DETAIL_FOR_EACH(macro, type, ...) \
  __VA_OPT__(FERRY_DETAIL_EXPAND(FERRY_DETAIL_FOR_EACH_STEP(macro, type, __VA_ARGS__)))
#define FERRY_DETAIL_FOR_EACH_STEP(macro, type, first, ...) \
  macro(type, first) __VA_OPT__(, FERRY_DETAIL_FOR_EACH_AGAIN FERRY_DETAIL_PARENS(macro, type, __VA_ARGS__))
#define FERRY_DETAIL_FOR_EACH_AGAIN() FERRY_DETAIL_FOR_EACH_STEP
#define FERRY_DETAIL_FIELD(type, member) \
  ::ferry::detail::field<type, decltype(type::member)> { #member, &type::member }

/// Makes a struct serializable: FERRY_STRUCT(type, field1, field2, ...), written after the struct in the
/// same namespace (its functions are found by argument-dependent lookup). Up to 64 fields.
#define FERRY_STRUCT(Type, ...)                                                             \
  [[maybe_unused]] inline auto ferry_struct_fields(const Type*) {                           \
    return ::std::make_tuple(FERRY_DETAIL_FOR_EACH(FERRY_DETAIL_FIELD, Type, __VA_ARGS__)); \
  }
