/// ferry/detail/callable_traits.hpp: the result and parameter types of a function, function pointer,
/// lambda or other callable with one non-template call operator.
#pragma once

#include <functional>
#include <type_traits>

namespace ferry::detail {

template <class R, class... A>
struct signature_of {
  using result = R;
  using function_type = R(std::decay_t<A>...);
};

template <class F>
struct callable_traits : callable_traits<decltype(&std::remove_cvref_t<F>::operator())> {};

template <class R, class... A>
struct callable_traits<R (*)(A...)> : signature_of<R, A...> {};
template <class R, class... A>
struct callable_traits<R (*)(A...) noexcept> : signature_of<R, A...> {};
template <class R, class... A>
struct callable_traits<R(A...)> : signature_of<R, A...> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...)> : signature_of<R, A...> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const> : signature_of<R, A...> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) noexcept> : signature_of<R, A...> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const noexcept> : signature_of<R, A...> {};

}  // namespace ferry::detail
