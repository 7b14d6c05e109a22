/// ferry/options.hpp: per-function options, set with designated initializers:
///     app.function("f", f, {.max_inputs = 8, .max_containers = 2})
#pragma once

#include <chrono>

namespace ferry {

struct FunctionOptions {
  /// Inputs one container runs at once: blocking bodies on that many threads of the container, async bodies
  /// as that many coroutines on its one executor thread.
  int max_inputs = 1;
  /// Containers the server may run for this function at once; more start while inputs queue.
  int max_containers = 8;
  /// Async bodies: a step that holds the container's executor thread longer than this (without reaching
  /// a co_await that suspends) makes the container log a warning naming the function and call id.
  std::chrono::milliseconds stall_threshold{100};
};

}  // namespace ferry
