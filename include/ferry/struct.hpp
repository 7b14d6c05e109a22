/// ferry/struct.hpp: FERRY_STRUCT, which makes a struct of the program's own serializable, field by field.
///
///     namespace shop {
///     struct Order { std::int64_t id; std::vector<std::string> items; std::optional<std::string> note; };
///     FERRY_STRUCT(Order, id, items, note)      // after the struct, in the struct's namespace
///     }
///
/// A struct is encoded as a MessagePack map from field name to value, in the order FERRY_STRUCT lists them, so
/// that it reads naturally as JSON at the HTTP edge. Decoding takes the fields in any order and skips unknown
/// ones; a missing field is a DecodeError (naming it) unless it is a std::optional, which is left empty. Every
/// field's type must be serializable (ferry/codec.hpp); up to 64 fields, and fields FERRY_STRUCT does not list
/// are neither sent nor compared.
///
/// A signature names a struct by its qualified name (`shop::Order`) and records its fields' names and types
/// (`shop::Order{id:int64,items:vector<string>,note:optional<string>}`), so two programs whose structs of the
/// same name differ disagree on the signature (ferry/signature.hpp). Stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ferry/codec.hpp>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/msgpack.hpp>
#include <ferry/errors.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace ferry {

namespace detail {

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

/// Structs declared with FERRY_STRUCT: a map from field name to value.
template <class T>
requires detail::described_struct<T>
struct codec<T> {
  static void encode(detail::buffer& b, const T& v) {
    const auto fields = ferry_struct_fields(static_cast<const T*>(nullptr));
    detail::encode_map_header(b, std::tuple_size_v<decltype(fields)>);
    std::apply(
        [&](const auto&... f) {
          ((detail::encode_str(b, f.name), codec<member_t<decltype(f)>>::encode(b, v.*(f.member))), ...);
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
