/// ferry/detail/function_entry.hpp: a function as an app registers it: name, signature, options and the
/// type-erased body the container runs. Immutable after registration; shared freely between threads.
#pragma once

#include <ferry/detail/buffer.hpp>
#include <ferry/options.hpp>
#include <ferry/task.hpp>
#include <functional>
#include <memory>
#include <source_location>
#include <string>

namespace ferry::detail {

struct function_entry {
  std::string app;
  std::string name;
  /// `int64(string,vector<int64>)`: the codec's names of the result and parameter types. An async
  /// body's result is named by its value: `Task<int64>` is `int64`.
  std::string signature;
  /// The fields of every struct the signature mentions: `shop::Order{id:int64,qty:int32}`, ";"-separated,
  /// by name; "" when there are none. Two programs agree on a signature only when these agree too.
  std::string structs;
  FunctionOptions options;
  /// Blocking bodies: decodes the arguments (a MessagePack array), runs the body and appends the encoded
  /// result to `result`, returning 0; or, when the body returns a Future (a tail call), passes that future's
  /// call on (detail::hand_over): returns its call id when the server runs it, 0 with the input's next_hop
  /// set when it runs next in this container. Throws ArgumentError for arguments that do not decode, and
  /// whatever the body throws.
  std::function<std::uint64_t(reader args, buffer& result)> invoke;
  /// Async bodies (set instead of invoke): the same as a coroutine, run on the container's executor thread.
  std::function<Task<std::uint64_t>(buffer args, buffer& result)> invoke_async;

  bool is_async() const noexcept { return static_cast<bool>(invoke_async); }
};

/// Calls `function` remotely and blocks until its result. `encode_args` appends the MessagePack array
/// of arguments to the buffer it is given (the outgoing frame: arguments are encoded exactly once).
/// Returns the encoded result; throws the ferry::Error (or rethrown standard exception) for a failure.
/// `site` names the caller's source line in the warning given when this blocks an event loop.
buffer call_remote(const function_entry& function, const std::function<void(buffer&)>& encode_args,
                   const std::source_location& site);

/// The same as an awaitable: suspends the calling coroutine, never its thread. Cancelling the awaiting
/// coroutine cancels the remote input and throws CancelledError.
Task<buffer> call_remote_async(std::shared_ptr<const function_entry> function,
                               std::function<void(buffer&)> encode_args);

}  // namespace ferry::detail
