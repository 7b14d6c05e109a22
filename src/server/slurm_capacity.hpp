// Capacity from Slurm (`ferry server --agents slurm`): when containers wait for a host, the server asks
// Slurm for agents, one batch job per agent (`ferry agent` in the job, connecting back), sized to what waits:
// each job is for containers that need the same (resources.hpp), as many as fit in --slurm-cpus-per-agent
// CPUs, and asks for their CPUs, memory (--mem), GPUs (--gres=gpu:N) and label (--constraint, which the agent
// then reports as its label). It cancels the agents it started once they have been idle for the idle window.
//
// What Slurm will never give (sbatch refuses the job: no such feature, GPUs or memory; or the job stays
// pending for a reason that will not pass, such as PartitionConfig) is reported to the server, which fails
// the calls waiting for it, rather than letting them wait for ever.
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
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
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
  std::string server_cert;                   // the pin of the server's TLS certificate ("": loopback only)
  std::filesystem::path job_dir;             // where the jobs write their output (agent-JOBID.out)
  std::uint32_t cpus_per_agent = 4;          // the most CPUs one job asks for
  std::uint32_t max_agents = 16;             // jobs (pending and running) at most
  std::chrono::seconds idle_window{60};      // an agent idle this long is cancelled
};

class slurm_capacity {
 public:
  /// Slurm will not give an agent for containers that need `need` (`why` says what it said).
  using refusal_handler = std::function<void(const resources& need, const std::string& why)>;

  slurm_capacity(boost::asio::any_io_executor executor, const agent_pool& agents, slurm_options options,
                 refusal_handler on_refused);
  slurm_capacity(const slurm_capacity&) = delete;
  slurm_capacity& operator=(const slurm_capacity&) = delete;

  /// Containers wait for a host now, this many for each need: submits jobs for those that neither the agents
  /// connected nor the jobs pending will take.
  void demand(std::map<resources, std::size_t> containers);
  /// An agent has joined, from Slurm job `job_id` ("" when not in a job): if the job is one of ours, it no
  /// longer counts as pending. One a server submitted (`server_job`) that this one does not know is adopted:
  /// it was this server's before it restarted, and is cancelled when idle, or when the server stops.
  void joined(const std::string& job_id, bool server_job);
  /// Cancels every job it submitted (the server is stopping); returns once scancel has run.
  void cancel_all();

  std::size_t pending_jobs() const { return pending_.size(); }

 private:
  struct job {
    resources need;              // of each of the containers it is for
    std::size_t containers = 0;  // it is for
    std::chrono::steady_clock::time_point submitted;
  };
  /// Submits jobs for what waits and is neither placed nor coming.
  void ask();
  void submit(const resources& need, std::size_t containers);
  /// Containers that need `need` on the way: in jobs submitted or pending.
  std::size_t coming(const resources& need) const;
  /// A submission failed, or a job ended before its agent joined: says why, and backs the next off.
  void failed_submission(const std::string& why);
  /// Slurm will never run a job for `need`: remembered for a while (demand for it is refused at once), and
  /// reported to the server.
  void refused(const resources& need, const std::string& why);
  /// Every few seconds while it has jobs: drops pending jobs that ended without an agent, cancels agents
  /// idle past the window, and submits again after a failure's back-off.
  void arm_check();
  void check();

  boost::asio::any_io_executor executor_;
  const agent_pool& agents_;
  slurm_options options_;
  refusal_handler on_refused_;
  std::map<resources, std::size_t> demand_;
  std::size_t submitting_jobs_ = 0;              // sbatch runs not yet answered
  std::map<resources, std::size_t> submitting_;  // and the containers they are for
  std::map<std::string, job> pending_;           // by job id: submitted, its agent not joined yet
  std::map<resources, std::pair<std::string, std::chrono::steady_clock::time_point>> refusals_;  // why, since
  /// Needs whose jobs for several containers Slurm refused (more memory or GPUs than a node has): one
  /// container a job for those.
  std::set<resources> one_per_job_;
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
