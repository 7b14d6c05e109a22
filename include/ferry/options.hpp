/// ferry/options.hpp: per-function options, set with designated initializers:
///     app.function("f", f, {.max_inputs = 8, .max_containers = 2})
#pragma once

namespace ferry {

struct FunctionOptions {
  /// Inputs one container runs at once. Blocking bodies run them on that many threads of the container.
  int max_inputs = 1;
  /// Containers the server may run for this function at once; more start while inputs queue.
  int max_containers = 8;
};

}  // namespace ferry
