// The client this process makes its calls through: set by App::main for the entrypoint, and by the
// container runtime for nested calls. Thread-safe.
#pragma once

#include <ferry/task.hpp>
#include <functional>
#include <memory>
#include <source_location>
#include <string>

#include "client/client.hpp"

namespace ferry::runtime {

void set_process_client(std::shared_ptr<client::client> c);
std::shared_ptr<client::client> process_client();

/// The process client, or Error saying that `function` can only be called inside app.main.
std::shared_ptr<client::client> require_client(const std::string& function);

/// Awaits a completion delivered on the client's I/O thread: `start` is given the callback to complete;
/// the awaiting coroutine resumes on its own executor with the error or the payload.
Task<detail::buffer> await_io_completion(const std::function<void(client::call_callback)>& start);

/// On an event-loop thread, warns (once per call site) that a blocking wait for `function` holds the loop.
void warn_if_blocking_on_loop(const std::string& function, const std::source_location& site);

}  // namespace ferry::runtime
