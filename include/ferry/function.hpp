/// ferry/function.hpp: ferry::Function<R(A...)>, the typed handle App::function returns.
///
/// A handle is a small value: copy it freely and use it from any thread. `f.remote(args...)` runs the body
/// in one of the function's containers and blocks for the result; `f.local(args...)` runs it in the
/// calling process; `f(args...)` is the direct call, which for a blocking body is `f.remote(args...)`.
#pragma once

#include <ferry/codec.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/errors.hpp>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace ferry {

template <class Signature>
class Function;

namespace detail {

template <class R>
R decode_result(const function_entry& function, const buffer& encoded) {
  if constexpr (std::is_void_v<R>) {
    return;
  } else {
    reader r{encoded.view()};
    try {
      return ferry::decode<R>(r);
    } catch (const DecodeError& e) {
      throw Error("the result of '" + function.name + "' does not decode as " + codec<R>::name() + ": " + e.what() +
                  "; the caller and the container disagree on the function's signature (rebuild both from one source)");
    }
  }
}

template <class... A>
void encode_arguments(buffer& out, const A&... args) {
  out.commit(mp_encode_array(out.reserve(5), sizeof...(A)));
  (codec<A>::encode(out, args), ...);
}

}  // namespace detail

template <class R, class... A>
class Function<R(A...)> {
  static_assert((serializable<A> && ...),
                "ferry: every parameter type must be serializable: a supported type (see ferry/codec.hpp) "
                "or a struct declared with FERRY_STRUCT(type, fields...)");
  static_assert(std::is_void_v<R> || serializable<R>,
                "ferry: the result type must be void or serializable: a supported type (see ferry/codec.hpp) "
                "or a struct declared with FERRY_STRUCT(type, fields...)");

 public:
  using result_type = R;
  using body_type = std::function<R(A...)>;

  /// The `remote` member: `f.remote(args...)`.
  class remote_caller {
   public:
    /// Runs the call in a container and returns its result. Throws RemoteError (or the remote exception's
    /// standard type), ArgumentError, UnknownFunctionError, ContainerCrashedError, ContainerStartError,
    /// PayloadTooLargeError or ConnectionError. Must run inside app.main (or in a container).
    R operator()(const A&... args) const {
      detail::buffer result =
          detail::call_remote(*entry_, [&](detail::buffer& out) { detail::encode_arguments(out, args...); });
      return detail::decode_result<R>(*entry_, result);
    }

   private:
    friend class Function;
    std::shared_ptr<const detail::function_entry> entry_;
  };

  Function(std::shared_ptr<const detail::function_entry> entry, std::shared_ptr<const body_type> body)
      : entry_(std::move(entry)), body_(std::move(body)) {
    remote.entry_ = entry_;
  }

  remote_caller remote;

  /// Runs the body in the calling process, as a plain call.
  R local(const A&... args) const { return (*body_)(args...); }

  /// The direct call: for a blocking body, the same as remote(args...).
  R operator()(const A&... args) const { return remote(args...); }

  const std::string& name() const noexcept { return entry_->name; }
  const std::string& signature() const noexcept { return entry_->signature; }

 private:
  std::shared_ptr<const detail::function_entry> entry_;
  std::shared_ptr<const body_type> body_;
};

}  // namespace ferry
