// How the server starts containers. A narrow interface, so that where containers run is not the scheduler's
// concern: process_launcher runs them as local processes, and the agent pool (agents.hpp) on the hosts of
// the agents that connect, or locally.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "server/ids.hpp"
#include "server/resources.hpp"

namespace ferry::server {

/// What a container needs to start: the binary, which function it serves, and how to reach the server.
struct container_spec {
  container_id id{};
  std::string executable;
  std::string digest;                  // the binary's SHA-256, when known (a deployed app's); "" otherwise
  std::vector<std::string> arguments;  // argv[1] on (argv[0] is the executable)
  std::string app;
  std::string function;
  resources need;              // of its host
  std::string server_address;  // where the container connects: unix:PATH (this host) or host:port
  std::string server_cert;     // the pin of the server's TLS certificate, when it may be on another host
  /// The container's own credential, which it presents when it connects: made for this launch alone, never
  /// the server's token (what a body can read, or a late container from before a server restart, cannot
  /// pass for another). Passed in the environment (FERRY_TOKEN), never on the command line.
  std::string credential;
  /// More of its environment (`KEY=VALUE`, over the server's): CUDA_VISIBLE_DEVICES, naming its GPUs.
  std::vector<std::string> environment;
};

/// A started container. Confined to the server's executor.
class container_process {
 public:
  virtual ~container_process() = default;
  virtual std::int64_t pid() const = 0;
  /// Asks the container to stop (SIGTERM).
  virtual void terminate() = 0;
  /// Stops it at once (SIGKILL).
  virtual void kill() = 0;
  /// Hands what the container has written and the server has not read yet to the output handler, now.
  /// (The server calls it before it takes an output, so that the lines the body wrote come first.)
  virtual void drain_output() = 0;
  /// Whether what it writes reaches the server another way than its outputs (its agent's connection), so
  /// that an output must wait for drain_output_then() before the lines the body wrote before it are in.
  virtual bool output_comes_apart() const { return false; }
  /// Calls `drained` once what the container wrote before this call has gone to the output handler: at
  /// once here, after a round trip to its agent for a remote container (at once, too, when it or its agent
  /// has gone, and before its exit is reported). One at a time.
  virtual void drain_output_then(const std::function<void()>& drained) {
    drain_output();
    drained();
  }
  /// Its resident memory now, in bytes (0 once it has exited, or when unknown).
  virtual std::uint64_t rss_bytes() const = 0;
  /// Whether the program has reached app.main (so far): a container that ends before it connects without
  /// having reached it failed in the program's own main.
  virtual bool reached_main() = 0;
};

/// How a container's process ended.
struct container_exit {
  std::string how;  // "exited with code 3", "was killed by signal 9 (SIGKILL)"
  int signal = 0;   // the signal that killed it; 0 when it exited (or its status is unknown)
  /// It was lost with the host it ran on (its agent went): no fault of its own, nor of what it ran.
  bool host_lost = false;

  /// Killed by a signal sent from outside (kill, the OOM killer, a shutdown), not by a fault of its own
  /// (SIGSEGV, SIGABRT, ...): another start may well succeed.
  bool killed_from_outside() const;
};

/// No host can take a container now (no agent is connected, and the server runs none itself): the
/// container's function waits until one joins.
class no_capacity_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class container_launcher {
 public:
  /// Runs on the server's executor once the container has exited; its stderr is complete by then.
  using exit_handler = std::function<void(container_exit exit)>;
  /// Runs on the server's executor with each chunk the container writes to stdout (stream 1) or stderr (2),
  /// in order per stream; the chunks are not split at line ends.
  using output_handler = std::function<void(int stream, std::string_view chunk)>;

  virtual ~container_launcher() = default;
  /// Why no container that needs `need` can be started now (launch would throw no_capacity_error), or ""
  /// when one can.
  virtual std::string no_room(const resources& /*need*/) const { return ""; }
  /// Why no container that needs `need` will ever start, whatever stops (so that its calls had better fail
  /// than wait), or "".
  virtual std::string never_fits(const resources& /*need*/) const { return ""; }
  /// Starts a container. Throws std::system_error when the process cannot be started at all.
  virtual std::unique_ptr<container_process> launch(const container_spec& spec, exit_handler on_exit,
                                                    output_handler on_output) = 0;
};

/// Containers as child processes of the server: the app binary started again, in container mode, with
/// its stdout and stderr captured through pipes and its exit watched through a pidfd.
std::unique_ptr<container_launcher> make_process_launcher(boost::asio::any_io_executor executor);

}  // namespace ferry::server
