/// ferry/detail/function_entry.hpp: a function as an app registers it: name, signature, options and the
/// type-erased body the container runs. Immutable after registration; shared freely between threads.
#pragma once

#include <ferry/detail/buffer.hpp>
#include <ferry/options.hpp>
#include <functional>
#include <string>

namespace ferry::detail {

struct function_entry {
  std::string app;
  std::string name;
  /// `int64(string,vector<int64>)`: the codec's names of the result and parameter types.
  std::string signature;
  FunctionOptions options;
  /// Decodes the arguments (a MessagePack array), runs the body and appends the encoded result to
  /// `result`. Throws ArgumentError for arguments that do not decode, and whatever the body throws.
  std::function<void(reader args, buffer& result)> invoke;
};

/// Calls `function` remotely and blocks until its result. `encode_args` appends the MessagePack array
/// of arguments to the buffer it is given (the outgoing frame: arguments are encoded exactly once).
/// Returns the encoded result; throws the ferry::Error (or rethrown standard exception) for a failure.
buffer call_remote(const function_entry& function, const std::function<void(buffer&)>& encode_args);

}  // namespace ferry::detail
