#include "server/slurm_capacity.hpp"

#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "server/command.hpp"

namespace ferry::server {

namespace {

constexpr std::chrono::milliseconds command_timeout{30'000};
constexpr std::chrono::seconds check_period{3};
constexpr std::chrono::milliseconds gather_window{250};
/// In `running_`: the agent has containers (it is not idle).
constexpr auto busy = std::chrono::steady_clock::time_point::max();

/// `text` as one word for sh -c.
std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

/// Whether sbatch's refusal says the job can never run as asked (not that Slurm is busy or unreachable).
bool never_runs(const std::string& error) {
  for (const char* reason :
       {"Invalid generic resource", "Invalid feature specification", "Requested node configuration is not available",
        "Memory specification can not be satisfied", "More processors requested than permitted",
        "Invalid partition name"}) {
    if (error.find(reason) != std::string::npos) return true;
  }
  return false;
}

/// Why squeue says a job pends, when that will not pass by itself: the job asks for more than the partition's
/// nodes have, or for features none has.
bool pends_for_ever(const std::string& reason) {
  return reason == "PartitionConfig" || reason == "BadConstraints" || reason == "PartitionNodeLimit";
}

constexpr std::chrono::seconds refusal_memory{60};

}  // namespace

slurm_capacity::slurm_capacity(boost::asio::any_io_executor executor, const agent_pool& agents, slurm_options options,
                               refusal_handler on_refused)
    : executor_(std::move(executor)),
      agents_(agents),
      options_(std::move(options)),
      on_refused_(std::move(on_refused)) {}

std::size_t slurm_capacity::coming(const resources& need) const {
  std::size_t n = 0;
  if (auto it = submitting_.find(need); it != submitting_.end()) n += it->second;
  for (const auto& [id, j] : pending_) n += j.need == need ? j.containers : 0;
  return n;
}

void slurm_capacity::demand(std::map<resources, std::size_t> containers) {
  demand_ = std::move(containers);
  // Work arrives over a moment (a map's items in several reads): ask for it together, in jobs of
  // cpus_per_agent, not for each container as it comes.
  if (gather_timer_) return;
  gather_timer_ = std::make_unique<boost::asio::steady_timer>(executor_, gather_window);
  gather_timer_->async_wait([this](boost::system::error_code ec) {
    gather_timer_.reset();
    if (!ec) ask();
  });
}

void slurm_capacity::ask() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<resources, std::string>> refused_now;  // (reported once the loop is done: the server
                                                               // then changes what is demanded)
  std::size_t missing_total = 0;
  for (const auto& [need, containers] : demand_) {
    if (auto r = refusals_.find(need); r != refusals_.end()) {
      if (now - r->second.second < refusal_memory) {
        refused_now.emplace_back(need, r->second.first);
        continue;
      }
      refusals_.erase(r);
    }
    const std::size_t on_the_way = coming(need);
    if (containers <= on_the_way || now < next_submit_) continue;
    std::size_t missing = containers - on_the_way;
    // As many of these containers per job as fit in cpus_per_agent CPUs (one, at least).
    const double cpus_each = need.cpu > 0 ? need.cpu : 1.0;
    const std::size_t per_job =
        one_per_job_.contains(need)
            ? 1
            : std::max<std::size_t>(1, static_cast<std::size_t>(options_.cpus_per_agent / cpus_each + 1e-9));
    while (missing > 0 && pending_.size() + submitting_jobs_ + running_.size() < options_.max_agents) {
      const std::size_t n = std::min(missing, per_job);
      submit(need, n);
      missing -= n;
    }
    missing_total += missing;
  }
  if (missing_total > 0 && !warned_max_) {
    spdlog::warn(
        "containers wait for hosts, but {} Slurm jobs for agents are already asked for or running "
        "(--slurm-max-agents)",
        options_.max_agents);
    warned_max_ = true;
  }
  for (const auto& [need, why] : refused_now) on_refused_(need, why);
}

void slurm_capacity::submit(const resources& need, std::size_t containers) {
  const double cpus_each = need.cpu > 0 ? need.cpu : 1.0;
  const auto cpus = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::ceil(cpus_each * static_cast<double>(containers) - 1e-9)));
  std::vector<std::string> argv{"sbatch",
                                "--parsable",
                                "--job-name=ferry-agent",
                                "--nodes=1",
                                "--ntasks=1",
                                "--cpus-per-task=" + std::to_string(cpus),
                                "--output=" + (options_.job_dir / "agent-%j.out").string()};
  if (need.memory_mb > 0) argv.push_back("--mem=" + std::to_string(need.memory_mb * containers) + "M");
  if (need.gpus > 0) argv.push_back("--gres=gpu:" + std::to_string(need.gpus * containers));
  if (!need.placement.empty()) argv.push_back("--constraint=" + need.placement);
  if (!options_.partition.empty()) argv.push_back("--partition=" + options_.partition);
  argv.insert(argv.end(), options_.extra_arguments.begin(), options_.extra_arguments.end());
  // The agent reads the credential from the file: it is never on a command line (nor in the job's script).
  std::string command = "exec " + shell_quoted(options_.ferry_path) + " agent --server " +
                        shell_quoted(options_.server_address) + " --token-file " +
                        shell_quoted(options_.token_file.string()) + " --reconnect-window 60 --server-job";
  if (!options_.server_cert.empty()) command += " --server-cert " + shell_quoted(options_.server_cert);
  if (!need.placement.empty()) command += " --label " + shell_quoted(need.placement);
  argv.push_back("--wrap=" + command);
  ++submitting_jobs_;
  submitting_[need] += containers;
  const std::string what = need.any() ? " for containers of " + need.describe() : "";
  run_command(executor_, argv, command_timeout, [this, need, containers, cpus, what](const command_result& r) {
    --submitting_jobs_;
    submitting_[need] -= containers;
    if (submitting_[need] == 0) submitting_.erase(need);
    const std::string id = trimmed(r.out.substr(0, r.out.find(';')));
    if (r.exit_code != 0 || id.empty()) {
      const std::string error = trimmed(r.err.empty() ? r.out : r.err);
      if (never_runs(error) && containers > 1 && one_per_job_.insert(need).second) {
        spdlog::info("Slurm refused a job for {} containers of {} ({}); asking for one a job", containers,
                     need.describe(), error);
        return ask();
      }
      if (never_runs(error)) return refused(need, error);
      failed_submission("sbatch failed: " + error);
      return;
    }
    spdlog::info("asked Slurm for an agent with {} CPU{}{}: job {}", cpus, cpus == 1 ? "" : "s", what, id);
    pending_[id] = {need, containers, std::chrono::steady_clock::now()};
    arm_check();
  });
}

