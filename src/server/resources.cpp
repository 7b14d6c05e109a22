#include "server/resources.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "base/env.hpp"

namespace ferry::server {

namespace {

/// The number `text` starts with ("4096M" gives 4096, "2(x2)" gives 2); 0 for none.
std::uint64_t leading_number(const std::string& text) {
  std::uint64_t n = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') break;
    n = n * 10 + static_cast<std::uint64_t>(ch - '0');
  }
  return n;
}

}  // namespace

std::string resources::describe() const {
  std::string s;
  auto add = [&s](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (cpu > 0) add(fmt::format("{:g} CPU{}", cpu, cpu == 1 ? "" : "s"));
  if (memory_mb > 0) add(fmt::format("{} MiB", memory_mb));
  if (gpus > 0) add(fmt::format("{} GPU{}", gpus, gpus == 1 ? "" : "s"));
  if (!placement.empty()) add("a host labelled '" + placement + "'");
  return s;
}

std::uint32_t host_cpus() {
  if (auto n = leading_number(env_or_empty("SLURM_CPUS_ON_NODE")); n > 0) return static_cast<std::uint32_t>(n);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<std::uint32_t>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::uint64_t host_memory_mb() {
  if (auto mb = leading_number(env_or_empty("SLURM_MEM_PER_NODE")); mb > 0) return mb;
  return static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)) /
         (std::uint64_t{1024} * 1024);
}

std::vector<std::string> host_gpus() {
  std::vector<std::string> ids;
  const std::string visible = env_or_empty("CUDA_VISIBLE_DEVICES");
  if (!visible.empty()) {
    std::size_t start = 0;
    while (start <= visible.size()) {
      const std::size_t comma = std::min(visible.find(',', start), visible.size());
      if (comma > start) ids.push_back(visible.substr(start, comma - start));
      start = comma + 1;
    }
    return ids;
  }
  auto n = leading_number(env_or_empty("SLURM_GPUS_ON_NODE"));
  if (n == 0) {
    // The NVIDIA driver's device files: /dev/nvidia0, /dev/nvidia1, ... (not nvidiactl, nvidia-uvm).
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/dev", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.size() > 6 && name.starts_with("nvidia") &&
          name.find_first_not_of("0123456789", 6) == std::string::npos) {
        ++n;
      }
    }
  }
  for (std::uint64_t i = 0; i < n; ++i) ids.push_back(std::to_string(i));
  return ids;
}

}  // namespace ferry::server
