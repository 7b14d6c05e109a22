// `ferry agent`: the pilot that runs containers on one host for a ferry server. It connects to the server
// with the agents' credential (the server's 'agent-token', never its token), says what the host offers
// (CPUs, memory, GPUs: the Slurm allocation's when it runs in a Slurm job), and then starts the containers
// the server places on it, as local processes (process_launcher), with the binaries it fetches from the
// server by digest into its cache. It sends what they write over its connection, and reports their exits.
// Its containers connect to the server themselves, at the address the agent reached it on (over TLS, with
// the agent's pin of the server's certificate, when that is another host).
//
// When its connection is lost (the server stopped, restarted, or is unreachable), it stops its containers
// (which have lost the server too) and connects again, for up to the reconnect window; then it exits, so
// that a Slurm job holding an allocation for a server that has gone for good ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ferry::agent {

struct agent_options {
  std::string server;  // host:port
  std::string token;   // the agents' credential
  /// The fingerprint of the server's TLS certificate (wire::tls::parse_pin): required when the server is on
  /// another host, whose connections are TLS; passed on to the containers.
  std::string server_cert;
  std::string name;  // "": SLURMD_NODENAME, or the host's name
  // What the host offers its containers; 0: found out (the Slurm allocation, or the host).
  std::uint32_t cpus = 0;
  std::uint64_t memory_mb = 0;
  std::int32_t gpus = -1;            // -1: found out
  std::vector<std::string> gpu_ids;  // their CUDA_VISIBLE_DEVICES ids (found out)
  std::vector<std::string> labels;
  bool server_job = false;          // started in a Slurm job the server submitted (agent_ready_header::server_job)
  std::filesystem::path cache_dir;  // where fetched binaries are kept, by digest
  /// How long it keeps trying to reach the server (at start, or once the connection is lost) before it exits.
  std::chrono::seconds reconnect_window{300};
};

/// The host's resources as the agent reports them when not told (server/resources.hpp): those of the Slurm
/// allocation it runs in, else the host's. Told a number of GPUs, it uses the first that many the host has.
agent_options with_detected_resources(agent_options options);

/// Serves until SIGINT or SIGTERM, the server refuses it, or the server stays unreachable for the reconnect
/// window; stops its containers before it returns. Returns the process's exit code: 0 after a signal, 1
/// otherwise.
int run_agent(const agent_options& options);

}  // namespace ferry::agent
