// The client this process makes its calls through: set by App::main for the entrypoint, and by the
// container runtime for nested calls. Thread-safe.
#pragma once

#include <ferry/task.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <source_location>
#include <string>

#include "client/client.hpp"

namespace ferry::runtime {

/// The address programs and the CLI use when neither FERRY_SERVER nor --server names one.
inline constexpr const char* default_server_address = "127.0.0.1:7700";

/// How to reach a standalone server: `address` (empty: FERRY_SERVER, or default_server_address), with
/// FERRY_TOKEN, or else the token in `state_dir` (empty: the default state directory), read once connected.
client::connect_options server_connect_options(std::string address, std::filesystem::path state_dir = {});

/// The client set by App::main (for its entrypoint) or by the container runtime; nullptr otherwise.
void set_process_client(std::shared_ptr<client::client> c);
std::shared_ptr<client::client> process_client();

/// The client to call `function` through: the process client, or outside app.main (a program that only
/// calls deployed functions) a connection of its own to the standalone server (server_connect_options),
/// made on first use and made again once the server has gone (restarted). Throws ConnectionError when the
/// server cannot be reached.
std::shared_ptr<client::client> require_client(const std::string& function);

/// Awaits a completion delivered on the client's I/O thread: `start` is given the callback to complete;
/// the awaiting coroutine resumes on its own executor with the error or the payload. When the awaiting
/// coroutine is cancelled first (Asio's per-operation cancellation: gather, a cancellation signal), the await
/// ends at once with a CancelledError whose message `on_cancel` returns, after it has run on the coroutine's
/// executor (to cancel what the await was for); a completion that comes later is dropped. `on_cancel` runs
/// only while the await is pending, so it may refer to the awaiting coroutine's locals.
/// (Pass named objects, not temporaries: GCC 12 destroys temporaries in a co_await expression twice.)
Task<detail::buffer> await_io_completion(const std::function<void(client::call_callback)>& start,
                                         const std::function<std::string()>& on_cancel);

/// On an event-loop thread, warns (once per call site) that a blocking wait for `function` holds the loop.
void warn_if_blocking_on_loop(const std::string& function, const std::source_location& site);

}  // namespace ferry::runtime
