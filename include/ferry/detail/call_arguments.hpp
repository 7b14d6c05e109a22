/// ferry/detail/call_arguments.hpp: what may be passed as a call's arguments (values, or futures of the
/// parameter types), how they are encoded, the compile-time rejection of futures wrapped in containers, and how
/// a call's result is decoded.
#pragma once

#include <array>
#include <ferry/codec.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/detail/msgpack.hpp>
#include <ferry/future.hpp>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ferry::detail {

/// A value or future of a void function's result.
template <class V>
using future_value_t = std::conditional_t<std::is_void_v<V>, std::monostate, V>;

/// A value that a call will produce: a Future, or the CallTask of an async call not yet awaited.
template <class T>
inline constexpr bool is_pending_v = is_future_v<T>;
template <class T>
inline constexpr bool is_pending_v<CallTask<T>> = true;

template <class T>
struct wraps_future : std::false_type {};
template <class T>
inline constexpr bool holds_future = is_pending_v<T> || wraps_future<T>::value;
template <class T, class A>
struct wraps_future<std::vector<T, A>> : std::bool_constant<holds_future<T>> {};
template <class T, std::size_t N>
struct wraps_future<std::array<T, N>> : std::bool_constant<holds_future<T>> {};
template <class T>
struct wraps_future<std::optional<T>> : std::bool_constant<holds_future<T>> {};
template <class K, class T, class C, class A>
struct wraps_future<std::map<K, T, C, A>> : std::bool_constant<holds_future<T>> {};
template <class K, class T, class H, class E, class A>
struct wraps_future<std::unordered_map<K, T, H, E, A>> : std::bool_constant<holds_future<T>> {};
template <class A, class B>
struct wraps_future<std::pair<A, B>> : std::bool_constant<holds_future<A> || holds_future<B>> {};
template <class... T>
struct wraps_future<std::tuple<T...>> : std::bool_constant<(holds_future<T> || ...)> {};

/// True when some argument is a container (or pair, tuple) holding futures.
template <class... Args>
inline constexpr bool any_wrapped_future = (wraps_future<std::remove_cvref_t<Args>>::value || ...);

/// True when some argument is a Future or a CallTask.
template <class... Args>
inline constexpr bool any_future = (is_pending_v<std::remove_cvref_t<Args>> || ...);

/// An argument for a parameter of type P: a value convertible to P, or a Future<P> or CallTask<P>.
template <class P, class Arg>
inline constexpr bool argument_for = [] {
  using D = std::remove_cvref_t<Arg>;
  if constexpr (is_pending_v<D>) {
    return std::is_same_v<future_value_t<typename D::value_type>, future_value_t<P>>;
  } else {
    return std::is_convertible_v<const Arg&, const P&>;
  }
}();

template <class>
inline constexpr bool dependent_false = false;

#define FERRY_DETAIL_REJECT_WRAPPED_FUTURES(...)                                                                   \
  static_assert(::ferry::detail::dependent_false<std::tuple<__VA_ARGS__>>,                                         \
                "ferry: a container (or pair, tuple) holding futures cannot be passed where values are expected: " \
                "pass each ferry::Future directly as an argument, or use f.map / f.reduce, which take a "          \
                "std::vector<ferry::Future<T>>")

/// Encodes the argument array of a call whose arguments are all values.
template <class... A>
void encode_arguments(buffer& out, const A&... args) {
  encode_array_header(out, sizeof...(A));
  (codec<A>::encode(out, args), ...);
}

/// Encodes the argument array for parameters `P...`: values as themselves, futures (and call tasks) as nil
/// placeholders, recorded in `deps` with their positions.
template <class... P, class... Args, std::size_t... I>
void encode_call_arguments(buffer& out, std::vector<future_dependency>& deps, std::index_sequence<I...>,
                           const Args&... args) {
  encode_array_header(out, sizeof...(P));
  (
      [&] {
        using D = std::remove_cvref_t<Args>;
        if constexpr (is_pending_v<D>) {
          encode_nil(out);
          deps.emplace_back(static_cast<std::uint32_t>(I), args.state());
        } else {
          using Param = std::tuple_element_t<I, std::tuple<P...>>;
          const Param& value = args;
          codec<Param>::encode(out, value);
        }
      }(),
      ...);
}

/// A future of a call of `entry` with `args`, not started.
template <class V, class... P, class... Args>
Future<future_value_t<V>> make_call_future(std::shared_ptr<const function_entry> entry, const Args&... args) {
  buffer encoded;
  std::vector<future_dependency> deps;
  encode_call_arguments<P...>(encoded, deps, std::index_sequence_for<Args...>{}, args...);
  return Future<future_value_t<V>>(make_future(std::move(entry), std::move(encoded), std::move(deps)));
}

/// The value of a call of `function` from its encoded result (nothing for void); throws Error when it does
/// not decode.
template <class V>
V decode_result(const function_entry& function, const buffer& encoded) {
  if constexpr (std::is_void_v<V>) {
    return;
  } else {
    return decode_call_result<V>("'" + function.name + "'", encoded);
  }
}

}  // namespace ferry::detail
