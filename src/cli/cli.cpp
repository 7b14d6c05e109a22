#include "cli/cli.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <ferry/ferry.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string_view>
#include <system_error>
#include <vector>

#include "agent/agent.hpp"
#include "base/exec_array.hpp"
#include "client/client.hpp"
#include "codec/json.hpp"
#include "runtime/logging.hpp"
#include "runtime/process_client.hpp"
#include "runtime/server_config.hpp"
#include "server/server.hpp"
#include "wire/tls.hpp"

namespace ferry::cli {

namespace {

constexpr const char* default_address = runtime::default_server_address;

struct server_flags {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7700;
  std::string state_dir;
  std::uint64_t max_frame_size = wire::default_max_frame_size;
  std::size_t max_queued_inputs = server::server_options{}.max_queued_inputs;
  std::uint64_t cancel_grace_ms = static_cast<std::uint64_t>(server::server_options{}.cancel_grace.count());
  std::uint64_t retention_s = static_cast<std::uint64_t>(server::server_options{}.retention.count());
  std::uint64_t drain_timeout_ms = static_cast<std::uint64_t>(server::server_options{}.drain_timeout.count());
  std::size_t log_lines = server::server_options{}.max_log_lines;
  std::uint64_t idle_timeout_ms = static_cast<std::uint64_t>(server::server_options{}.idle_timeout.count());
  std::string agents = "local";
  std::string advertise;
  server::slurm_options slurm;
  std::string slurm_args;
  std::uint64_t slurm_idle_s = 60;
};

/// `ferry agent`'s flags.
struct agent_flags {
  agent::agent_options options;
  std::string token_file;
  std::string state_dir;
  std::string server_cert;
  std::uint64_t reconnect_window_s = 300;
};

/// Where a client command finds the server and its token.
struct server_target {
  std::string address;
  std::string state_dir;
};

std::string human_bytes(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

/// This process's environment with `set` added, replacing the variables of the same names: what an exec'd
/// program gets. (Not setenv: the CLI may have started threads, and environ is not theirs to change.)
std::vector<std::string> environment_with(const std::map<std::string, std::string>& set) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry; ++entry) {
    const std::string_view text(*entry);
    if (!set.contains(std::string(text.substr(0, text.find('='))))) env.emplace_back(text);
  }
  for (const auto& [name, value] : set) env.push_back(name + "=" + value);
  return env;
}

std::shared_ptr<client::client> connect_to(const server_target& target) {
  return client::client::connect(runtime::server_connect_options(target.address, target.state_dir));
}

/// Runs `binary` with `arguments` and FERRY_DESCRIBE=1, and returns what it writes to stdout; a binary that
/// has not finished within `timeout` is killed, and that is an error.
std::string describe_app(const std::string& binary, const std::vector<std::string>& arguments,
                         std::chrono::milliseconds timeout) {
  std::vector<std::string> args{binary};
  args.insert(args.end(), arguments.begin(), arguments.end());
  std::vector<std::string> env = environment_with({{"FERRY_DESCRIBE", "1"}});
  const std::vector<char*> argv = exec_array(args), envp = exec_array(env);  // (made before the fork)
  int fds[2];
  if (::pipe(fds) != 0) throw Error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw Error("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    if (const int null = ::open("/dev/null", O_RDONLY); null >= 0) ::dup2(null, STDIN_FILENO);  // it asks nothing
    ::execve(binary.c_str(), argv.data(), envp.data());
    std::fprintf(stderr, "ferry deploy: cannot run %s: %s\n", binary.c_str(), ::strerrordesc_np(errno));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char chunk[65536];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd readable{fds[0], POLLIN, 0};
    const int ready = left.count() > 0 ? ::poll(&readable, 1, static_cast<int>(left.count())) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (timed_out) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", static_cast<double>(timeout.count()) / 1000);
    throw Error(binary + " did not describe its app within " + seconds +
                " s, and was stopped: ferry deploy runs it (with FERRY_DESCRIBE=1 and the arguments after --) and "
                "expects it to reach app.main at once; does its main wait for something, or work long before "
                "app.main? (--describe-timeout sets the wait)");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error(binary + " did not describe its app (it " +
                (WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status)) : "was killed") +
                "); is it a ferry app that calls app.main?");
  }
  return out;
}

