// Container mode: the app binary, started by the server to serve one function, runs its inputs.
#pragma once

#include "runtime/app_state.hpp"

namespace ferry::container {

/// True when this process was started by a ferry server as a container.
bool in_container();

/// Connects to the server, serves inputs of the function named by FERRY_FUNCTION until the server
/// closes the connection, and returns the exit code. Never returns into the app's entrypoint.
int run_container(const detail::app_state& app);

}  // namespace ferry::container
