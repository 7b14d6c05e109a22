#include "server/agents.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "server/sha256.hpp"

namespace ferry::server {

/// A container on an agent's host, as the scheduler sees it: signals go to the agent, and what the agent
/// reports of it (its pid, its output, its exit) comes back through the pool.
class remote_container final : public container_process {
 public:
  remote_container(agent_pool& pool, session_id agent, container_id id, host_grant grant,
                   container_launcher::exit_handler on_exit, container_launcher::output_handler on_output)
      : pool_(pool),
        agent_(agent),
        id_(id),
        grant_(std::move(grant)),
        on_exit_(std::move(on_exit)),
        on_output_(std::move(on_output)) {}
  ~remote_container() override { pool_.forget(*this); }

  std::int64_t pid() const override { return pid_; }
  void terminate() override { pool_.send_signal(*this, SIGTERM); }
  void kill() override { pool_.send_signal(*this, SIGKILL); }
  /// Its output arrives over the agent's connection, as the agent reads it; there is nothing to read here.
  void drain_output() override {}
  bool output_comes_apart() const override { return true; }
  void drain_output_then(const std::function<void()>& drained) override {
    if (exited_ || !pool_.send_drain(*this)) return drained();
    drained_ = drained;
  }
  /// Its agent has sent what it had written (output_drained).
  void output_drained() {
    if (auto handler = std::move(drained_)) handler();
  }
  std::uint64_t rss_bytes() const override { return exited_ ? 0 : rss_; }  // as its agent last reported
  bool reached_main() override { return reached_main_; }

  session_id agent() const { return agent_; }
  container_id id() const { return id_; }
  const host_grant& grant() const { return grant_; }

  /// Its launch waits for its binary's digest (agent_pool::send_held); a signal meanwhile is kept for then.
  void hold(wire::launch_header launch) { held_ = std::move(launch); }
  bool holding() const { return held_.has_value(); }
  /// Its held launch (and it holds none from then on); none if it holds none.
  std::optional<wire::launch_header> take_held() { return std::exchange(held_, std::nullopt); }
  int signal_while_held = 0;

  void started(std::int64_t pid) { pid_ = pid; }
  void used(std::uint64_t rss_bytes) { rss_ = rss_bytes; }
  void output(int stream, std::string_view chunk) {
    if (on_output_ && !exited_) on_output_(stream, chunk);
  }
  /// Reports the exit once; the handler may destroy this object.
  void exit(container_exit how, bool reached_main) {
    if (exited_) return;
    output_drained();  // (its agent sent all it wrote before the exit; an output waiting for it goes first)
    exited_ = true;
    reached_main_ = reached_main;
    if (auto handler = std::move(on_exit_)) handler(std::move(how));
  }

