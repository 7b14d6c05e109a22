// What a container needs of the host it runs on (a function's cpu, memory_mb, gpus and placement options),
// and what a host offers: the server's own, or an agent's (as it reports it in agent_ready).
//
// Internal to the server, and used by the agent to find out what its host offers.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry::server {

struct resources {
  double cpu = 0;               // CPUs reserved; 0: none (see agent_pool for how such a container counts)
  std::uint64_t memory_mb = 0;  // 0: none reserved
  std::uint32_t gpus = 0;
  std::string placement;  // a label the host must have; "": any host

  bool any() const { return cpu > 0 || memory_mb > 0 || gpus > 0 || !placement.empty(); }
  /// "2 CPUs, 4096 MiB, 1 GPU, a host labelled 'a100'"; "" when it asks for nothing.
  std::string describe() const;
  auto operator<=>(const resources&) const = default;
};

/// What this host offers the containers started on it: the Slurm allocation's when the process runs in one
/// (SLURM_CPUS_ON_NODE, SLURM_MEM_PER_NODE, its GPUs), otherwise the machine's (the CPUs this process may run
/// on, the physical memory, the GPUs CUDA_VISIBLE_DEVICES names).
std::uint32_t host_cpus();
std::uint64_t host_memory_mb();
/// The GPUs' ids as CUDA_VISIBLE_DEVICES names them ("0", "1", or UUIDs); without it, "0" to "N-1" for the
/// SLURM_GPUS_ON_NODE GPUs of a Slurm allocation, or for the NVIDIA GPUs the host has (/dev/nvidiaN).
std::vector<std::string> host_gpus();

}  // namespace ferry::server