void slurm_capacity::refused(const resources& need, const std::string& why) {
  spdlog::error("Slurm will not run an agent's job{}: {}", need.any() ? " for " + need.describe() : "", why);
  refusals_[need] = {why, std::chrono::steady_clock::now()};
  on_refused_(need, why);
}

void slurm_capacity::failed_submission(const std::string& why) {
  ++failures_;
  const auto wait = std::chrono::seconds(std::min(60, 2 << std::min(failures_, 5)));
  next_submit_ = std::chrono::steady_clock::now() + wait;
  spdlog::error("{}; asking Slurm again in {} s (check --slurm-partition and --slurm-args)", why, wait.count());
  arm_check();
}

void slurm_capacity::joined(const std::string& job_id, bool server_job) {
  auto it = pending_.find(job_id);
  if (it == pending_.end()) {
    if (!server_job || job_id.empty() || running_.contains(job_id)) return;
    spdlog::info("adopted Slurm job {}: its agent was started for this server before it restarted", job_id);
    running_.emplace(job_id, busy);
    return arm_check();
  }
  pending_.erase(it);
  running_.emplace(job_id, busy);
  failures_ = 0;
  next_submit_ = {};
  arm_check();
}

void slurm_capacity::arm_check() {
  if (check_timer_ || (pending_.empty() && running_.empty() && failures_ == 0)) return;
  check_timer_ = std::make_unique<boost::asio::steady_timer>(executor_, check_period);
  check_timer_->async_wait([this](boost::system::error_code ec) {
    check_timer_.reset();
    if (!ec) check();
  });
}

