// Reading the process's environment. Stateless.
#pragma once

#include <cstdlib>
#include <string>

namespace ferry {

/// The value of environment variable `name`, or "" when it is not set. (Read at start-up or configuration,
/// before any thread of ours changes the environment; nothing in ferry does.)
inline std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): see above
  return value ? value : "";
}

}  // namespace ferry