/// `ferry deploy BINARY [ARGS...]`: stores the binary on the server and registers its functions; its
/// containers run it with ARGS.
int deploy(const server_target& target, const std::string& binary, const std::string& name,
           const std::vector<std::string>& arguments, std::chrono::milliseconds describe_timeout) {
  const std::string described = describe_app(binary, arguments, describe_timeout);
  if (described.empty()) {
    throw Error(binary +
                " is not a ferry app: run with FERRY_DESCRIBE=1 it printed nothing (a ferry app declares "
                "its functions on a ferry::App and returns app.main(argc, argv, entry) from main)");
  }
  detail::reader r{std::span<const char>(described.data(), described.size())};
  std::string app;
  std::vector<wire::function_spec> specs;
  try {
    std::tie(app, specs) = ferry::decode<std::tuple<std::string, std::vector<wire::function_spec>>>(r);
  } catch (const DecodeError& e) {
    throw Error(binary + " is not a ferry app of this version (its description does not decode: " + e.what() +
                "); rebuild it against this ferry (" + ferry::version() + ")");
  }
  const std::string declared_name = app;
  if (!name.empty()) app = name;
  std::ifstream file(binary, std::ios::binary);
  std::string image(std::filesystem::file_size(binary), '\0');
  if (!file.read(image.data(), static_cast<std::streamsize>(image.size()))) throw Error("cannot read " + binary);
  auto c = connect_to(target);
  detail::buffer answer = c->request(detail::control_verb::deploy, app, [&](detail::buffer& out) {
    out.commit(mp_encode_array(out.reserve(5), 4));
    codec<std::vector<wire::function_spec>>::encode(out, specs);
    out.commit(mp_encode_binl(out.reserve(5), static_cast<std::uint32_t>(image.size())));
    out.append(image.data(), image.size());
    codec<std::string>::encode(out, declared_name);
    codec<std::vector<std::string>>::encode(out, arguments);
  });
  detail::reader digest_reader{answer.view()};
  const auto digest = ferry::decode<std::string>(digest_reader);
  std::printf("deployed app '%s': %zu function(s), binary sha256:%s\n", app.c_str(), specs.size(),
              digest.substr(0, 12).c_str());
  return 0;
}

/// `ferry call APP.FN [JSON ARGS]`: calls a deployed function and prints its result as JSON.
int call(const server_target& target, const std::string& qualified, const std::string& arguments_json) {
  const auto dot = qualified.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == qualified.size()) {
    std::cerr << "ferry call: name the function as APP.FUNCTION, e.g. `ferry call hello.square '[7]'`\n";
    return 2;
  }
  boost::system::error_code ec;
  boost::json::value args = boost::json::parse(arguments_json, ec);
  if (ec || !args.is_array()) {
    std::cerr << "ferry call: the arguments must be a JSON array, e.g. '[1, \"two\"]'"
              << (ec ? ": " + ec.message() : "") << '\n';
    return 2;
  }
  // Ctrl-C (or SIGTERM) cancels the call rather than leaving it to run with nobody to take its result. This
  // thread waits for whichever comes first, the call's end or a signal.
  boost::asio::io_context waiting;
  boost::asio::signal_set signals(waiting, SIGINT, SIGTERM);
  auto c = connect_to(target);
  detail::function_entry entry;
  entry.app = qualified.substr(0, dot);
  entry.name = qualified.substr(dot + 1);
  const std::function<void(detail::buffer&)> encode = [&](detail::buffer& out) { codec_json::to_msgpack(args, out); };
  std::exception_ptr error;
  detail::buffer result;
  const std::uint64_t id = c->submit({entry, encode}, [&](std::exception_ptr e, detail::buffer r) {
    // On the client's I/O thread: hand the outcome to this one.
    boost::asio::post(waiting, [&, e, r = std::move(r)]() mutable {
      error = e;
      result = std::move(r);
      signals.cancel();
    });
  });
  int interrupted = 0;
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;  // the call ended
    interrupted = sig;
    c->cancel(id);  // it ends now, with CancelledError (or with its value, if that came first)
  });
  waiting.run();
  // (A signal that came as the call ended cancelled nothing: then the result stands.)
  bool was_cancelled = false;
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const CancelledError&) {
      was_cancelled = true;
    } catch (...) {
    }
  }
  if (interrupted && was_cancelled) {
    std::cerr << "ferry call: interrupted; the call of " << qualified << " was cancelled\n";
    return 128 + interrupted;
  }
  if (error) std::rethrow_exception(error);
  detail::reader rr{result.view()};
  std::cout << boost::json::serialize(codec_json::to_json(rr)) << '\n';
  return 0;
}