 private:
  agent_pool& pool_;
  session_id agent_;
  container_id id_;
  host_grant grant_;
  std::int64_t pid_ = 0;
  std::uint64_t rss_ = 0;
  bool exited_ = false;
  bool reached_main_ = false;
  std::optional<wire::launch_header> held_;
  std::function<void()> drained_;  // a drain_output_then() waiting for output_drained
  container_launcher::exit_handler on_exit_;
  container_launcher::output_handler on_output_;
};

namespace {

/// Whether `host` (with `used` taken) has room for a container that needs `need`; if so, `g` is its share.
/// (Not an optional: clang-tidy 16's optional-access check crashes on the loop in launch.)
bool fit(const wire::agent_ready_header& host, const host_usage& used, const resources& need, bool local,
         host_grant& g) {
  g = host_grant{};
  g.weight = need.cpu > 0 ? need.cpu : 1;
  g.cpu = need.cpu > 0 ? need.cpu : (local ? 0 : 1);
  g.memory_mb = need.memory_mb;
  constexpr double rounding = 1e-9;  // (fractions of CPUs add up inexactly)
  if (used.cpu + g.cpu > std::max<std::uint32_t>(1, host.cpus) + rounding) return false;
  if (need.memory_mb > 0 && used.memory_mb + need.memory_mb > host.memory_mb) return false;
  if (!need.placement.empty() &&
      std::find(host.labels.begin(), host.labels.end(), need.placement) == host.labels.end()) {
    return false;
  }
  for (std::uint32_t i = 0; i < host.gpus && g.gpus.size() < need.gpus; ++i) {
    if (i >= used.gpus.size() || !used.gpus[i]) g.gpus.push_back(i);
  }
  return g.gpus.size() == need.gpus;
}

/// Whether `host` (with `used` taken) has room for a container that needs `need`.
bool has_room(const wire::agent_ready_header& host, const host_usage& used, const resources& need, bool local) {
  host_grant unused;
  return fit(host, used, need, local, unused);
}

void take(host_usage& used, const host_grant& g) {
  used.weight += g.weight;
  used.cpu += g.cpu;
  used.memory_mb += g.memory_mb;
  for (std::uint32_t i : g.gpus) {
    if (i >= used.gpus.size()) used.gpus.resize(i + 1);
    used.gpus[i] = true;
  }
}

void give_back(host_usage& used, const host_grant& g) {
  used.weight -= g.weight;
  used.cpu -= g.cpu;
  used.memory_mb -= g.memory_mb;
  for (std::uint32_t i : g.gpus) used.gpus[i] = false;
}

double load(const wire::agent_ready_header& host, const host_usage& used) {
  return used.weight / std::max<std::uint32_t>(1, host.cpus);
}

std::string offer_text(const wire::agent_ready_header& host) {
  std::string labels;
  for (const auto& l : host.labels) labels += (labels.empty() ? ", labels " : " ") + l;
  return fmt::format("{} ({} CPUs, {} MiB, {} GPUs{})", host.name, host.cpus, host.memory_mb, host.gpus, labels);
}

}  // namespace

agent_pool::agent_pool(boost::asio::any_io_executor executor, std::unique_ptr<container_launcher> local)
    : local_(std::move(local)), digests_(std::move(executor)) {
  if (!local_) return;
  local_gpu_ids_ = host_gpus();
  local_host_ = {"the server's own host",
                 host_cpus(),
                 host_memory_mb(),
                 static_cast<std::uint32_t>(local_gpu_ids_.size()),
                 {},
                 ""};
}

agent_pool::~agent_pool() = default;

std::unique_ptr<container_process> agent_pool::launch(const container_spec& spec, exit_handler on_exit,
                                                      output_handler on_output) {
  // Among the hosts with room, the one whose containers count for the fewest CPUs per CPU it has; the
  // server's own first among equals, then agents in the order they joined.
  agent_record* best = nullptr;
  bool found = false;
  host_grant grant;
  host_grant candidate;
  double best_load = std::numeric_limits<double>::infinity();
  if (local_ && fit(local_host_, local_used_, spec.need, true, grant)) {
    found = true;
    best_load = load(local_host_, local_used_);
  }
  for (auto& [id, agent] : agents_) {
    if (agent.draining) continue;
    const double l = load(agent.host, agent.used);
    if (l >= best_load) continue;
    if (fit(agent.host, agent.used, spec.need, false, candidate)) {
      best = &agent;
      best_load = l;
      grant = std::move(candidate);
      found = true;
    }
  }
  if (!found) throw no_capacity_error(no_room(spec.need));
  auto gpu_list = [&](const std::vector<std::string>* ids) {
    std::string visible;
    for (std::uint32_t i : grant.gpus) visible += (visible.empty() ? "" : ",") + (ids ? (*ids)[i] : std::to_string(i));
    return visible;
  };
  if (!best) {
    container_spec local_spec = spec;
    // (A container that asked for no GPU keeps the environment it always had on the server's own host.)
    if (!grant.gpus.empty()) local_spec.environment.push_back("CUDA_VISIBLE_DEVICES=" + gpu_list(&local_gpu_ids_));
    auto process = local_->launch(
        local_spec,
        [this, g = grant, handler = std::move(on_exit)](container_exit exit) {
          give_back(local_used_, g);
          handler(std::move(exit));
        },
        std::move(on_output));
    take(local_used_, grant);  // (once it has started: a launch that throws starts nothing)
    return process;
  }
  take(best->used, grant);
  auto c =
      std::make_unique<remote_container>(*this, best->id, spec.id, grant, std::move(on_exit), std::move(on_output));
  best->containers.emplace(spec.id, c.get());
  wire::launch_header launch{number(spec.id), spec.credential, spec.digest,   spec.executable,
                             spec.arguments,  spec.app,        spec.function, grant.gpus};
  spdlog::debug("container {} for {}.{} placed on agent {}{}", spec.id, spec.app, spec.function, best->host.name,
                grant.gpus.empty() ? "" : " with GPUs " + gpu_list(nullptr));
  if (launch.digest.empty()) launch.digest = digests_.known(spec.executable);
  if (!launch.digest.empty()) {
    binaries_[launch.digest] = spec.executable;
    best->connection->send(wire::message_kind::launch, launch);
    return c;
  }
  // A program's own binary, not hashed yet: hashed off the event loop (a large one takes seconds), and the
  // launch sent then.
  c->hold(std::move(launch));
  digests_.of(spec.executable,
              [this, agent = best->id, id = spec.id](const std::string& digest) { send_held(agent, id, digest); });
  return c;
}

void agent_pool::send_held(session_id agent_id, container_id id, const std::string& digest) {
  auto agent = agents_.find(agent_id);
  if (agent == agents_.end()) return;  // it has gone, and its containers with it (left)
  auto found = agent->second.containers.find(id);
  if (found == agent->second.containers.end()) return;
  remote_container* c = found->second;
  auto held = c->take_held();
  if (!held) return;
  wire::launch_header launch = std::move(*held);
  std::string not_started;
  if (c->signal_while_held != 0) not_started = "was stopped before it started";
  if (digest.empty()) not_started = "could not be started: cannot read " + launch.executable + " on the server's host";
  if (!not_started.empty()) {
    agent->second.containers.erase(found);
    give_back(agent->second.used, c->grant());
    c->exit({std::move(not_started), c->signal_while_held, false}, false);
    return;
  }
  launch.digest = digest;
  binaries_[digest] = launch.executable;
  agent->second.connection->send(wire::message_kind::launch, launch);
}

std::string agent_pool::no_room(const resources& need) const {
  if (local_ && has_room(local_host_, local_used_, need, true)) return "";
  for (const auto& [id, agent] : agents_) {
    if (!agent.draining && has_room(agent.host, agent.used, need, false)) return "";
  }
  if (!local_ && agents_.empty()) return "no agent is connected";
  if (!need.any()) return "every agent is full";
  return "no host has " + need.describe() + " free for another container";
}

std::string agent_pool::never_fits(const resources& need) const {
  if (!local_) return "";
  const host_usage none;
  std::string hosts = offer_text(local_host_);
  if (has_room(local_host_, none, need, true)) return "";
  for (const auto& [id, agent] : agents_) {
    if (has_room(agent.host, none, need, false)) return "";
    hosts += "; " + offer_text(agent.host);
  }
  return "no host can ever give one of its containers " + need.describe() + ": the hosts are " + hosts +
         ". Lower the function's cpu, memory_mb, gpus or placement options, or run the server with agents on hosts "
         "that have them (`ferry server --agents manual` or `--agents slurm`, docs/cluster.md)";
}

void agent_pool::joined(session_id id, std::shared_ptr<wire::connection> connection, wire::agent_ready_header host) {
  agent_record& agent = agents_[id];
  agent.id = id;
  agent.connection = std::move(connection);
  agent.host = std::move(host);
}

void agent_pool::left(session_id id, const std::string& reason) {
  auto it = agents_.find(id);
  if (it == agents_.end()) return;
  agent_record agent = std::move(it->second);
  agents_.erase(it);
  // Each exit may destroy other containers' records (and so remove them from `agent.containers`): look each
  // up again.
  std::vector<container_id> ids;
  ids.reserve(agent.containers.size());
  for (const auto& [cid, c] : agent.containers) ids.push_back(cid);
  for (container_id cid : ids) {
    auto found = agent.containers.find(cid);
    if (found == agent.containers.end()) continue;
    remote_container* c = found->second;
    agent.containers.erase(found);
    c->exit({"was lost with its host: its agent on " + agent.host.name + " went (" + reason + ")", SIGKILL, true},
            false);
  }
}

void agent_pool::on_frame(session_id id, const wire::frame& f) {
  auto it = agents_.find(id);
  if (it == agents_.end()) throw wire::protocol_error(std::string(wire::to_string(f.kind)) + " before agent_ready");
  agent_record& agent = it->second;
  auto container = [&](std::uint64_t cid) -> remote_container* {
    auto found = agent.containers.find(container_id{cid});
    return found == agent.containers.end() ? nullptr : found->second;
  };
  // Frames about a container the server has let go of (stopped with the server's record of it) are late,
  // not wrong: they are dropped.
  switch (f.kind) {
    case wire::message_kind::launched: {
      auto [cid, pid] = f.decode_header<wire::launched_header>();
      if (remote_container* c = container(cid)) c->started(pid);
      return;
    }
    case wire::message_kind::container_output: {
      auto [cid, stream] = f.decode_header<wire::container_output_header>();
      if (remote_container* c = container(cid)) {
        c->output(static_cast<int>(stream), std::string_view(f.payload.data(), f.payload.size()));
      }
      return;
    }
    case wire::message_kind::container_exited: {
      auto [cid, how, signal, started, reached_main, host_lost] = f.decode_header<wire::container_exited_header>();
      agent.draining |= host_lost;  // (it is stopping: nothing more goes there)
      remote_container* c = container(cid);
      if (!c) return;
      agent.containers.erase(container_id{cid});
      give_back(agent.used, c->grant());
      std::string what = started ? how : "could not be started on " + agent.host.name + ": " + how;
      if (host_lost) what = "was stopped as its agent on " + agent.host.name + " stopped (it " + what + ")";
      c->exit({std::move(what), signal, host_lost}, reached_main);
      return;
    }
    case wire::message_kind::output_drained: {
      auto [cid] = f.decode_header<wire::drain_output_header>();
      if (remote_container* c = container(cid)) c->output_drained();
      return;
    }
    case wire::message_kind::container_stats: {
      auto [usage] = f.decode_header<wire::container_stats_header>();
      for (const auto& [cid, rss] : usage) {
        if (remote_container* c = container(cid)) c->used(rss);
      }
      return;
    }
    case wire::message_kind::fetch_binary: {
      auto [digest, offset] = f.decode_header<wire::fetch_binary_header>();
      send_binary_chunk(agent, digest, offset);
      return;
    }
    default:
      throw wire::protocol_error(std::string("unexpected ") + wire::to_string(f.kind) + " message from an agent");
  }
}

void agent_pool::send_binary_chunk(agent_record& agent, const std::string& digest, std::uint64_t offset) {
  auto refuse = [&](const std::string& why) {
    agent.connection->send(wire::message_kind::binary_chunk,
                           wire::binary_chunk_header{digest, offset, 0, wire::status::bad_arguments},
                           [&](detail::buffer& out) {
                             wire::encode_error(out, {wire::status::bad_arguments, "", why, "", "", ""});
                           });
  };
  auto known = binaries_.find(digest);
  if (known == binaries_.end()) return refuse("the server has no binary " + digest + " to send");
  const int fd = ::open(known->second.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return refuse("cannot open " + known->second + " on the server's host: " + std::generic_category().message(errno));
  struct stat st {};
  ::fstat(fd, &st);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  const std::uint64_t n = offset >= size ? 0 : std::min(wire::binary_chunk_size, size - offset);
  std::string bytes(n, '\0');
  const ssize_t got = n == 0 ? 0 : ::pread(fd, bytes.data(), n, static_cast<off_t>(offset));
  const int err = errno;
  ::close(fd);
  if (got < 0 || static_cast<std::uint64_t>(got) != n) {
    return refuse("cannot read " + known->second +
                  " on the server's host: " + std::generic_category().message(got < 0 ? err : EIO));
  }
  agent.connection->send(wire::message_kind::binary_chunk,
                         wire::binary_chunk_header{digest, offset, size, wire::status::ok},
                         [&](detail::buffer& out) { out.append(bytes.data(), bytes.size()); });
}

void agent_pool::send_signal(remote_container& c, int signal) {
  if (c.holding()) {
    c.signal_while_held = signal;
    return;
  }
  auto it = agents_.find(c.agent());
  if (it == agents_.end()) return;
  it->second.connection->send(wire::message_kind::signal_container,
                              wire::signal_container_header{number(c.id()), signal});
}

bool agent_pool::send_drain(remote_container& c) {
  auto it = agents_.find(c.agent());
  return !c.holding() && it != agents_.end() &&
         it->second.connection->send(wire::message_kind::drain_output, wire::drain_output_header{number(c.id())});
}

void agent_pool::forget(const remote_container& c) {
  auto it = agents_.find(c.agent());
  if (it == agents_.end()) return;
  auto found = it->second.containers.find(c.id());
  if (found != it->second.containers.end() && found->second == &c) {
    it->second.containers.erase(found);
    give_back(it->second.used, c.grant());
  }
}

}  // namespace ferry::server
