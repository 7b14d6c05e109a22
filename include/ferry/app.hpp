/// ferry/app.hpp: ferry::App, where a program declares its functions and runs its entrypoint.
///
///     ferry::App app{"example"};
///     auto square = app.function("square", [](std::int64_t x) { return x * x; });
///     int main(int argc, char** argv) {
///       return app.main(argc, argv, [] { std::cout << square.remote(7) << '\n'; });
///     }
///
/// Declare every function before app.main runs (at namespace scope, or in main before calling app.main):
/// a container is the same binary started again, and serves the functions its App declared.
/// Declaring is not thread-safe; calling through the returned handles is.
#pragma once

#include <ferry/codec.hpp>
#include <ferry/detail/callable_traits.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/function.hpp>
#include <ferry/options.hpp>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace ferry {

namespace detail {

struct app_state;

/// Throws ArgumentError naming the function, the argument's position and both types.
[[noreturn]] void throw_argument_error(const std::string& function, std::size_t position, const DecodeError& e);
[[noreturn]] void throw_argument_count_error(const std::string& function, std::size_t expected, const reader& r);

template <class R, class... A>
struct body_invoker {
  std::string function;
  std::shared_ptr<const std::function<R(A...)>> body;

  void operator()(reader args, buffer& result) const {
    const reader received = args;
    const bool is_argument_array = !args.at_end() && mp_typeof(*args.pos) == MP_ARRAY &&
                                   mp_check_array(args.pos, args.end) <= 0 &&
                                   mp_decode_array(&args.pos) == sizeof...(A);
    if (!is_argument_array) throw_argument_count_error(function, sizeof...(A), received);
    std::tuple<A...> values;
    decode_each(args, values, std::index_sequence_for<A...>{});
    if constexpr (std::is_void_v<R>) {
      std::apply(*body, std::move(values));
      result.commit(mp_encode_nil(result.reserve(1)));
    } else {
      codec<R>::encode(result, std::apply(*body, std::move(values)));
    }
  }

  template <std::size_t... I>
  void decode_each(reader& args, std::tuple<A...>& values, std::index_sequence<I...>) const {
    (decode_one<I>(args, std::get<I>(values)), ...);
  }
  template <std::size_t I, class T>
  void decode_one(reader& args, T& value) const {
    try {
      codec<T>::decode(args, value);
    } catch (const DecodeError& e) {
      throw_argument_error(function, I + 1, e);
    }
  }
};

template <class T>
std::string type_name() {
  if constexpr (std::is_void_v<T>) {
    return "void";
  } else {
    return codec<T>::name();
  }
}

template <class R, class... A>
std::string signature_string() {
  std::string s = type_name<R>() + "(";
  ((s += codec<A>::name() + ","), ...);
  if (sizeof...(A) > 0) s.pop_back();
  return s + ")";
}

}  // namespace detail

class App {
 public:
  /// `name` identifies the app on the server: letters, digits, '-', '_' and '.'.
  explicit App(std::string name);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  const std::string& name() const noexcept;

  /// Declares `body` as the function `name` and returns its typed handle. `body` is a function,
  /// function pointer or lambda without captures that matter outside this process (the container runs
  /// its own copy); its parameter and result types must be serializable. Throws std::invalid_argument
  /// when `name` is already declared or the options are out of range.
  template <class F>
  auto function(std::string name, F body, FunctionOptions options = {}) {
    using traits = detail::callable_traits<F>;
    return declare(std::move(name), std::function<typename traits::function_type>(std::move(body)), options);
  }

  /// Runs the program. In a container (the server started this binary to serve a function) it serves
  /// inputs until the server lets it go and returns the exit code; `entry` does not run. Otherwise it
  /// connects to the server named by FERRY_SERVER (host:port), or starts an embedded server in this
  /// process when that is unset, runs `entry`, and stops what it started. Returns 0, or 1 after
  /// printing the error when `entry` throws.
  int main(int argc, char** argv, std::function<void()> entry);

 private:
  template <class R, class... A>
  Function<R(A...)> declare(std::string name, std::function<R(A...)> body, const FunctionOptions& options) {
    auto shared_body = std::make_shared<const std::function<R(A...)>>(std::move(body));
    auto entry = std::make_shared<detail::function_entry>();
    entry->name = name;
    entry->signature = detail::signature_string<R, A...>();
    entry->options = options;
    entry->invoke = detail::body_invoker<R, A...>{name, shared_body};
    return Function<R(A...)>(add(std::move(entry)), std::move(shared_body));
  }

  /// Validates and stores the entry, filling in the app's name.
  std::shared_ptr<const detail::function_entry> add(std::shared_ptr<detail::function_entry> entry);

  std::unique_ptr<detail::app_state> state_;
};

}  // namespace ferry
