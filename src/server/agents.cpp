#include "server/agents.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <system_error>
#include <thread>

#include "server/sha256.hpp"

namespace ferry::server {

/// A container on an agent's host, as the scheduler sees it: signals go to the agent, and what the agent
/// reports of it (its pid, its output, its exit) comes back through the pool.
class remote_container final : public container_process {
 public:
  remote_container(agent_pool& pool, session_id agent, container_id id, container_launcher::exit_handler on_exit,
                   container_launcher::output_handler on_output)
      : pool_(pool), agent_(agent), id_(id), on_exit_(std::move(on_exit)), on_output_(std::move(on_output)) {}
  ~remote_container() override { pool_.forget(*this); }

  std::int64_t pid() const override { return pid_; }
  void terminate() override { pool_.send_signal(*this, SIGTERM); }
  void kill() override { pool_.send_signal(*this, SIGKILL); }
  /// Its output arrives over the agent's connection, as the agent reads it; there is nothing to read here.
  void drain_output() override {}
  std::uint64_t rss_bytes() const override { return 0; }  // (not reported by agents yet)
  bool reached_main() override { return reached_main_; }

  session_id agent() const { return agent_; }
  container_id id() const { return id_; }

  void started(std::int64_t pid) { pid_ = pid; }
  void output(int stream, std::string_view chunk) {
    if (on_output_ && !exited_) on_output_(stream, chunk);
  }
  /// Reports the exit once; the handler may destroy this object.
  void exit(container_exit how, bool reached_main) {
    if (exited_) return;
    exited_ = true;
    reached_main_ = reached_main;
    if (auto handler = std::move(on_exit_)) handler(std::move(how));
  }

 private:
  agent_pool& pool_;
  session_id agent_;
  container_id id_;
  std::int64_t pid_ = 0;
  bool exited_ = false;
  bool reached_main_ = false;
  container_launcher::exit_handler on_exit_;
  container_launcher::output_handler on_output_;
};

namespace {

std::uint32_t local_cpus() { return std::max(1u, std::thread::hardware_concurrency()); }

/// An agent takes a container per CPU it offers, never more, and none while it stops.
bool has_room(const agent_record& agent) {
  return !agent.draining && agent.containers.size() < std::max<std::uint32_t>(1, agent.host.cpus);
}

}  // namespace

agent_pool::agent_pool(std::unique_ptr<container_launcher> local) : local_(std::move(local)) {}

agent_pool::~agent_pool() = default;

std::unique_ptr<container_process> agent_pool::launch(const container_spec& spec, exit_handler on_exit,
                                                      output_handler on_output) {
  // The host with the fewest containers per CPU; the server's own first among equals. An agent takes a
  // container per CPU it offers, never more; the server's own host takes what it is given, as it always has.
  agent_record* best = nullptr;
  double best_load = std::numeric_limits<double>::infinity();
  if (local_) best_load = static_cast<double>(local_containers_) / local_cpus();
  for (auto& [id, agent] : agents_) {
    if (!has_room(agent)) continue;
    const double load = static_cast<double>(agent.containers.size()) / std::max<std::uint32_t>(1, agent.host.cpus);
    if (load < best_load) {
      best = &agent;
      best_load = load;
    }
  }
  if (!best) {
    if (!local_) throw no_capacity_error(no_room());
    auto process = local_->launch(
        spec,
        [this, handler = std::move(on_exit)](container_exit exit) {
          --local_containers_;
          handler(std::move(exit));
        },
        std::move(on_output));
    ++local_containers_;  // (once it has started: a launch that throws starts nothing)
    return process;
  }
  const std::string digest = spec.digest.empty() ? digests_.of(spec.executable) : spec.digest;
  if (digest.empty()) throw std::system_error(errno, std::generic_category(), "cannot read " + spec.executable);
  binaries_[digest] = spec.executable;
  auto c = std::make_unique<remote_container>(*this, best->id, spec.id, std::move(on_exit), std::move(on_output));
  best->containers.emplace(spec.id, c.get());
  best->connection->send(wire::message_kind::launch,
                         wire::launch_header{number(spec.id), spec.credential, digest, spec.executable, spec.arguments,
                                             spec.app, spec.function});
  spdlog::debug("container {} for {}.{} placed on agent {}", spec.id, spec.app, spec.function, best->host.name);
  return c;
}

std::string agent_pool::no_room() const {
  if (local_ || std::any_of(agents_.begin(), agents_.end(), [](const auto& a) { return has_room(a.second); })) {
    return "";
  }
  return agents_.empty() ? "no agent is connected" : "every agent is full";
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
      std::string what = started ? how : "could not be started on " + agent.host.name + ": " + how;
      if (host_lost) what = "was stopped as its agent on " + agent.host.name + " stopped (it " + what + ")";
      c->exit({std::move(what), signal, host_lost}, reached_main);
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

void agent_pool::send_signal(const remote_container& c, int signal) {
  auto it = agents_.find(c.agent());
  if (it == agents_.end()) return;
  it->second.connection->send(wire::message_kind::signal_container,
                              wire::signal_container_header{number(c.id()), signal});
}

void agent_pool::forget(const remote_container& c) {
  auto it = agents_.find(c.agent());
  if (it == agents_.end()) return;
  auto found = it->second.containers.find(c.id());
  if (found != it->second.containers.end() && found->second == &c) it->second.containers.erase(found);
}

}  // namespace ferry::server
