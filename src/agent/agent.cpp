#include "agent/agent.hpp"

#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdlib>
#include <ferry/errors.hpp>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/env.hpp"
#include "server/container_launcher.hpp"
#include "server/resources.hpp"
#include "server/sha256.hpp"
#include "wire/connection.hpp"
#include "wire/protocol.hpp"
#include "wire/tls.hpp"

namespace ferry::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using wire::message_kind;

namespace {

/// How long a container's exit waits for a stop signal to the agent before it is reported (while the agent
/// is not stopping).
constexpr std::chrono::milliseconds exit_report_grace{250};

std::string host_name() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "unknown";
  return name.data();
}

class agent {
 public:
  explicit agent(const agent_options& options)
      : options_(options), launcher_(server::make_process_launcher(io_.get_executor())), signals_(io_) {}

  int run() {
    const auto colon = options_.server.rfind(':');
    if (colon == std::string::npos) throw Error("--server " + options_.server + ": expected HOST:PORT");
    host_ = options_.server.substr(0, colon);
    if (host_.size() > 2 && host_.front() == '[' && host_.back() == ']') host_ = host_.substr(1, host_.size() - 2);
    port_ = options_.server.substr(colon + 1);
    // SIGINT and SIGTERM are blocked and read from a signalfd, so that a container's exit can be checked
    // against a stop signal already sent: `scancel` signals every process of the job, the containers with
    // the agent, and a container that exits first must still count as stopped with its agent.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    const int signal_fd = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
    signals_.assign(signal_fd);
    wait_for_signal();
    connect();
    wire::run_batched(io_);
    return exit_code_;
  }

