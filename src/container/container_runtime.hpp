// Container mode: the app binary, started by the server to serve one function, runs its inputs.
#pragma once

#include <ferry/detail/function_entry.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "client/client.hpp"

namespace ferry::container {

/// True when this process was started by a ferry server as a container.
bool in_container();

/// What container mode needs of the program: the app its binary declares, and what to do with the
/// connection once it is up (the runtime makes it the client that bodies' nested calls go through).
struct served_app {
  std::string name;
  const std::vector<std::shared_ptr<const detail::function_entry>>& functions;
  std::function<void(std::shared_ptr<client::client>)> connected;
};

/// Connects to the server, serves inputs of the function named by FERRY_FUNCTION until the server
/// closes the connection, and returns the exit code. Never returns into the app's entrypoint.
int run_container(const served_app& app);

}  // namespace ferry::container