std::string format_time(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm local{};
  ::localtime_r(&t, &local);  // (thread-safe, unlike localtime)
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

/// `ferry apps`: deployed apps and their functions.
int list_apps(const server_target& target) {
  detail::buffer answer = connect_to(target)->request(detail::control_verb::apps, "");
  detail::reader r{answer.view()};
  for (const auto& [app, digest, deployed_at, functions] : ferry::decode<std::vector<wire::app_row>>(r)) {
    std::printf("%s  (deployed %s, sha256:%s)\n", app.c_str(), format_time(deployed_at).c_str(),
                digest.substr(0, 12).c_str());
    for (const auto& [name, signature] : functions) std::printf("  %s  %s\n", name.c_str(), signature.c_str());
  }
  return 0;
}

/// `ferry stop APP`: removes a deployed app.
int stop_app(const server_target& target, const std::string& app) {
  connect_to(target)->request(detail::control_verb::stop, app);
  return 0;
}

/// Which calls `ferry calls` lists.
struct call_filter {
  std::string app;
  std::string function;
  std::string status;
  std::uint32_t limit = 100;
};

/// `ferry calls`: recent spawned calls, newest first.
int list_calls(const server_target& target, const call_filter& filter) {
  detail::buffer answer = connect_to(target)->request(detail::control_verb::calls, "", [&](detail::buffer& out) {
    ferry::encode(out, std::tuple<std::string, std::string, std::string, std::uint32_t>{filter.app, filter.function,
                                                                                        filter.status, filter.limit});
  });
  detail::reader r{answer.view()};
  std::printf("%-20s %-30s %-22s %-20s %10s\n", "CALL", "FUNCTION", "STATUS", "CREATED", "DURATION");
  for (const auto& [id, app, function, status, created, duration] : ferry::decode<std::vector<wire::call_row>>(r)) {
    const std::string qualified = app + "." + function;
    char took[32] = "-";
    if (duration >= 0) std::snprintf(took, sizeof took, "%.3fs", duration);
    std::printf("%-20s %-30s %-22s %-20s %10s\n", id.c_str(), qualified.c_str(), status.c_str(),
                format_time(created).c_str(), took);
  }
  return 0;
}

/// One line of `ferry logs`: when, which function and call, and the text.
void print_log_row(const wire::log_row& row) {
  std::printf("%s %s %s%s%s| %s\n", format_time(row.time).c_str(), row.function.c_str(), row.call_id.c_str(),
              row.call_id.empty() ? "" : " ", row.stream == wire::log_stream::stderr_stream ? "!" : "",
              row.text.c_str());
  std::fflush(stdout);
}

/// `ferry logs APP [-f] [--call ID]`: the lines the app's containers wrote that the server keeps; with
/// follow, then every new one until interrupted.
int show_logs(const server_target& target, const std::string& app, const std::string& call_id, bool follow) {
  auto c = connect_to(target);
  // New lines (on the client's I/O thread) may arrive while this thread still prints the kept ones: they
  // wait, so that the lines come out in order.
  struct followed_lines {
    std::mutex mu;
    bool kept_printed = false;
    std::vector<wire::log_row> early;
  };
  auto followed = std::make_shared<followed_lines>();
  c->set_log_handler([followed](const wire::log_row& row) {
    std::lock_guard lock(followed->mu);
    if (followed->kept_printed) {
      print_log_row(row);
    } else {
      followed->early.push_back(row);
    }
  });
  detail::buffer answer = c->request(detail::control_verb::logs, app, [&](detail::buffer& out) {
    ferry::encode(out, std::tuple<std::string, bool>{call_id, follow});
  });
  detail::reader r{answer.view()};
  {
    std::lock_guard lock(followed->mu);
    for (const auto& row : ferry::decode<std::vector<wire::log_row>>(r)) print_log_row(row);
    for (const auto& row : followed->early) print_log_row(row);
    followed->kept_printed = true;
  }
  if (!follow) return 0;
  const std::string reason = c->wait_closed();
  std::cerr << "ferry: the server closed the connection (" << reason << ")\n";
  return 1;
}

/// `ferry ps`: the server's containers, a row each.
int list_containers(const server_target& target) {
  detail::buffer answer = connect_to(target)->request(detail::control_verb::containers, "");
  detail::reader r{answer.view()};
  const auto rows = ferry::decode<std::vector<wire::container_row>>(r);
  std::printf("%-6s %-16s %-20s %-9s %6s %8s %9s %10s\n", "ID", "APP", "FUNCTION", "STATE", "INPUTS", "PID", "UPTIME",
              "MEMORY");
  std::map<std::string, std::string> waiting;  // why, by APP.FUNCTION
  for (const auto& [id, app, function, state, inputs, pid, uptime, rss, waiting_for] : rows) {
    if (state == "waiting") {  // wanted, but no host has room for it yet: no process
      std::printf("%-6s %-16s %-20s %-9s %6s %8s %9s %10s\n", "-", app.c_str(), function.c_str(), state.c_str(), "-",
                  "-", "-", "-");
      waiting[app + "." + function] = waiting_for;
      continue;
    }
    std::printf("%-6llu %-16s %-20s %-9s %6u %8lld %8.1fs %10s\n", static_cast<unsigned long long>(id), app.c_str(),
                function.c_str(), state.c_str(), inputs, static_cast<long long>(pid), uptime, human_bytes(rss).c_str());
  }
  for (const auto& [function, why] : waiting) std::printf("%s waits for a host: %s\n", function.c_str(), why.c_str());
  return 0;
}

int serve(const server_flags& flags) {
  runtime::init_logging("info");
  const std::filesystem::path state_dir =
      flags.state_dir.empty() ? runtime::default_state_dir() : std::filesystem::path(flags.state_dir);
  server::server_options options;
  options.host = flags.host;
  options.port = flags.port;
  options.max_frame_size = flags.max_frame_size;
  options.max_queued_inputs = flags.max_queued_inputs;
  options.cancel_grace = std::chrono::milliseconds(flags.cancel_grace_ms);
  runtime::check_state_dir(state_dir);
  options.token = runtime::load_or_create_token(state_dir);
  options.state_dir = state_dir;
  options.retention = std::chrono::seconds(flags.retention_s);
  options.drain_timeout = std::chrono::milliseconds(flags.drain_timeout_ms);
  options.max_log_lines = flags.log_lines;
  options.idle_timeout = std::chrono::milliseconds(flags.idle_timeout_ms);
  options.agent_token = runtime::load_or_create_token(state_dir, "agent-token");
  options.local_agent = flags.agents == "local";
  options.advertise = flags.advertise;
  if (flags.agents == "slurm") {
    server::slurm_options slurm = flags.slurm;
    std::istringstream words(flags.slurm_args);
    for (std::string word; words >> word;) slurm.extra_arguments.push_back(word);
    slurm.ferry_path = std::filesystem::read_symlink("/proc/self/exe").string();
    slurm.token_file = state_dir / "agent-token";
    slurm.job_dir = state_dir / "slurm";
    std::filesystem::create_directories(slurm.job_dir);
    slurm.idle_window = std::chrono::seconds(flags.slurm_idle_s);
    options.slurm = std::move(slurm);
  }

  options.stop_on_signals = true;  // SIGINT and SIGTERM stop it gracefully

  // Every connection and container costs descriptors: take all the hard limit allows (often 1024 soft).
  if (rlimit files{}; ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  server::server srv(options);
  // Before the "listening" line, which tells a supervisor (and the tests) that start-up is over.
  if (const std::string pin = srv.tls_fingerprint(); !pin.empty()) {
    spdlog::info(
        "other hosts connect over TLS, and pin this server's certificate {} ({}): agents with --server-cert, "
        "programs and containers with FERRY_SERVER_CERT, either the fingerprint or a copy of the file",
        pin, (state_dir / wire::tls::certificate_file).string());
  }
  if (const std::string local = srv.local_address(); local != srv.address()) {
    spdlog::info("containers on this host connect at {}, which programs on this host may use too (FERRY_SERVER={})",
                 local, local);
  }
  spdlog::info("ferry server {} listening on {} (state directory {})", ferry::version(), srv.address(),
               state_dir.string());
  spdlog::info("dashboard and HTTP API at http://{}/ (the token is in {})", srv.address(),
               (state_dir / "token").string());
  const std::string reach = flags.advertise.empty() ? srv.address() : flags.advertise;
  if (flags.agents == "manual") {
    const std::string pin = srv.tls_fingerprint();
    spdlog::info(
        "containers run only on agents (--agents manual): start `ferry agent --server {} --token-file {}{}` "
        "on each host",
        reach, (state_dir / "agent-token").string(), pin.empty() ? "" : " --server-cert " + pin);
  } else if (flags.agents == "slurm") {
    spdlog::info(
        "containers run on agents in Slurm jobs, asked for as work waits (--agents slurm); they "
        "connect to {} (--advertise) and write their output to {}",
        reach, (state_dir / "slurm").string());
  }
  srv.run();
  return 0;
}

/// `ferry agent`: runs containers on this host for a server.
int run_agent(agent_flags flags) {
  runtime::init_logging("info");
  auto& options = flags.options;
  options.reconnect_window = std::chrono::seconds(flags.reconnect_window_s);
  const std::filesystem::path state_dir =
      flags.state_dir.empty() ? runtime::default_state_dir() : std::filesystem::path(flags.state_dir);
  std::string cert = flags.server_cert;
  std::string cert_from = "--server-cert";
  if (const char* env = std::getenv("FERRY_SERVER_CERT");
      cert.empty() && env && *env) {  // NOLINT(concurrency-mt-unsafe)
    cert = env;
    cert_from = "FERRY_SERVER_CERT";
  }
  if (cert.empty() && std::filesystem::exists(state_dir / wire::tls::certificate_file)) {
    cert = (state_dir / wire::tls::certificate_file).string();  // (the server's, on a shared filesystem)
    cert_from = "--state-dir";
  }
  if (!cert.empty()) {
    try {
      options.server_cert = wire::tls::parse_pin(cert);
    } catch (const Error& e) {
      throw Error(cert_from + ": " + e.what());
    }
  }
  if (const char* token = std::getenv("FERRY_AGENT_TOKEN"); token && *token) {  // NOLINT(concurrency-mt-unsafe)
    options.token = token;
  } else if (!flags.token_file.empty()) {
    std::ifstream in(flags.token_file);
    if (!in || !std::getline(in, options.token) || options.token.empty()) {
      throw Error("cannot read the agents' credential from " + flags.token_file +
                  " (--token-file): copy the server's 'agent-token' file (in its state directory) to this host");
    }
  } else {
    options.token = runtime::read_token(state_dir, "agent-token");
  }
  if (options.cache_dir.empty()) {
    const char* cache = std::getenv("XDG_CACHE_HOME");  // NOLINT(concurrency-mt-unsafe): no threads yet
    const char* home = std::getenv("HOME");             // NOLINT(concurrency-mt-unsafe)
    options.cache_dir = cache && *cache ? std::filesystem::path(cache) / "ferry" / "binaries"
                        : home && *home ? std::filesystem::path(home) / ".cache" / "ferry" / "binaries"
                                        : std::filesystem::path("/tmp") / ("ferry-agent-" + std::to_string(::getuid()));
  }
  return agent::run_agent(agent::with_detected_resources(std::move(options)));
}

/// `ferry --version`: the release and the wire protocol it speaks (programs and servers must agree on it).
std::string version_text() {
  return std::string("ferry ") + ferry::version() + " (wire protocol " + std::to_string(wire::protocol_version) + ")";
}

int run_app(const std::string& address, const std::string& state_dir, const std::string& app,
            const std::vector<std::string>& args) {
  std::map<std::string, std::string> set{{"FERRY_SERVER", address}};
  // The app reads the token from the state directory once it has reached the server (so that an unreachable
  // server is reported first).
  if (const char* token = std::getenv("FERRY_TOKEN"); (!token || !*token) && !state_dir.empty()) {
    set.emplace("FERRY_HOME", state_dir);
  }
  std::vector<std::string> all_args{app};
  all_args.insert(all_args.end(), args.begin(), args.end());
  std::vector<std::string> env = environment_with(set);
  ::execvpe(app.c_str(), exec_array(all_args).data(), exec_array(env).data());
  std::cerr << "ferry run: cannot run " << app << ": " << std::generic_category().message(errno) << '\n';
  return 127;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App cli{"ferry: run C++ functions remotely, in containers managed by a ferry server"};
  cli.require_subcommand(1);
  cli.footer("Run `ferry COMMAND --help` for a command's options.");
  cli.set_version_flag("--version", version_text());

  server_flags flags;
  auto* server_cmd = cli.add_subcommand("server", "Run the ferry server in the foreground");
  server_cmd->add_option("--host", flags.host, "Address to listen on")->capture_default_str();
  server_cmd->add_option("--port", flags.port, "Port to listen on (0: any free port)")->capture_default_str();
  server_cmd->add_option("--state-dir", flags.state_dir,
                         "Where the server keeps its token and state (default: $FERRY_HOME, or ~/.ferry)");
  server_cmd
      ->add_option("--max-frame-size", flags.max_frame_size,
                   "Largest frame (and so payload) in bytes the server accepts")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1024}, wire::max_max_frame_size));
  server_cmd
      ->add_option("--max-queued-inputs", flags.max_queued_inputs,
                   "Inputs one function may have queued; calls beyond it fail with ResourceExhaustedError")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  server_cmd
      ->add_option("--cancel-grace", flags.cancel_grace_ms,
                   "Milliseconds a cancelled or timed-out input may go on running before its container is replaced")
      ->capture_default_str();
  server_cmd
      ->add_option("--retention", flags.retention_s, "Seconds the results of spawned calls are kept after they finish")
      ->capture_default_str();
  server_cmd
      ->add_option("--drain-timeout", flags.drain_timeout_ms,
                   "On SIGTERM, milliseconds running inputs may take to finish before their containers are stopped")
      ->capture_default_str();
  server_cmd
      ->add_option("--idle-timeout", flags.idle_timeout_ms,
                   "Milliseconds a connection may stay silent before it has said hello or sent an HTTP request "
                   "header (also between keep-alive requests), or take nothing of an HTTP response; then it is "
                   "closed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  server_cmd
      ->add_option("--log-lines", flags.log_lines,
                   "How many lines written by containers the server keeps for `ferry logs` and the HTTP API")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  server_target target;
  server_cmd
      ->add_option("--agents", flags.agents,
                   "Where containers run: local (this host, and any agent that connects), manual (only on "
                   "agents that connect: `ferry agent`) or slurm (on agents the server asks Slurm for)")
      ->check(CLI::IsMember({"local", "manual", "slurm"}))
      ->capture_default_str();
  server_cmd->add_option("--advertise", flags.advertise,
                         "HOST:PORT at which other hosts (agents) reach this server (default: its address)");
  server_cmd->add_option("--slurm-partition", flags.slurm.partition,
                         "With --agents slurm: the partition agents' jobs go to (default: the cluster's)");
  server_cmd->add_option("--slurm-args", flags.slurm_args,
                         "With --agents slurm: more sbatch options for agents' jobs, as one string "
                         "('--account=A --time=8:00:00')");
  server_cmd
      ->add_option("--slurm-cpus-per-agent", flags.slurm.cpus_per_agent,
                   "With --agents slurm: the most CPUs one agent's job asks for")
      ->capture_default_str();
  server_cmd
      ->add_option("--slurm-max-agents", flags.slurm.max_agents,
                   "With --agents slurm: the most agents' jobs, pending and running, at once")
      ->capture_default_str();
  server_cmd
      ->add_option("--slurm-idle", flags.slurm_idle_s,
                   "With --agents slurm: seconds an agent may be idle before its job is cancelled")
      ->capture_default_str();

  agent_flags agent;
  auto* agent_cmd = cli.add_subcommand("agent", "Run containers on this host for a ferry server (one agent a host)");
  agent_cmd->add_option("--server", agent.options.server, "The server's address, HOST:PORT, as this host reaches it")
      ->required();
  agent_cmd->add_option("--token-file", agent.token_file,
                        "A copy of the server's 'agent-token' file (default: FERRY_AGENT_TOKEN, else the one in "
                        "--state-dir)");
  agent_cmd->add_option("--server-cert", agent.server_cert,
                        "The server's TLS certificate, needed when it is on another host: its fingerprint "
                        "(sha256:..., as `ferry server` prints it) or a copy of its tls-cert.pem (default: "
                        "FERRY_SERVER_CERT, else the tls-cert.pem in --state-dir)");
  agent_cmd->add_option("--state-dir", agent.state_dir,
                        "The server's state directory, when it is on this host (default: $FERRY_HOME, or ~/.ferry)");
  agent_cmd->add_option("--name", agent.options.name, "This host's name (default: SLURMD_NODENAME, or the host name)");
  agent_cmd->add_option("--cpus", agent.options.cpus,
                        "CPUs offered to containers (default: the Slurm allocation's, or those this process may use)");
  agent_cmd->add_option("--memory-mb", agent.options.memory_mb,
                        "Memory offered, in MiB (default: the Slurm allocation's, or the host's)");
  agent_cmd->add_option("--gpus", agent.options.gpus,
                        "GPUs offered (default: those CUDA_VISIBLE_DEVICES lists, else the Slurm allocation's, "
                        "else the NVIDIA devices /dev/nvidiaN)");
  agent_cmd->add_option("--label", agent.options.labels, "A label of this host (repeatable), for placement");
  agent_cmd
      ->add_flag("--server-job", agent.options.server_job,
                 "Its Slurm job was submitted by the server (--agents slurm), which may cancel it")
      ->group("");  // (the server's own sbatch passes it)
  agent_cmd
      ->add_option("--reconnect-window", agent.reconnect_window_s,
                   "Seconds it keeps trying to reach the server (at start, or after losing it) before it exits")
      ->capture_default_str();
  agent_cmd->add_option("--cache-dir", agent.options.cache_dir,
                        "Where binaries fetched from the server are kept (default: ~/.cache/ferry/binaries)");

  auto add_target = [&](CLI::App* command) {
    command->add_option("--server", target.address,
                        std::string("Server address host:port (default: $FERRY_SERVER, or ") + default_address + ")");
    command->add_option("--state-dir", target.state_dir,
                        "State directory of that server, to read its token from when FERRY_TOKEN is unset");
    return command;
  };
  auto* ps_cmd =
      add_target(cli.add_subcommand("ps", "List the server's containers: function, state, inputs, uptime, memory"));
  std::string binary;
  auto* deploy_cmd =
      add_target(cli.add_subcommand("deploy", "Store an app binary on the server and register its functions"));
  deploy_cmd->add_option("binary", binary, "The app binary")->required()->check(CLI::ExistingFile);
  std::string deploy_name;
  deploy_cmd->add_option("--name", deploy_name, "Deploy under this name instead of the app's own");
  std::vector<std::string> deploy_args;
  deploy_cmd->add_option("args", deploy_args,
                         "Arguments for the app's main (after --): its containers run it with them");
  double describe_timeout_s = 30;
  deploy_cmd
      ->add_option("--describe-timeout", describe_timeout_s,
                   "Seconds the binary may take to describe its app (it runs until app.main) before it is stopped")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  std::string qualified;
  std::string arguments_json = "[]";
  auto* call_cmd = add_target(cli.add_subcommand("call", "Call a deployed function; arguments and result as JSON"));
  call_cmd->add_option("function", qualified, "APP.FUNCTION")->required();
  call_cmd->add_option("arguments", arguments_json, "The arguments as a JSON array")->capture_default_str();
  auto* apps_cmd = add_target(cli.add_subcommand("apps", "List deployed apps and their functions"));
  std::string stop_name;
  auto* stop_cmd = add_target(cli.add_subcommand("stop", "Remove a deployed app (running inputs finish)"));
  stop_cmd->add_option("app", stop_name, "The app's name")->required();
  auto* calls_cmd =
      add_target(cli.add_subcommand("calls", "List recent spawned calls, newest first, with status and duration"));
  call_filter calls_filter;
  calls_cmd->add_option("--app", calls_filter.app, "Only the calls of this app");
  calls_cmd->add_option("--function", calls_filter.function, "Only the calls of functions of this name");
  calls_cmd->add_option("--status", calls_filter.status,
                        "Only calls in this status: pending, ok, failed (any error), or an error's code "
                        "(cancelled, remote_exception, ...)");
  calls_cmd->add_option("-n,--limit", calls_filter.limit, "At most this many calls")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  std::string logs_app;
  std::string logs_call;
  bool logs_follow = false;
  auto* logs_cmd = add_target(cli.add_subcommand(
      "logs", "Print what an app's containers wrote (stdout; stderr lines marked '!'), oldest first"));
  logs_cmd->add_option("app", logs_app, "The app's name")->required();
  logs_cmd->add_option("--call", logs_call, "Only the lines of this call (fc-...)");
  logs_cmd->add_flag("-f,--follow", logs_follow, "Keep printing new lines as they are written, until interrupted");

  std::string address;
  std::string run_state_dir;
  std::string app;
  std::vector<std::string> app_args;
  auto* run_cmd = cli.add_subcommand("run", "Run an app's entrypoint against a ferry server");
  run_cmd->add_option("--server", address,
                      std::string("Server address host:port (default: $FERRY_SERVER, or ") + default_address + ")");
  run_cmd->add_option("--state-dir", run_state_dir,
                      "State directory of that server, to read its token from when FERRY_TOKEN is unset");
  run_cmd->add_option("app", app, "The app binary")->required();
  run_cmd->add_option("args", app_args, "Arguments for the app");
  run_cmd->prefix_command();

  auto* version_cmd = cli.add_subcommand("version", "Print ferry's version");

  // A word that is no command: say so (CLI11 would only say that a command is required).
  if (argc > 1 && argv[1][0] != '-') {
    std::string commands;
    bool known = false;
    for (const CLI::App* command : cli.get_subcommands({})) {
      known = known || command->get_name() == argv[1];
      commands += (commands.empty() ? "" : ", ") + command->get_name();
    }
    if (!known) {
      std::cerr << "ferry: '" << argv[1] << "' is not a ferry command (commands: " << commands
                << "); see ferry --help\n";
      return 2;
    }
  }
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (*version_cmd) {
      std::cout << version_text() << '\n';
      return 0;
    }
    if (*server_cmd) return serve(flags);
    if (*agent_cmd) return run_agent(std::move(agent));
    if (*ps_cmd) return list_containers(target);
    if (*deploy_cmd) {
      return deploy(target, binary, deploy_name, deploy_args,
                    std::chrono::milliseconds(static_cast<std::int64_t>(describe_timeout_s * 1000)));
    }
    if (*call_cmd) return call(target, qualified, arguments_json);
    if (*apps_cmd) return list_apps(target);
    if (*stop_cmd) return stop_app(target, stop_name);
    if (*calls_cmd) return list_calls(target, calls_filter);
    if (*logs_cmd) return show_logs(target, logs_app, logs_call, logs_follow);
    if (*run_cmd) {
      if (address.empty()) {
        const char* env = std::getenv("FERRY_SERVER");
        address = env && *env ? env : default_address;
      }
      for (const auto& extra : run_cmd->remaining()) app_args.push_back(extra);
      return run_app(address, run_state_dir, app, app_args);
    }
  } catch (const std::exception& e) {
    std::cerr << "ferry: " << e.what() << '\n';
    return 1;
  }
  return 2;
}

}  // namespace ferry::cli
