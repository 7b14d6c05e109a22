// Capacity from Slurm (`ferry server --agents slurm`): when containers wait for a host, the server asks
// Slurm for agents, one batch job per agent (`ferry agent` in the job, connecting back), sized to what waits;
// and it cancels the agents it started once they have been idle for the idle window.
//
// Jobs are submitted with `sbatch`, not Slurm's C API or slurmrestd: libslurm's ABI changes with every
// Slurm release (a ferry built against one would not load against another), and slurmrestd needs a daemon
// and JWT setup most sites do not give users; sbatch works wherever users submit jobs, with their own
// credentials, and is what dask-jobqueue and Parsl use. Every command runs asynchronously, with a timeout.
//
// It never over-asks: the CPUs of jobs submitted whose agent has not joined yet count against what waits.
// Pending jobs are checked with squeue; one that ended without its agent joining stops counting, and its
// output file is named in a warning.
//
// Internal to the server; everything here runs on the server's one thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/agents.hpp"

namespace ferry::server {

struct slurm_options {
  std::string partition;                     // "": the cluster's default
  std::vector<std::string> extra_arguments;  // for sbatch (--account, --qos, --time, ...)
  std::string ferry_path;                    // the `ferry` binary the jobs run (this server's own)
  std::string server_address;                // where the agents connect (--advertise)
  std::filesystem::path token_file;          // the agents' credential, read by the agents from this file
  std::filesystem::path job_dir;             // where the jobs write their output (agent-JOBID.out)
  std::uint32_t cpus_per_agent = 4;          // the most CPUs one job asks for
  std::uint32_t max_agents = 16;             // jobs (pending and running) at most
  std::chrono::seconds idle_window{60};      // an agent idle this long is cancelled
};

class slurm_capacity {
 public:
  slurm_capacity(boost::asio::any_io_executor executor, const agent_pool& agents, slurm_options options);
  slurm_capacity(const slurm_capacity&) = delete;
  slurm_capacity& operator=(const slurm_capacity&) = delete;

  /// `containers` containers wait for a host now (each takes one CPU of an agent): submits jobs for those
  /// that neither the agents connected nor the jobs pending will take.
  void demand(std::size_t containers);
  /// An agent has joined, from Slurm job `job_id` ("" when not in a job): if the job is one of ours, it no
  /// longer counts as pending.
  void joined(const std::string& job_id);
  /// Cancels every job it submitted (the server is stopping); returns once scancel has run.
  void cancel_all();

  std::size_t pending_jobs() const { return pending_.size(); }

 private:
  struct job {
    std::uint32_t cpus = 0;
    std::chrono::steady_clock::time_point submitted;
  };
  /// Submits jobs for what waits and is neither placed nor coming.
  void ask();
  void submit(std::uint32_t cpus);
  /// A submission failed, or a job ended before its agent joined: says why, and backs the next off.
  void failed_submission(const std::string& why);
  /// Every few seconds while it has jobs: drops pending jobs that ended without an agent, cancels agents
  /// idle past the window, and submits again after a failure's back-off.
  void arm_check();
  void check();
  std::uint32_t pending_cpus() const;

  boost::asio::any_io_executor executor_;
  const agent_pool& agents_;
  slurm_options options_;
  std::size_t demand_ = 0;
  std::size_t submitting_jobs_ = 0;     // sbatch runs not yet answered
  std::size_t submitting_cpus_ = 0;     // and the CPUs they ask for
  std::map<std::string, job> pending_;  // by job id: submitted, its agent not joined yet
  /// Our jobs whose agent has joined, by job id: since when the agent has had no container (max(): it has).
  std::map<std::string, std::chrono::steady_clock::time_point> running_;
  int failures_ = 0;  // in a row
  std::chrono::steady_clock::time_point next_submit_{};
  bool warned_max_ = false;
  std::unique_ptr<boost::asio::steady_timer> check_timer_;
  std::unique_ptr<boost::asio::steady_timer> gather_timer_;
  bool checking_ = false;  // a squeue is running
};

}  // namespace ferry::server
