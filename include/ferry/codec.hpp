/// ferry/codec.hpp: how arguments and results travel: MessagePack, through the customization point
/// ferry::codec<T>.
///
/// A function's parameter and result types must be `serializable`: codec<T> is specialized for them.
/// ferry specializes it for bool, every integer type, float, double, enums, std::string, ferry::bytes,
/// std::vector, std::map, std::unordered_map, std::optional, std::pair and std::tuple (ferry/codec_std.hpp),
/// and for structs declared with FERRY_STRUCT (ferry/struct.hpp). This header includes both, so including it
/// is enough for every supported type. docs/protocol.md shows the bytes each type becomes.
///
/// To support another type, specialize codec<T> in namespace ferry, usually by composing the codecs above:
///
///     struct celsius { double degrees; };
///     template <>
///     struct ferry::codec<celsius> {
///       static void encode(ferry::detail::buffer& b, const celsius& v) { ferry::codec<double>::encode(b, v.degrees); }
///       static void decode(ferry::detail::reader& r, celsius& out) { ferry::codec<double>::decode(r, out.degrees); }
///       static std::string name() { return "celsius"; }
///     };
///
/// The contract of a specialization:
///   - `encode(b, value)` appends exactly one MessagePack value to `b`. It runs on the calling thread, at times
///     while the process's connection to the server is locked (arguments are encoded straight into the
///     outgoing frame): keep it quick and do not call ferry from it. An exception it throws reaches the
///     caller, and nothing is sent.
///   - `decode(r, out)` reads exactly one value from `r`, advancing it, and treats the bytes as untrusted: it
///     throws ferry::DecodeError (DecodeError::within adds where in a nested value) for a value of another
///     type, a truncated one, or one that does not fit, and never reads past `r.end`. ferry decodes into a
///     value-initialized `out` (so T must be default-constructible); after a throw, `out` is unspecified.
///   - `name()` names the type in signatures (`ferry apps`, SignatureMismatchError) and in decode errors. Two
///     programs agree on a function only when its signature's names agree, so a name must not change while
///     the encoding stays, and two types that encode differently must not share one.
/// A codec is stateless (static members only), and ferry calls it from any thread, from several at once.
#pragma once

#include <concepts>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/msgpack.hpp>
#include <ferry/errors.hpp>
#include <string>

namespace ferry {

/// codec<T>::encode(buffer&, const T&), codec<T>::decode(reader&, T&) and codec<T>::name() for every
/// supported T (see the contract above). Unspecialized for unsupported types, which the `serializable` concept
/// then rejects: a Function whose parameter or result type is not serializable does not compile.
template <class T>
struct codec;

template <class T>
concept serializable = requires(detail::buffer& b, const T& value, detail::reader& r, T& out) {
  codec<T>::encode(b, value);
  codec<T>::decode(r, out);
  { codec<T>::name() } -> std::convertible_to<std::string>;
};

namespace detail {

template <class T>
T decode_value(reader& r) {
  T value{};
  codec<T>::decode(r, value);
  return value;
}

}  // namespace detail

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

// Every codec ferry provides (each of these includes this header first, whichever is included first).
#include <ferry/codec_std.hpp>
#include <ferry/struct.hpp>
