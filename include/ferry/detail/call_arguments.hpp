/// ferry/detail/call_arguments.hpp: what may be passed as a call's arguments (values, or futures of the
/// parameter types), how they are encoded, and the compile-time rejection of futures wrapped in containers.
#pragma once

#include <array>
#include <ferry/codec.hpp>
#include <ferry/future.hpp>
#include <map>
#include <optional>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ferry::detail {

/// A value or future of a void function's result.
template <class V>
using future_value_t = std::conditional_t<std::is_void_v<V>, std::monostate, V>;

template <class T>
struct wraps_future : std::false_type {};
template <class T, class A>
struct wraps_future<std::vector<Future<T>, A>> : std::true_type {};
template <class T, std::size_t N>
struct wraps_future<std::array<Future<T>, N>> : std::true_type {};
template <class T>
struct wraps_future<std::optional<Future<T>>> : std::true_type {};
template <class K, class T, class C, class A>
struct wraps_future<std::map<K, Future<T>, C, A>> : std::true_type {};
template <class K, class T, class H, class E, class A>
struct wraps_future<std::unordered_map<K, Future<T>, H, E, A>> : std::true_type {};
template <class A, class B>
struct wraps_future<std::pair<A, B>>
    : std::bool_constant<is_future_v<A> || is_future_v<B> || wraps_future<A>::value || wraps_future<B>::value> {};
template <class... T>
struct wraps_future<std::tuple<T...>> : std::bool_constant<((is_future_v<T> || wraps_future<T>::value) || ...)> {};

/// True when some argument is a container (or pair, tuple) holding futures.
template <class... Args>
inline constexpr bool any_wrapped_future = (wraps_future<std::remove_cvref_t<Args>>::value || ...);

template <class... Args>
inline constexpr bool any_future = (is_future_v<std::remove_cvref_t<Args>> || ...);

/// An argument for a parameter of type P: a value convertible to P, or a Future<P>.
template <class P, class Arg>
inline constexpr bool argument_for = [] {
  using D = std::remove_cvref_t<Arg>;
  if constexpr (is_future_v<D>) {
    return std::is_same_v<typename D::value_type, future_value_t<P>>;
  } else {
    return std::is_convertible_v<const Arg&, const P&>;
  }
}();

template <class>
inline constexpr bool dependent_false = false;

#define FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args)                                                                  \
  static_assert(::ferry::detail::dependent_false<std::tuple<Args...>>,                                             \
                "ferry: a container (or pair, tuple) holding futures cannot be passed where values are expected: " \
                "pass each ferry::Future directly as an argument, or use f.map / f.reduce, which take a "          \
                "std::vector<ferry::Future<T>>")

/// Encodes the argument array for parameters `P...`: values as themselves, futures as nil placeholders,
/// recorded in `deps` with their positions.
template <class... P, class... Args, std::size_t... I>
void encode_call_arguments(buffer& out, std::vector<future_dependency>& deps, std::index_sequence<I...>,
                           const Args&... args) {
  out.commit(mp_encode_array(out.reserve(5), sizeof...(P)));
  (
      [&] {
        using D = std::remove_cvref_t<Args>;
        if constexpr (is_future_v<D>) {
          out.commit(mp_encode_nil(out.reserve(1)));
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

}  // namespace ferry::detail