void slurm_capacity::check() {
  const auto now = std::chrono::steady_clock::now();
  // Agents that have left are gone from our jobs; idle ones past the window are cancelled.
  std::map<std::string, const agent_record*> by_job;
  for (const auto& [id, agent] : agents_.agents()) {
    if (!agent.host.slurm_job_id.empty()) by_job[agent.host.slurm_job_id] = &agent;
  }
  std::vector<std::string> idle;
  for (auto it = running_.begin(); it != running_.end();) {
    auto agent = by_job.find(it->first);
    if (agent == by_job.end()) {
      it = running_.erase(it);
      continue;
    }
    if (!agent->second->containers.empty()) {
      it->second = busy;
    } else if (it->second == busy) {
      it->second = now;
    } else if (now - it->second >= options_.idle_window) {
      idle.push_back(it->first);
    }
    ++it;
  }
  if (!idle.empty()) {
    std::vector<std::string> argv{"scancel"};
    for (const auto& id : idle) {
      spdlog::info("cancelling Slurm job {}: its agent has been idle for {} s", id, options_.idle_window.count());
      running_.erase(id);
      argv.push_back(id);
    }
    run_command(executor_, argv, command_timeout, [](const command_result& r) {
      if (r.exit_code != 0) spdlog::warn("scancel failed: {}", trimmed(r.err));
    });
  }
  if (!pending_.empty() && !checking_) {
    // Pending jobs that squeue no longer lists ended without their agent joining.
    std::string ids;
    for (const auto& [id, j] : pending_) ids += (ids.empty() ? "" : ",") + id;
    checking_ = true;
    run_command(executor_, {"squeue", "--noheader", "--format=%i %r", "--jobs=" + ids}, command_timeout,
                [this](const command_result& r) {
                  checking_ = false;
                  // (squeue fails with "Invalid job id" when none of them is known any more.)
                  if (r.exit_code != 0 && r.err.find("Invalid job id") == std::string::npos) {
                    spdlog::warn("squeue failed: {}", trimmed(r.err));
                    return;
                  }
                  std::map<std::string, std::string> listed;  // why each pends, by job id
                  std::istringstream lines(r.exit_code == 0 ? r.out : "");
                  for (std::string id, reason; lines >> id >> reason;) listed[id] = reason;
                  bool lost = false;
                  std::vector<std::string> hopeless;
                  for (auto it = pending_.begin(); it != pending_.end();) {
                    if (auto found = listed.find(it->first); found != listed.end()) {
                      if (!pends_for_ever(found->second)) {
                        ++it;
                        continue;
                      }
                      hopeless.push_back(it->first);
                      refused(it->second.need, "Slurm job " + it->first + " cannot start: squeue says it pends for " +
                                                   found->second +
                                                   " (it asks for more than the partition's nodes have)");
                      it = pending_.erase(it);
                      continue;
                    }
                    failed_submission("Slurm job " + it->first + " ended before its agent joined (see " +
                                      (options_.job_dir / ("agent-" + it->first + ".out")).string() + ")");
                    it = pending_.erase(it);
                    lost = true;
                  }
                  if (!hopeless.empty()) {
                    std::vector<std::string> argv{"scancel"};
                    argv.insert(argv.end(), hopeless.begin(), hopeless.end());
                    run_command(executor_, argv, command_timeout, [](const command_result&) {});
                  }
                  if (lost) ask();
                });
  }
  if (failures_ > 0 && now >= next_submit_) ask();
  arm_check();
}

void slurm_capacity::cancel_all() {
  std::vector<std::string> ids;
  ids.reserve(pending_.size() + running_.size());
  for (const auto& [id, j] : pending_) ids.push_back(id);
  for (const auto& [id, since] : running_) ids.push_back(id);
  pending_.clear();
  running_.clear();
  check_timer_.reset();
  gather_timer_.reset();
  if (ids.empty()) return;
  // Synchronously: the server is on its way out, and the jobs must not outlive it.
  std::string command = "scancel";
  for (const auto& id : ids) command += " " + id;
  spdlog::info("cancelling the Slurm jobs of its agents: {}", command.substr(8));
  const int status = std::system(command.c_str());  // NOLINT(concurrency-mt-unsafe): only ids, on the way out
  if (status != 0) spdlog::warn("{} exited with status {}", command, WEXITSTATUS(status));
}

}  // namespace ferry::server
