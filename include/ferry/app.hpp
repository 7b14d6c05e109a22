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
///
/// Threading: declaring (App, App::function) is not thread-safe: do it from one thread, before app.main. Calling
/// through the returned handles is, from any thread (ferry/function.hpp). app.main runs `entry` on the calling
/// thread; an async entry runs on an event loop made of that thread.
///
/// Lifetime: the App must outlive app.main (declare it at namespace scope, beside its functions); the handles it
/// returns may outlive it. app.main connects to the server (or starts the embedded one) before `entry` runs and,
/// once `entry` has returned (an async one, with every task it created), lets go of the connection and stops the
/// embedded server it started: calls made after that go to FERRY_SERVER's server, as in a program without app.main.
///
/// Errors: a bad name, a name declared twice or options out of range throw std::invalid_argument where they are
/// declared; at namespace scope, where nothing can catch it, the program prints the error and exits with 1. An
/// exception that escapes `entry`, or a server that app.main cannot reach or register with, is printed (with the
/// remote stack, for a remote exception) and app.main returns 1.
#pragma once

#include <ferry/codec.hpp>
#include <ferry/detail/callable_traits.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/detail/msgpack.hpp>
#include <ferry/function.hpp>
#include <ferry/options.hpp>
#include <ferry/task.hpp>
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

template <class T>
void decode_argument(const std::string& function, std::size_t position, reader& args, T& value) {
  try {
    codec<T>::decode(args, value);
  } catch (const DecodeError& e) {
    throw_argument_error(function, position, e);
  }
}

/// Decodes the argument array of a call of `function` into the parameters' types.
template <class... A>
std::tuple<A...> decode_arguments(const std::string& function, reader& args) {
  const reader received = args;
  if (!decode_array_header_of(args, sizeof...(A))) throw_argument_count_error(function, sizeof...(A), received);
  std::tuple<A...> values;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (decode_argument(function, I + 1, args, std::get<I>(values)), ...);
  }
  (std::index_sequence_for<A...>{});
  return values;
}

template <class V>
void encode_value(buffer& out, V&& value) {
  codec<std::decay_t<V>>::encode(out, value);
}

/// Encodes what a body returned, or, for a Future (a tail call), passes its call on (hand_over): returns
/// the call id when the server takes it, 0 otherwise.
template <class R>
std::uint64_t finish_body(buffer& result, R&& returned) {
  if constexpr (is_future_v<std::remove_cvref_t<R>>) {
    return hand_over(*returned.state());
  } else {
    encode_value(result, std::forward<R>(returned));
    return 0;
  }
}

/// The container's side of a blocking body.
template <class R, class... A>
struct body_invoker {
  std::string function;
  std::shared_ptr<const std::function<R(A...)>> body;

  std::uint64_t operator()(reader args, buffer& result) const {
    std::tuple<A...> values = decode_arguments<A...>(function, args);
    if constexpr (std::is_void_v<R>) {
      std::apply(*body, std::move(values));
      encode_nil(result);
      return 0;
    } else {
      return finish_body(result, std::apply(*body, std::move(values)));
    }
  }
};

/// The container's side of an async body: a coroutine on the container's executor thread. The invoker
/// lives in the function's entry, as long as the App, so the coroutine may refer to it.
template <class V, class... A>
struct async_body_invoker {
  std::string function;
  std::shared_ptr<const std::function<Task<V>(A...)>> body;

  Task<std::uint64_t> operator()(buffer arguments, buffer& result) const {
    reader args{arguments.view()};
    std::tuple<A...> values = decode_arguments<A...>(function, args);
    if constexpr (std::is_void_v<V>) {
      co_await std::apply(*body, std::move(values));
      encode_nil(result);
      co_return 0;
    } else {
      co_return finish_body(result, co_await std::apply(*body, std::move(values)));
    }
  }
};

}  // namespace detail

class App {
 public:
  /// `name` identifies the app on the server: 1 to 128 letters, digits, '-' and '_' (the same rule as for
  /// function names; '.' separates the two in `APP.FUNCTION`). Throws std::invalid_argument for another name:
  /// catchable where the App is made in a function; made at namespace scope, the program prints the error
  /// and exits with 1 (as it does for the errors of App::function).
  explicit App(std::string name);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  const std::string& name() const noexcept;

  /// Declares `body` as the function `name` and returns its typed handle. `body` is a function,
  /// function pointer or lambda without captures that matter outside this process (the container runs
  /// its own copy); its parameter and result types must be serializable. Throws std::invalid_argument
  /// when `name` breaks the rule for names (see App), is already declared, or the options are out of range;
  /// at namespace scope, where nothing can catch it, the program prints the error and exits with 1.
  template <class F>
  auto function(std::string name, F body, FunctionOptions options = {}) {
    using traits = detail::callable_traits<F>;
    return declare(std::move(name), std::function<typename traits::function_type>(std::move(body)), options);
  }

  /// Runs the program. In a container (the server started this binary to serve a function) it serves
  /// inputs until the server lets it go and returns the exit code; `entry` does not run. Otherwise it
  /// connects to the server named by FERRY_SERVER (host:port), or starts an embedded server in this
  /// process when that is unset, runs `entry`, and stops what it started. `entry` is a blocking callable
  /// (`void()`), or an async one returning `ferry::Task<void>`, which runs on an event loop on the calling
  /// thread. Returns 0, or 1 after printing the error when `entry` throws.
  template <class Entry>
  int main(int argc, char** argv, Entry entry) {
    if constexpr (is_task_v<std::invoke_result_t<Entry&>>) {
      return run(argc, argv, nullptr, std::function<Task<void>()>(std::move(entry)));
    } else {
      return run(argc, argv, std::function<void()>(std::move(entry)), nullptr);
    }
  }

 private:
  template <class R, class... A>
  Function<R(A...)> declare(std::string name, std::function<R(A...)> body, const FunctionOptions& options) {
    auto shared_body = std::make_shared<const std::function<R(A...)>>(std::move(body));
    auto entry = std::make_shared<detail::function_entry>();
    entry->name = name;
    auto described = detail::describe_signature<detail::body_value_t<R>, A...>();
    entry->signature = std::move(described.signature);
    entry->structs = std::move(described.structs);
    entry->options = options;
    if constexpr (is_task_v<R>) {
      entry->invoke_async = detail::async_body_invoker<task_value_t<R>, A...>{name, shared_body};
    } else {
      entry->invoke = detail::body_invoker<R, A...>{name, shared_body};
    }
    return Function<R(A...)>(add(std::move(entry)), std::move(shared_body));
  }

  int run(int argc, char** argv, const std::function<void()>& entry, const std::function<Task<void>()>& async_entry);

  /// Validates and stores the entry, filling in the app's name.
  std::shared_ptr<const detail::function_entry> add(std::shared_ptr<detail::function_entry> entry);

  std::unique_ptr<detail::app_state> state_;
};

}  // namespace ferry
