#include "cli/cli.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <ferry/ferry.hpp>
#include <iostream>
#include <thread>

#include "client/client.hpp"
#include "runtime/logging.hpp"
#include "runtime/server_config.hpp"
#include "server/server.hpp"

namespace ferry::cli {

namespace {

constexpr const char* default_address = "127.0.0.1:7700";

struct server_flags {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7700;
  std::string state_dir;
  std::uint64_t max_frame_size = wire::default_max_frame_size;
  std::size_t max_queued_inputs = server::server_options{}.max_queued_inputs;
  std::uint64_t cancel_grace_ms = static_cast<std::uint64_t>(server::server_options{}.cancel_grace.count());
};

/// Where a client command finds the server and its token.
struct server_target {
  std::string address;
  std::string state_dir;
};

client::connect_options connect_options_for(server_target target) {
  if (target.address.empty()) {
    const char* env = std::getenv("FERRY_SERVER");
    target.address = env && *env ? env : default_address;
  }
  client::connect_options options;
  options.server = client::endpoint::parse(target.address);
  const char* token = std::getenv("FERRY_TOKEN");
  options.token = token && *token ? token
                                  : runtime::read_token(target.state_dir.empty() ? runtime::default_state_dir()
                                                                                 : std::filesystem::path(target.state_dir));
  return options;
}

std::string human_bytes(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

/// `ferry ps`: the server's containers, a row each.
int list_containers(const server_target& target) {
  auto c = client::client::connect(connect_options_for(target));
  detail::buffer answer = c->query("containers");
  detail::reader r{answer.view()};
  const auto rows = ferry::decode<std::vector<wire::container_row>>(r);
  std::printf("%-6s %-16s %-20s %-9s %6s %8s %9s %10s\n", "ID", "APP", "FUNCTION", "STATE", "INPUTS", "PID", "UPTIME",
              "MEMORY");
  for (const auto& [id, app, function, state, inputs, pid, uptime, rss] : rows) {
    std::printf("%-6llu %-16s %-20s %-9s %6u %8lld %8.1fs %10s\n", static_cast<unsigned long long>(id), app.c_str(),
                function.c_str(), state.c_str(), inputs, static_cast<long long>(pid), uptime, human_bytes(rss).c_str());
  }
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
  options.token = runtime::load_or_create_token(state_dir);

  // SIGINT/SIGTERM stop the server gracefully; block them everywhere and wait for them on one thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  server::server srv(options);
  spdlog::info("ferry server {} listening on {} (state directory {})", ferry::version(), srv.address(),
               state_dir.string());
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv.stop();
  });
  srv.run();
  // run() also returns when the server stops for another reason: release the waiter.
  pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  return 0;
}

int run_app(const std::string& address, const std::string& state_dir, const std::string& app,
            const std::vector<std::string>& args) {
  ::setenv("FERRY_SERVER", address.c_str(), 1);
  if (const char* token = std::getenv("FERRY_TOKEN"); !token || !*token) {
    const std::string t =
        runtime::read_token(state_dir.empty() ? runtime::default_state_dir() : std::filesystem::path(state_dir));
    ::setenv("FERRY_TOKEN", t.c_str(), 1);
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(app.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execvp(app.c_str(), argv.data());
  std::cerr << "ferry run: cannot run " << app << ": " << std::strerror(errno) << '\n';
  return 127;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App cli{"ferry: run C++ functions remotely, in containers managed by a ferry server"};
  cli.require_subcommand(1);
  cli.footer("Run `ferry COMMAND --help` for a command's options.");

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

  server_target ps_target;
  auto* ps_cmd = cli.add_subcommand("ps", "List the server's containers: function, state, inputs, uptime, memory");
  ps_cmd->add_option("--server", ps_target.address,
                     std::string("Server address host:port (default: $FERRY_SERVER, or ") + default_address + ")");
  ps_cmd->add_option("--state-dir", ps_target.state_dir,
                     "State directory of that server, to read its token from when FERRY_TOKEN is unset");

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

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (*version_cmd) {
      std::cout << "ferry " << ferry::version() << '\n';
      return 0;
    }
    if (*server_cmd) return serve(flags);
    if (*ps_cmd) return list_containers(ps_target);
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
