// The hosts that run containers: the server's own (its built-in local agent: containers as its child
// processes, as process_launcher starts them) and those of the agents that connect (`ferry agent`, one per
// host, started by the user or by a cluster engine). The agent pool is the scheduler's container_launcher:
// it places each container on a host and gives the scheduler a container_process that stands for it, so the
// scheduler neither knows nor cares where a container runs.
//
// Placement: the host with the fewest containers per CPU it offers (which spreads a function's containers
// across hosts). A remote container's binary is the app's, named by its SHA-256: the agent fetches it from
// the server (fetch_binary) unless it has it. An agent that goes (its connection closes: it was killed, its
// host died, the network failed) takes its containers with it; each exits as lost with its host
// (container_exit::host_lost), which the scheduler does not count against the calls it ran.
//
// Internal to the server; everything here runs on the server's one thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/container_launcher.hpp"
#include "server/ids.hpp"
#include "server/sha256.hpp"
#include "wire/connection.hpp"
#include "wire/protocol.hpp"

namespace ferry::server {

class remote_container;

/// A connected agent.
struct agent_record {
  session_id id{};
  std::shared_ptr<wire::connection> connection;
  wire::agent_ready_header host;  // what it said it offers
  std::unordered_map<container_id, remote_container*> containers;
  bool draining = false;  // it is stopping (it reported a container lost with its host): nothing goes there
};

class agent_pool final : public container_launcher {
 public:
  /// `local` starts containers on the server's own host (the built-in local agent); null when containers run
  /// only on agents that connect (`ferry server --agents manual`).
  explicit agent_pool(std::unique_ptr<container_launcher> local);
  ~agent_pool() override;

  /// Places the container on a host. Throws no_capacity_error when there is none (no local agent, and no
  /// agent connected), std::system_error when the local one cannot start it.
  std::unique_ptr<container_process> launch(const container_spec& spec, exit_handler on_exit,
                                            output_handler on_output) override;
  std::string no_room() const override;

  // What the server's network layer reports of the agents' connections.
  /// Agent `id` has said what it offers; containers may be placed on it from now on.
  void joined(session_id id, std::shared_ptr<wire::connection> connection, wire::agent_ready_header host);
  /// Agent `id`'s connection has closed: its containers are lost with it.
  void left(session_id id, const std::string& reason);
  /// A frame from agent `id` (launched, container_output, container_exited, fetch_binary). Throws
  /// wire::protocol_error for one out of place.
  void on_frame(session_id id, const wire::frame& f);

  const std::map<session_id, agent_record>& agents() const { return agents_; }
  bool has_local() const { return local_ != nullptr; }

 private:
  friend class remote_container;
  void send_signal(const remote_container& c, int signal);
  void forget(const remote_container& c);
  /// Sends the piece of binary `digest` that begins at `offset`, or an error saying why not.
  void send_binary_chunk(agent_record& agent, const std::string& digest, std::uint64_t offset);

  std::unique_ptr<container_launcher> local_;
  std::size_t local_containers_ = 0;  // containers the local agent runs
  std::map<session_id, agent_record> agents_;
  file_digests digests_;                                   // of the binaries placed on agents
  std::unordered_map<std::string, std::string> binaries_;  // path by digest: what agents may fetch
};

}  // namespace ferry::server
