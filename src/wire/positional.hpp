// Positional structs: the wire's messages, named field by field in C++ but sent as a MessagePack array of
// their fields in declaration order, exactly as the std::tuple each one replaced. (FERRY_STRUCT, for users'
// types, sends a map from field name to value instead: readable as JSON at the HTTP edge, but every name
// would then travel in every frame, and the wire's bytes would change.) Stateless.
#pragma once

#include <array>
#include <compare>
#include <concepts>
#include <cstddef>
#include <ferry/codec.hpp>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace ferry::wire {

/// A struct declared with FERRY_WIRE_FIELDS: `fields()` ties its fields in wire order (a tuple of
/// references, const on a const struct), and `field_names` names them as docs/protocol.md does.
template <class T>
concept positional = std::is_class_v<T> && requires(T& value, const T& constant) {
  value.fields();
  constant.fields();
  T::field_names;
};

/// The fields of a header or row as a tuple, of references for a positional struct. A std::tuple is its own,
/// so that tests and fuzzers can still write frames whose headers match no message.
template <class T>
decltype(auto) fields_of(T& value) {
  if constexpr (positional<std::remove_const_t<T>>) {
    return value.fields();
  } else {
    return (value);
  }
}

template <class T>
inline constexpr std::size_t field_count =
    std::tuple_size_v<std::remove_cvref_t<decltype(fields_of(std::declval<T&>()))>>;

/// Writes the fields of `value` one after the other, without an array header of their own.
template <class T>
void encode_fields(detail::buffer& out, const T& value) {
  std::apply([&out](const auto&... field) { (codec<std::remove_cvref_t<decltype(field)>>::encode(out, field), ...); },
             fields_of(value));
}

template <class T, std::size_t I, class Field>
void decode_field(detail::reader& in, Field& field) {
  try {
    codec<Field>::decode(in, field);
  } catch (const DecodeError& e) {
    if constexpr (positional<T>) {
      throw e.within(std::string(".") + T::field_names[I]);
    } else {
      throw e.within("[" + std::to_string(I) + "]");
    }
  }
}

/// How many of T's fields a peer must send: all of them, unless T says that its last ones came later
/// (`static constexpr std::size_t required_fields = N;`), so that a peer built before them may leave them
/// out. A field is only ever added at the end, with a default that means what the older peer meant.
template <class T>
constexpr std::size_t required_fields() {
  if constexpr (requires { T::required_fields; }) {
    static_assert(T::required_fields <= field_count<T>);
    return T::required_fields;
  } else {
    return field_count<T>;
  }
}

/// Reads `n` values (`required_fields<T>()` <= n <= `field_count<T>`) into the first n fields of `value`, in
/// order; the others keep their defaults. Throws DecodeError, its path naming the field (`.call_id`, or `[1]`
/// for a tuple).
template <class T>
void decode_fields(detail::reader& in, T& value, std::size_t n = field_count<T>) {
  [&]<std::size_t... I>(auto&& fields, std::index_sequence<I...>) {
    ((I < n ? decode_field<T, I>(in, std::get<I>(fields)) : void()), ...);
  }
  (fields_of(value), std::make_index_sequence<field_count<T>>{});
}

}  // namespace ferry::wire

namespace ferry {

/// Positional structs (nested in headers, or the rows of a reply): an array of their fields.
template <class T>
requires wire::positional<T>
struct codec<T> {
  static void encode(detail::buffer& out, const T& value) {
    out.commit(mp_encode_array(out.reserve(5), wire::field_count<T>));
    wire::encode_fields(out, value);
  }
  static void decode(detail::reader& in, T& value) {
    const std::uint32_t n = detail::decode_container_header(in, MP_ARRAY, &name);
    if (n < wire::required_fields<T>() || n > wire::field_count<T>) {
      throw DecodeError(name(), "array of " + std::to_string(n));
    }
    wire::decode_fields(in, value, n);
  }
  /// Its qualified name (`ferry::wire::call_row`), in decoding errors.
  static std::string name() { return detail::demangle(typeid(T).name()); }
};

}  // namespace ferry

#define FERRY_WIRE_DETAIL_NAME(type, member) #member

/// In the body of struct `Type`, after its fields: FERRY_WIRE_FIELDS(Type, field1, field2, ...), every field
/// in wire order, makes it a wire::positional struct (a field left out would not travel). It compares as the
/// tuple of its fields did: field by field, in order.
#define FERRY_WIRE_FIELDS(Type, ...)                                                                              \
  auto fields() { return ::std::tie(__VA_ARGS__); }                                                               \
  auto fields() const { return ::std::tie(__VA_ARGS__); }                                                         \
  static constexpr ::std::array field_names = {FERRY_DETAIL_FOR_EACH(FERRY_WIRE_DETAIL_NAME, Type, __VA_ARGS__)}; \
  auto operator<=>(const Type&) const = default
