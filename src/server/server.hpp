// The ferry server: accepts programs and containers, keeps a registry of apps and their functions, queues
// inputs per function, starts containers and routes results back to callers. Embedded in a program by
// App::main, or run as a daemon by `ferry server`.
//
// Concurrency: all state is confined to the server's one event-loop thread (the one that calls run());
// stop() and endpoint() may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "server/container_launcher.hpp"
#include "server/slurm_capacity.hpp"
#include "wire/protocol.hpp"

namespace ferry::server {

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port
  /// Every connection must present it in its hello. Required.
  std::string token;
  /// What agents (`ferry agent`) present in their hello instead; "": the server takes no agents. Never the
  /// token: a host that runs containers need not be able to call, deploy or read results.
  std::string agent_token;
  /// Whether the server's own host runs containers (its built-in local agent). Off (`--agents manual` or
  /// `slurm`): containers run only on agents that connect, and calls wait for one.
  bool local_agent = true;
  /// Set (`--agents slurm`): the server asks Slurm for agents when containers wait for a host.
  std::optional<slurm_options> slurm;
  /// host:port other hosts reach this server at (agents started for it, what it prints); "": its address.
  std::string advertise;
  // A server that listens beyond loopback talks to other hosts over TLS only, with the certificate in
  // state_dir (wire/tls.hpp; made on first start, or for this run when state_dir is "").
  std::uint64_t max_frame_size = wire::default_max_frame_size;
  /// A container that has not connected this long after it started is killed and counts as failed.
  std::chrono::milliseconds container_connect_timeout{30'000};
  /// How long stop() lets running inputs finish before it stops their containers (0: stop them at once).
  std::chrono::milliseconds drain_timeout{30'000};
  /// How long stop() lets containers exit after SIGTERM before it kills them.
  std::chrono::milliseconds stop_grace{5'000};
  /// A connection is closed when it says nothing useful for this long: a new connection that has not sent
  /// its hello (wire protocol) or its first request's header (HTTP), or an HTTP connection without the next
  /// request's header this long after the last request (keep-alive), or mid-header (a slow client), or an
  /// HTTP client that takes nothing of a response written to it for this long.
  std::chrono::milliseconds idle_timeout{10'000};
  /// How long an input that was cancelled (or timed out) may go on running before its container is
  /// replaced: killed, with its other inputs re-queued.
  std::chrono::milliseconds cancel_grace{5'000};
  /// Inputs one function may have queued; calls beyond it fail with resource_exhausted.
  std::size_t max_queued_inputs = 100'000;
  /// Where deployed binaries and the database (deployments, spawned calls and their results) live. Empty:
  /// nothing outlives the server (an embedded server): spawned calls are kept in memory, and deploy is
  /// refused.
  std::filesystem::path state_dir;
  /// How long the results of spawned calls are kept after they finish.
  std::chrono::seconds retention{7 * 24 * 3600};
  /// How many of the lines containers wrote the server keeps (the newest), for `ferry logs` and the API.
  std::size_t max_log_lines = 10'000;
  /// SIGINT and SIGTERM stop the server as stop() does (`ferry server`). Off for a server embedded in a
  /// program, whose signals are the program's.
  bool stop_on_signals = false;
};

class server {
 public:
  /// Binds the listening socket (throws std::system_error when it cannot). Containers on the server's own
  /// host are started by `launcher`, or as its child processes when it is null.
  explicit server(server_options options, std::unique_ptr<container_launcher> launcher = nullptr);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// "host:port" that programs, and containers on other hosts, connect to (the HTTP API too).
  std::string address() const;
  /// Where containers on this host connect: "unix:@NAME", its Unix socket (faster than TCP), which
  /// programs on this host may use too, HTTP included; address() when the host offered none.
  std::string local_address() const;
  /// The fingerprint of the certificate that other hosts pin (wire::tls::parse_pin); "" when it listens on
  /// loopback only.
  std::string tls_fingerprint() const;

  /// Serves until stop(); on the way out, stops every container it started.
  void run();
  /// Asks run() to stop: no new work, containers told to exit and killed after the grace period.
  void stop();

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace ferry::server
