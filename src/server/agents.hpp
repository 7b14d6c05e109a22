// The hosts that run containers: the server's own (its built-in local agent: containers as its child
// processes, as process_launcher starts them) and those of the agents that connect (`ferry agent`, one per
// host, started by the user or by a cluster engine). The agent pool is the scheduler's container_launcher:
// it places each container on a host and gives the scheduler a container_process that stands for it, so the
// scheduler neither knows nor cares where a container runs.
//
// Placement: each container on a host that has what its function asks for free (resources.hpp: CPUs,
// memory, GPUs, a label), never giving the same CPUs, memory or GPUs to two containers; among those, the
// host whose containers count for the fewest CPUs per CPU it has (which spreads a function's containers
// across hosts). A container that reserves no CPUs counts as one on an agent's host (an agent takes one
// such container per CPU), and reserves none of the server's own host, which takes those as it always has.
// Each GPU container's CUDA_VISIBLE_DEVICES names the GPUs it was given; on an agent's host, one that asked
// for none gets an empty one (the server's own host leaves it as it always was).
//
// A remote container's binary is the app's, named by its SHA-256: the agent fetches it from
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

/// What a host has given its running containers.
struct host_usage {
  double weight = 0;  // the CPUs its containers count for, in placement (each at least one, on an agent)
  double cpu = 0;     // reserved
  std::uint64_t memory_mb = 0;
  std::vector<bool> gpus;  // taken, by index
};

/// One container's share of its host, given back when it exits.
struct host_grant {
  double weight = 0;
  double cpu = 0;
  std::uint64_t memory_mb = 0;
  std::vector<std::uint32_t> gpus;  // by index in the host's list
};

/// A connected agent.
struct agent_record {
  session_id id{};
  std::shared_ptr<wire::connection> connection;
  wire::agent_ready_header host;  // what it said it offers
  host_usage used;
  std::unordered_map<container_id, remote_container*> containers;
  bool draining = false;  // it is stopping (it reported a container lost with its host): nothing goes there
};

class agent_pool final : public container_launcher {
 public:
  /// `local` starts containers on the server's own host (the built-in local agent); null when containers run
  /// only on agents that connect (`ferry server --agents manual`).
  agent_pool(boost::asio::any_io_executor executor, std::unique_ptr<container_launcher> local);
  ~agent_pool() override;

  /// Places the container on a host. Throws no_capacity_error when none has room for it now,
  /// std::system_error when the local one cannot start it.
  std::unique_ptr<container_process> launch(const container_spec& spec, exit_handler on_exit,
                                            output_handler on_output) override;
  std::string no_room(const resources& need) const override;
  /// With the server's own host in the pool (`ferry server`'s default), a container that neither it nor any
  /// agent connected could take even with nothing else running never fits. Without it, agents that fit may
  /// yet join (`--agents manual`, or asked of Slurm), and nothing is ruled out here.
  std::string never_fits(const resources& need) const override;

  // What the server's network layer reports of the agents' connections.
  /// Agent `id` has said what it offers; containers may be placed on it from now on.
  void joined(session_id id, std::shared_ptr<wire::connection> connection, wire::agent_ready_header host);
  /// Agent `id`'s connection has closed: its containers are lost with it.
  void left(session_id id, const std::string& reason);
  /// A frame from agent `id` (launched, container_output, container_exited, container_stats, fetch_binary). Throws
  /// wire::protocol_error for one out of place.
  void on_frame(session_id id, const wire::frame& f);

  const std::map<session_id, agent_record>& agents() const { return agents_; }
  bool has_local() const { return local_ != nullptr; }

 private:
  friend class remote_container;
  void send_signal(remote_container& c, int signal);
  /// Asks `c`'s agent to send what `c` has written; false when it cannot be asked (nothing to wait for).
  bool send_drain(remote_container& c);
  /// Sends container `id`'s launch, held until its binary's `digest` was known ("": it cannot be read).
  void send_held(session_id agent, container_id id, const std::string& digest);
  void forget(const remote_container& c);
  /// Sends the piece of binary `digest` that begins at `offset`, or an error saying why not.
  void send_binary_chunk(agent_record& agent, const std::string& digest, std::uint64_t offset);

  std::unique_ptr<container_launcher> local_;
  wire::agent_ready_header local_host_;  // what the server's own host offers (when local_)
  std::vector<std::string> local_gpu_ids_;
  host_usage local_used_;
  std::map<session_id, agent_record> agents_;
  file_digests digests_;                                   // of programs' binaries placed on agents
  std::unordered_map<std::string, std::string> binaries_;  // path by digest: what agents may fetch
};

}  // namespace ferry::server