 private:
  void wait_for_signal() {
    signals_.async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
      if (ec) return;
      if (!take_stop_signal()) wait_for_signal();
    });
  }

  /// Reads a stop signal sent to the agent, if one is pending, and begins to stop; true if it did.
  bool take_stop_signal() {
    signalfd_siginfo info{};
    if (::read(signals_.native_handle(), &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return false;
    spdlog::info("received {}, stopping its containers", info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
    stop(0);
    return true;
  }

  /// Connects, and says hello; a failure tries again (see reconnect()).
  void connect() {
    auto socket = std::make_shared<tcp::socket>(io_);
    auto resolver = std::make_shared<tcp::resolver>(io_);
    resolver->async_resolve(
        host_, port_,
        [this, socket, resolver](boost::system::error_code ec, const tcp::resolver::results_type& endpoints) {
          if (ec) return reconnect(ec.message());
          asio::async_connect(
              *socket, endpoints, [this, socket](boost::system::error_code connect_ec, const tcp::endpoint&) {
                if (stopping_) return finish_if_done();
                if (connect_ec) return reconnect(connect_ec.message());
                auto stream = wire::tls::client_stream(std::move(*socket));
                if (!stream->is_tls()) return say_hello(std::move(*stream));
                if (options_.server_cert.empty()) {
                  spdlog::error(
                      "the ferry server at {} is on another host, and ferry talks to other hosts over TLS, "
                      "accepting only the server's own certificate: give its fingerprint (sha256:..., which "
                      "`ferry server` prints at start) or a copy of its tls-cert.pem with --server-cert",
                      options_.server);
                  return stop(1);
                }
                wire::tls::async_client_handshake(stream, options_.server_cert,
                                                  [this, stream](const std::string& error, bool wrong_certificate) {
                                                    if (stopping_) return finish_if_done();
                                                    if (error.empty()) return say_hello(std::move(*stream));
                                                    if (!wrong_certificate) return reconnect(error);
                                                    spdlog::error("the ferry server at {}: {}", options_.server, error);
                                                    stop(1);
                                                  });
              });
        });
  }

  void say_hello(wire::stream stream) {
    closed_ = false;
    connection_ = std::make_shared<wire::connection>(std::move(stream), wire::max_hello_frame_size);
    connection_->start([this](const wire::frame& f) { on_frame(f); },
                       [this](const std::string& reason) { on_closed(reason); });
    connection_->send(message_kind::hello, wire::hello_header{wire::protocol_version, options_.token,
                                                              static_cast<std::uint8_t>(wire::peer_role::agent), 0,
                                                              static_cast<std::int64_t>(::getpid())});
  }

  /// The server could not be reached, or the connection was lost (its containers have exited): tries again,
  /// a second apart and then up to 10 s, for the reconnect window; then gives up.
  void reconnect(const std::string& why) {
    if (stopping_) return finish_if_done();
    const auto now = std::chrono::steady_clock::now();
    if (!lost_since_) lost_since_ = now;
    if (now - *lost_since_ >= options_.reconnect_window) {
      spdlog::error("cannot reach the ferry server at {} ({}) for {} s: giving up (--reconnect-window)",
                    options_.server, why, options_.reconnect_window.count());
      stop(1);
      return;
    }
    retry_delay_ = std::min(std::chrono::milliseconds(10'000), retry_delay_ * 2);
    if (!warned_unreachable_) {
      spdlog::warn("cannot reach the ferry server at {} ({}); trying again for up to {} s", options_.server, why,
                   options_.reconnect_window.count());
      warned_unreachable_ = true;
    }
    retry_timer_ = std::make_unique<asio::steady_timer>(io_, retry_delay_);
    retry_timer_->async_wait([this](boost::system::error_code ec) {
      if (!ec) connect();
    });
  }

  /// A binary being fetched from the server: written to a file of its own and hashed as it arrives.
  struct download {
    std::filesystem::path part;
    std::ofstream out;
    server::sha256 hash;
    std::uint64_t received = 0;
    std::vector<std::uint64_t> waiting;  // the launches (in preparing_) that need it
  };

  void on_frame(const wire::frame& f) {
    switch (f.kind) {
      case message_kind::welcome: {
        auto [version, max_frame_size] = f.decode_header<wire::welcome_header>();
        connection_->set_peer_max_frame_size(max_frame_size + wire::header_allowance);
        connection_->set_max_frame_size(wire::binary_chunk_size + wire::header_allowance);
        connection_->keep_alive(wire::heartbeat_interval, wire::heartbeat_timeout);
        send_stats_later();
        lost_since_.reset();
        warned_unreachable_ = false;
        retry_delay_ = std::chrono::milliseconds(500);
        const std::string name = options_.name;
        spdlog::info("connected to the ferry server {} at {} as {}: {} CPUs, {} MiB, {} GPUs", version, options_.server,
                     name, options_.cpus, options_.memory_mb, options_.gpus);
        connection_->send(message_kind::agent_ready,
                          wire::agent_ready_header{name, options_.cpus, options_.memory_mb,
                                                   static_cast<std::uint32_t>(std::max(0, options_.gpus)),
                                                   options_.labels, env_or_empty("SLURM_JOB_ID"), options_.server_job});
        return;
      }
      case message_kind::refused: {
        auto [reason] = f.decode_header<wire::refused_header>();
        spdlog::error("the ferry server at {} refused this agent: {}", options_.server, reason);
        refused_ = true;
        return;
      }
      case message_kind::launch:
        return on_launch(f.decode_header<wire::launch_header>());
      case message_kind::signal_container: {
        auto [id, sig] = f.decode_header<wire::signal_container_header>();
        if (preparing_.erase(id) > 0) return exited(id, "was stopped before it started", sig, false);
        auto it = running_.find(id);
        if (it == running_.end()) return;  // it has exited (its exit is on the way)
        if (sig == SIGKILL) {
          it->second->kill();
        } else {
          it->second->terminate();
        }
        return;
      }
      case message_kind::drain_output: {
        auto [id] = f.decode_header<wire::drain_output_header>();
        // What the output handler sends goes before the answer, on this one connection.
        if (auto it = running_.find(id); it != running_.end()) it->second->drain_output();
        connection_->send(message_kind::output_drained, wire::drain_output_header{id});
        return;
      }
      case message_kind::binary_chunk:
        return on_binary_chunk(f);
      default:
        throw wire::protocol_error(std::string("unexpected ") + wire::to_string(f.kind) + " message from the server");
    }
  }

  void on_closed(const std::string& reason) {
    closed_ = true;
    if (stopping_) return finish_if_done();
    if (refused_) return stop(1);
    // The server has gone (stopped, restarted, unreachable): so has its record of these containers, which
    // connect to it themselves and have lost it too. Stop them; then connect again.
    spdlog::error(
        "lost the connection to the ferry server at {}: {}; stopping this agent's containers and "
        "connecting again",
        options_.server, reason);
    forget_downloads();
    preparing_.clear();
    for (auto& [id, r] : running_) r->kill();
    reconnect_when_idle_ = true;
    if (running_.empty()) {
      reconnect_when_idle_ = false;
      reconnect(reason);
    }
  }

  /// Stops the containers (SIGTERM, then SIGKILL after a grace period), then the event loop once they have
  /// exited and their exits have been sent.
  void stop(int code) {
    if (stopping_) return;
    stopping_ = true;
    exit_code_ = code;
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    if (retry_timer_) retry_timer_->cancel();
    if (stats_timer_) stats_timer_->cancel();
    for (auto& [id, r] : running_) r->terminate();
    kill_timer_ = std::make_unique<asio::steady_timer>(io_, std::chrono::seconds(5));
    kill_timer_->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      for (auto& [id, r] : running_) r->kill();
    });
    forget_downloads();
    for (const auto& [id, launch] : preparing_) exited(id, "was not started: its agent is stopping", 0, false);
    preparing_.clear();
    finish_if_done();
  }

  /// Once stopping and every container's exit is sent: closes the connection (after what is queued has been
  /// written), and then ends the event loop.
  void finish_if_done() {
    if (reconnect_when_idle_ && running_.empty()) {
      reconnect_when_idle_ = false;
      if (!stopping_) return reconnect("its containers have stopped");
    }
    if (!stopping_ || !running_.empty() || pending_exits_ > 0) return;
    if (kill_timer_) kill_timer_->cancel();
    if (closed_ || !connection_) {
      io_.stop();
    } else {
      connection_->close("agent stopped", /*flush=*/true);  // (on_closed comes back here)
    }
  }

  std::filesystem::path cached(const std::string& digest) const { return options_.cache_dir / digest; }

  void on_launch(wire::launch_header launch) {
    const std::uint64_t id = launch.container_id;
    if (stopping_) return exited(id, "was not started: its agent is stopping", 0, false);
    if (std::filesystem::exists(cached(launch.digest))) return start(launch, cached(launch.digest));
    // A shared filesystem may show the binary at the server's path: hashed off the event loop (it may take
    // seconds), and run from there if it is the one asked for; else fetched from the server.
    const std::string executable = launch.executable;
    preparing_.emplace(id, std::move(launch));
    digests_.of(executable, [this, id](const std::string& digest) {
      auto it = preparing_.find(id);
      if (it == preparing_.end()) return;  // stopped meanwhile, or the connection it came over has gone
      if (digest == it->second.digest) {
        const wire::launch_header launch = take_prepared(id);
        return start(launch, launch.executable);
      }
      fetch(id, it->second.digest);
    });
  }

  wire::launch_header take_prepared(std::uint64_t id) {
    auto node = preparing_.extract(id);
    return std::move(node.mapped());
  }

  /// Has launch `id` wait for binary `digest` from the server; asks for it unless it is on its way.
  void fetch(std::uint64_t id, const std::string& digest) {
    auto [it, first] = downloads_.try_emplace(digest);
    it->second.waiting.push_back(id);
    if (!first) return;
    spdlog::info("fetching binary {} from the server", digest.substr(0, 12));
    connection_->send(message_kind::fetch_binary, wire::fetch_binary_header{digest, 0});
  }

  void on_binary_chunk(const wire::frame& f) {
    auto [digest, offset, size, status] = f.decode_header<wire::binary_chunk_header>();
    auto it = downloads_.find(digest);
    if (it == downloads_.end()) return;
    download& d = it->second;
    auto fail_all = [&](const std::string& why) {
      auto waiting = std::move(d.waiting);
      discard(d);
      downloads_.erase(it);
      for (std::uint64_t id : waiting) {
        if (preparing_.erase(id) > 0) exited(id, why, 0, false);
      }
    };
    if (status != wire::status::ok) return fail_all(wire::decode_error(f.payload).message);
    if (offset != d.received) throw wire::protocol_error("binary_chunk at an offset not asked for");
    if (!d.out.is_open()) {
      // (A file of its own, renamed into place once whole: another agent sharing the cache never runs half
      // a binary.)
      std::error_code ec;
      std::filesystem::create_directories(options_.cache_dir, ec);
      d.part = options_.cache_dir / (digest + ".part-" + std::to_string(::getpid()));
      d.out.open(d.part, std::ios::binary | std::ios::trunc);
    }
    d.out.write(f.payload.data(), static_cast<std::streamsize>(f.payload.size()));
    if (!d.out) return fail_all("cannot write " + d.part.string() + " (the agent's --cache-dir)");
    d.hash.update(std::span<const char>(f.payload.data(), f.payload.size()));
    d.received += f.payload.size();
    if (d.received < size && !f.payload.empty()) {
      connection_->send(message_kind::fetch_binary, wire::fetch_binary_header{digest, d.received});
      return;
    }
    if (d.hash.hex() != digest) {
      return fail_all("the binary fetched from the server does not have the digest " + digest +
                      " (it changed on the server's host since the app started?)");
    }
    d.out.close();
    if (!d.out) return fail_all("cannot write " + d.part.string() + " (the agent's --cache-dir)");
    std::error_code ec;
    ::chmod(d.part.c_str(), 0700);
    std::filesystem::rename(d.part, cached(digest), ec);
    if (ec) return fail_all("cannot write " + cached(digest).string() + ": " + ec.message());
    auto waiting = std::move(d.waiting);
    downloads_.erase(it);
    for (std::uint64_t id : waiting) {
      if (preparing_.contains(id)) start(take_prepared(id), cached(digest));
    }
  }

  /// Removes what a download has written so far.
  static void discard(download& d) {
    if (d.part.empty()) return;
    d.out.close();
    std::error_code ignored;
    std::filesystem::remove(d.part, ignored);
  }

  void forget_downloads() {
    for (auto& [digest, d] : downloads_) discard(d);
    downloads_.clear();
  }

  void start(const wire::launch_header& launch, const std::filesystem::path& binary) {
    const std::uint64_t id = launch.container_id;
    server::container_spec spec;
    spec.id = server::container_id{id};
    spec.executable = binary.string();
    spec.arguments = launch.arguments;
    spec.app = launch.app;
    spec.function = launch.function;
    spec.server_address = options_.server;  // where this host reached the server
    spec.server_cert = options_.server_cert;
    spec.credential = launch.credential;
    if (!options_.gpu_ids.empty()) {  // its own GPUs, and no other's (none when it asked for none)
      std::string visible;
      for (std::uint32_t index : launch.gpus) {
        if (index >= options_.gpu_ids.size()) {
          return exited(id, "was given GPU " + std::to_string(index) + ", which this host does not have", 0, false);
        }
        visible += (visible.empty() ? "" : ",") + options_.gpu_ids[index];
      }
      spec.environment.push_back("CUDA_VISIBLE_DEVICES=" + visible);
    }
    try {
      auto process = launcher_->launch(
          spec,
          [this, id](const server::container_exit& exit) {
            auto it = running_.find(id);
            const bool reached_main = it != running_.end() && it->second->reached_main();
            running_.erase(id);
            if (stopping_) {
              exited(id, exit.how, exit.signal, true, reached_main);
              return finish_if_done();
            }
            // A signal sent to a whole Slurm job (scancel) reaches its processes in no set order: the
            // container's may end it before the agent's own has arrived, and the container's connection
            // closing may have made the server ask for its stop meanwhile. So the agent waits a moment for a
            // stop signal of its own before it reports the exit as the container's.
            ++pending_exits_;
            auto grace = std::make_shared<asio::steady_timer>(io_, exit_report_grace);
            grace->async_wait(
                [this, grace, id, how = exit.how, signal = exit.signal, reached_main](boost::system::error_code) {
                  --pending_exits_;
                  if (!stopping_) take_stop_signal();
                  exited(id, how, signal, true, reached_main);
                  finish_if_done();
                });
          },
          [this, id](int stream, std::string_view chunk) {
            connection_->send(message_kind::container_output,
                              wire::container_output_header{id, static_cast<wire::log_stream>(stream)},
                              [&](detail::buffer& out) { out.append(chunk.data(), chunk.size()); });
          });
      const std::int64_t pid = process->pid();
      running_.emplace(id, std::move(process));
      connection_->send(message_kind::launched, wire::launched_header{id, pid});
    } catch (const std::exception& e) {
      exited(id, e.what(), 0, false);
    }
  }

  /// Every container_stats_interval while connected: what each running container uses.
  void send_stats_later() {
    stats_timer_ = std::make_unique<asio::steady_timer>(io_, wire::container_stats_interval);
    stats_timer_->async_wait([this](boost::system::error_code ec) {
      if (ec || closed_ || !connection_) return;
      if (!running_.empty()) {
        wire::container_stats_header stats;
        stats.containers.reserve(running_.size());
        for (const auto& [id, process] : running_) stats.containers.push_back({id, process->rss_bytes()});
        connection_->send(message_kind::container_stats, stats);
      }
      send_stats_later();
    });
  }

  /// Reports container `id`'s end; while the agent stops, as lost with its host (see container_exited).
  void exited(std::uint64_t id, const std::string& how, int signal, bool started, bool reached_main = false) {
    connection_->send(message_kind::container_exited,
                      wire::container_exited_header{id, how, signal, started, reached_main, stopping_});
  }

  agent_options options_;
  asio::io_context io_{1};
  std::unique_ptr<server::container_launcher> launcher_;
  asio::posix::stream_descriptor signals_;  // a signalfd of SIGINT and SIGTERM
  std::shared_ptr<wire::connection> connection_;
  std::map<std::uint64_t, std::unique_ptr<server::container_process>> running_;  // by container id
  std::size_t pending_exits_ = 0;                                                // exits waiting out exit_report_grace
  std::map<std::uint64_t, wire::launch_header> preparing_;  // launches waiting for their binary, by container id
  std::map<std::string, download> downloads_;               // by digest
  server::file_digests digests_{io_.get_executor()};        // of binaries at the server's paths (a shared filesystem)
  std::unique_ptr<asio::steady_timer> kill_timer_;
  std::unique_ptr<asio::steady_timer> stats_timer_;
  std::string host_, port_;                                          // the server's
  std::optional<std::chrono::steady_clock::time_point> lost_since_;  // unreachable since then
  std::chrono::milliseconds retry_delay_{500};
  std::unique_ptr<asio::steady_timer> retry_timer_;
  bool warned_unreachable_ = false;
  bool reconnect_when_idle_ = false;  // the connection was lost: connect again once the containers have exited
  bool refused_ = false;
  bool closed_ = true;  // the connection has closed (or not been made)
  bool stopping_ = false;
  int exit_code_ = 0;
};

}  // namespace

agent_options with_detected_resources(agent_options options) {
  if (options.name.empty()) options.name = env_or_empty("SLURMD_NODENAME");
  if (options.name.empty()) options.name = host_name();
  if (options.cpus == 0) options.cpus = server::host_cpus();
  if (options.memory_mb == 0) options.memory_mb = server::host_memory_mb();
  std::vector<std::string> ids = server::host_gpus();
  if (options.gpus >= 0) {  // told: the first of those it has, then by number
    ids.resize(static_cast<std::size_t>(options.gpus));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i].empty()) ids[i] = std::to_string(i);
    }
  }
  options.gpus = static_cast<std::int32_t>(ids.size());
  options.gpu_ids = std::move(ids);
  return options;
}

int run_agent(const agent_options& options) { return agent(options).run(); }

}  // namespace ferry::agent
