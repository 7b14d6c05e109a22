// The client this process makes its calls through: set by App::main for the entrypoint, and by the
// container runtime for nested calls. Thread-safe.
#pragma once

#include <memory>

#include "client/client.hpp"

namespace ferry::runtime {

void set_process_client(std::shared_ptr<client::client> c);
std::shared_ptr<client::client> process_client();

}  // namespace ferry::runtime
